"""``ems deploy init`` and ``ems deploy add-hall``: write or extend a deployment folder.

Both are safe to repeat: generated files are rewritten from the options,
secrets are created once (random, mode 0600) and never changed or shown.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from ems.config import FleetConfig, load_fleet
from ems.deploy.broker import configured_max_packet_size, write_broker, write_broker_auth
from ems.central.audit import create_key_file
from ems.deploy.configs import AUDIT_KEY, INFLUX_SECRET, MQTT_SECRET, secret_file, write_central, write_gateway
from ems.deploy.layout import CENTRAL_USER, Folder, Options, prepare_out, secrets_dir, write_text
from ems.deploy.msgsize import max_packet_size
from ems.deploy.readme import readme_text
from ems.deploy.units import write_units
from ems.errors import UsageError
from telemetry.mosquitto_acl import gateway_username, read_or_create_secret


@dataclass
class Outcome:
    """What a run wrote: the halls, the new secret files, the broker limit [bytes] and warnings."""

    folder: Folder
    sites: list[str]
    new_secrets: list[Path] = field(default_factory=list)
    max_packet_size: int | None = None
    warnings: list[str] = field(default_factory=list)


def load_fleet_source(source: str) -> FleetConfig:
    """The fleet file to deploy (validated with its device maps)."""
    path = Path(source)
    if not path.is_file():
        raise UsageError(f"--fleet: no such file {source}")
    return load_fleet(path)


def copy_fleet(source: Path, folder: Folder) -> None:
    """Copy the fleet file and the ``devicemaps`` folder beside it into ``fleet/`` (replacing older copies)."""
    folder.fleet_dir.mkdir(parents=True, exist_ok=True)
    write_text(folder.fleet_file, source.read_text(encoding="utf-8"))
    maps = source.resolve().parent / "devicemaps"
    target = folder.fleet_dir / "devicemaps"
    if maps.is_dir():
        with tempfile.TemporaryDirectory(dir=folder.fleet_dir, prefix=".devicemaps-") as tmp:
            staged = Path(tmp) / "devicemaps"
            shutil.copytree(maps, staged)
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
    elif target.exists():
        shutil.rmtree(target)


def _secret(folder: Path, name: str, outcome: Outcome) -> Path:
    """``folder/secrets/<name>.password``, created (random, 0600) if missing; never read aloud."""
    path = secret_file(folder, name)
    existed = path.exists()
    read_or_create_secret(secrets_dir(path.parent), name)
    if not existed:
        outcome.new_secrets.append(path)
    return path


def _service_secrets(folder: Path, opts: Options, outcome: Outcome) -> Path:
    """The MQTT secret (and the InfluxDB one when InfluxDB has users) of one service; returns the MQTT one."""
    mqtt = _secret(folder, MQTT_SECRET, outcome)
    if opts.influx_url and opts.influx_auth:
        _secret(folder, INFLUX_SECRET, outcome)
    return mqtt


def _audit_key(folder: Path, outcome: Outcome) -> Path:
    """``folder/secrets/audit.key``: the central audit log's HMAC key, created (random, 0600) if missing.
    Never replaced: records signed with it verify only with it."""
    path = folder / AUDIT_KEY
    secrets_dir(path.parent)
    if create_key_file(path):
        outcome.new_secrets.append(path)
    return path


def _warnings(fleet: FleetConfig, folder: Folder, deployed: list[str]) -> list[str]:
    out = []
    for s in fleet.sites:
        b = s.device_broker
        if s.id in deployed and b is not None and b.password_file and not Path(b.password_file).is_absolute():
            out.append(f"{s.id}: the fleet file names device_broker.password_file {b.password_file}: "
                       f"put that file at fleet/{b.password_file} on the hall (it is not generated)")
    ids = {s.id for s in fleet.sites}
    for site in folder.existing_gateways():
        if site not in ids:
            out.append(f"gateways/{site}: not in the fleet any more; its broker user is removed, delete the folder")
    return out


def _finish(folder: Folder, opts: Options, fleet: FleetConfig, deployed: list[str], outcome: Outcome,
            limit: int) -> None:
    names = {s.id: s.name for s in fleet.sites}
    write_text(folder.root / "README.md", readme_text(opts, [(s, names[s]) for s in deployed], limit))
    opts.save(folder.root)
    outcome.warnings += _warnings(fleet, folder, deployed)


def init(out: Path, opts: Options) -> Outcome:
    """Write a whole deployment for every hall of the fleet file into ``out``."""
    opts = replace(opts, fleet_source=str(Path(opts.fleet_source).resolve())).checked()
    fleet = load_fleet_source(opts.fleet_source)
    folder = prepare_out(out, must_exist=False)
    sites = [s.id for s in fleet.sites]
    outcome = Outcome(folder, sites)
    copy_fleet(Path(opts.fleet_source), folder)
    mqtt = {CENTRAL_USER: _service_secrets(folder.central, opts, outcome)}
    _audit_key(folder.central, outcome)
    write_central(folder, opts)
    for s in fleet.sites:
        mqtt[gateway_username(s.id)] = _service_secrets(folder.gateway(s.id), opts, outcome)
        write_gateway(folder, opts, s.id, s.name)
    outcome.max_packet_size = write_broker(folder, opts, sites, mqtt)
    write_units(folder, opts)
    _finish(folder, opts, fleet, sites, outcome, outcome.max_packet_size)
    return outcome


def add_hall(out: Path, site: str, fleet_source: str | None = None) -> Outcome:
    """Add ``site`` (already in the fleet file) to the deployment in ``out``: copy the fleet file again,
    write the hall's folder and secrets, add its broker user.  Existing secrets and halls stay as they are."""
    folder = prepare_out(out, must_exist=True)
    opts = Options.load(folder.root)
    if fleet_source is not None:
        opts = replace(opts, fleet_source=str(Path(fleet_source).resolve())).checked()
    fleet = load_fleet_source(opts.fleet_source)
    ids = [s.id for s in fleet.sites]
    if site not in ids:
        raise UsageError(f"--site: {site!r} is not in {opts.fleet_source} (its sites: {', '.join(ids)})")
    copy_fleet(Path(opts.fleet_source), folder)
    # The broker knows the halls that have a folder; a hall in the fleet without one is not deployed yet.
    have = set(folder.existing_gateways()) | {site}
    deployed = [s for s in ids if s in have]
    outcome = Outcome(folder, deployed)
    mqtt = {CENTRAL_USER: _service_secrets(folder.central, opts, outcome)}
    for s in deployed:
        mqtt[gateway_username(s)] = _service_secrets(folder.gateway(s), opts, outcome)
    write_gateway(folder, opts, site, fleet.site(site).name)
    write_broker_auth(folder, deployed, mqtt)
    outcome.max_packet_size = configured_max_packet_size(folder) or max_packet_size()
    _finish(folder, opts, fleet, deployed, outcome, outcome.max_packet_size)
    return outcome
