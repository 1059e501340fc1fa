"""The fleet broker's files: ``mosquitto.conf``, the password file and the ACL.

Users and rules come from :mod:`telemetry.mosquitto_acl` (one user per
gateway, ``central``).  Each plaintext password lives only with the
service that uses it (``gateways/<site>/secrets/mqtt.password``,
``central/secrets/mqtt.password``); the broker gets hashes.  To hand them to
``write_auth_files``, which reads ``<secrets>/<user>.password``, a private
temporary folder of symbolic links points at those files: no plaintext copy
is made.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ems.deploy.layout import CENTRAL_USER, Folder, Options, write_text
from ems.deploy.msgsize import MARGIN, ROUND_TO, MessageSize, largest_messages, max_packet_size
from telemetry.mosquitto_acl import AuthFiles, gateway_username, write_auth_files

CONF_NAME = "mosquitto.conf"
PASSWD_NAME = "passwd"
ACL_NAME = "acl"
#: Days a gateway's persistent session (its queued commands) outlives the gateway's absence.
SESSION_EXPIRY = "30d"


def write_broker_auth(folder: Folder, sites: Sequence[str], mqtt_secret: dict[str, Path]) -> AuthFiles:
    """Write ``broker/passwd`` (0600) and ``broker/acl`` (0600) for ``sites`` and the central user.

    mqtt_secret: the plaintext password file of every user (they must exist).
    """
    with tempfile.TemporaryDirectory(prefix="ems-deploy-") as tmp:
        os.chmod(tmp, 0o700)
        for user, path in mqtt_secret.items():
            os.symlink(path.resolve(), Path(tmp) / f"{user}.password")
        files = write_auth_files(folder.broker, list(sites), Path(tmp), central=(CENTRAL_USER,))
    os.chmod(files.acl_file, 0o600)  # who may do what is the broker's business only
    return files


def mqtt_users(sites: Sequence[str]) -> list[str]:
    """Broker users of the deployment: central, then one per gateway."""
    return [CENTRAL_USER, *(gateway_username(s) for s in sites)]


def mosquitto_conf(opts: Options, messages: list[MessageSize] | None = None) -> str:
    """Text of ``mosquitto.conf`` for the deployment."""
    messages = messages if messages is not None else largest_messages()
    limit = max_packet_size(messages)
    basis = "\n".join(f"#   {m.name:<7} {m.packet_bytes:>8} bytes  {m.topic}: {m.note}" for m in messages)
    listener = f"listener {opts.broker_port}" + (f" {opts.broker_bind}" if opts.broker_bind else "")
    where = f"on {opts.broker_bind}" if opts.broker_bind else "on every interface"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return f"""\
# Mosquitto, the fleet broker.  Written by `ems deploy init` ({generated}); re-run it rather than edit.
# Installed as {opts.etc('broker', CONF_NAME)}, run by ems-broker.service as user {opts.broker_user}.
# After `ems deploy add-hall`: copy passwd and acl, then `systemctl reload ems-broker` (SIGHUP re-reads them).

# Started as root, Mosquitto drops to this user; under systemd it already runs as it.
user {opts.broker_user}
per_listener_settings false

# Plain MQTT {where}, port {opts.broker_port}: gateways and the central service connect here.
# Keep it on a private network or VPN; for the Internet add a TLS listener (cafile/certfile/keyfile).
{listener}

allow_anonymous false
password_file {opts.etc('broker', PASSWD_NAME)}
acl_file {opts.etc('broker', ACL_NAME)}
# The client id is the user name: one gateway cannot take over another one's session.
use_username_as_clientid true

# Retained state/plan/prices and queued commands survive a restart.
persistence true
persistence_location {opts.var('ems-broker')}/
autosave_interval 300
persistent_client_expiration {SESSION_EXPIRY}
max_queued_messages 1000

# Largest MQTT packet accepted [bytes]; a client sending more is disconnected.
# Basis: {MARGIN} x the largest real message, rounded up to {ROUND_TO // 1024} KiB.  Built by the code that
# publishes them (ems/deploy/msgsize.py), with every number at 17 digits and texts at their longest:
{basis}
max_packet_size {limit}

set_tcp_nodelay true
log_dest stdout
log_timestamp false
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
"""


def configured_max_packet_size(folder: Folder) -> int | None:
    """``max_packet_size`` of the deployment's written mosquitto.conf [bytes], None if absent."""
    try:
        text = (folder.broker / CONF_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "max_packet_size" and value.strip().isdigit():
            return int(value.strip())
    return None


def write_broker(folder: Folder, opts: Options, sites: Sequence[str], mqtt_secret: dict[str, Path]) -> int:
    """Write the broker folder; returns max_packet_size [bytes]."""
    messages = largest_messages()
    write_text(folder.broker / CONF_NAME, mosquitto_conf(opts, messages))
    write_broker_auth(folder, sites, mqtt_secret)
    return max_packet_size(messages)
