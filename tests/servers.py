"""Real servers for integration tests: Mosquitto, InfluxDB 1.x, VictoriaMetrics.

Each server runs as a child process with its own config and data in a folder
you give it (use pytest's ``tmp_path`` / ``tmp_path_factory``), listens only
on 127.0.0.1 on free ports, and can be stopped, killed and started again on
the same port and data folder (to test outages)::

    with MosquittoServer(tmp_path / "mqtt", users={"central": pw}, acl=text) as broker:
        broker.port            # plain MQTT listener
        broker.stop(); broker.start()   # same port, same persistence file

    with InfluxDB1Server(tmp_path / "influx") as influx:
        influx.create_database("ems")
        influx.query("SELECT COUNT(*) FROM m", db="ems")

    with VictoriaMetricsServer(tmp_path / "vm") as vm:
        vm.url                 # http://127.0.0.1:<port>; /api/v2/write, /write
        vm.export('{__name__=~"battery_.*"}')

The binaries come from Debian (mosquitto, influxdb, victoria-metrics;
``scripts/test.sh`` installs them).  A test that needs a missing binary is
skipped with the package name, never silently passed (outside pytest, e.g.
in benchmarks/bench_telemetry.py, it is a RuntimeError).

Passwords used here are generated per run (``random_password()``); nothing
secret is stored in the repository.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlencode

import urllib3

from tests.netutil import free_port, wait_for_port

#: Servers started and not yet stopped; stopped at interpreter exit so an aborted run leaves no orphans.
_RUNNING: "weakref.WeakSet[ManagedServer]" = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_RUNNING):
        server.kill()


_HTTP = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=30.0))


def random_password() -> str:
    """A fresh random password for one test run."""
    return secrets.token_urlsafe(18)


def require_binary(name: str, package: str) -> str:
    """Path of ``name``, or skip the test saying which Debian package provides it."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        message = f"{name} not installed (Debian package {package}; scripts/test.sh installs it)"
        try:
            import pytest  # only when running under the test suite; benchmarks use these helpers too
        except ImportError:
            raise RuntimeError(message) from None
        pytest.skip(message)
    return path


class ManagedServer:
    """A server child process bound to loopback with a fixed port and data folder.

    Subclasses write their config in ``_configure()`` and say how to run and
    probe them.  ``start()`` waits until the server answers, ``stop()`` asks
    it to exit (SIGTERM, then SIGKILL after ``stop_timeout_s``), ``kill()``
    sends SIGKILL at once.  Ports are chosen once, so a restart comes back on
    the same address and the clients reconnect to it.
    """

    name = "server"
    start_timeout_s = 30.0
    stop_timeout_s = 15.0

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self._configured = False
        self._ever_ready = False

    # -- to be provided by subclasses -------------------------------------------------
    def _configure(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        """True once the server serves requests (default: accepts TCP on ``port``)."""
        try:
            wait_for_port(self.port, timeout_s=0.2)
            return True
        except TimeoutError:
            return False

    def _reassign_ports(self) -> None:
        self.port = free_port()

    # -- lifecycle ------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "ManagedServer":
        """Start (or restart) the server and wait until it is ready."""
        if self.running:
            return self
        for attempt in range(3):
            if not self._configured:
                self._configure()
                self._configured = True
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
            log.close()
            deadline = time.monotonic() + self.start_timeout_s
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self._ready():
                    self._ever_ready = True
                    _RUNNING.add(self)
                    return self
                time.sleep(0.05)
            tail = self.log_tail()
            self._terminate(signal.SIGKILL)
            # The free port may have been taken by someone else between choosing and binding.
            if "address already in use" in tail.lower() and attempt < 2 and not self._ever_ready:
                self._reassign_ports()
                self._configured = False
                continue
            raise RuntimeError(f"{self.name} did not start on 127.0.0.1:{self.port}; log:\n{tail}")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Ask the server to exit and wait for it (SIGKILL if it does not)."""
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the server at once (no clean shutdown)."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        """Stop, then start again on the same port with the same data."""
        self.stop()
        self.start()

    def _terminate(self, sig: int) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=self.stop_timeout_s)
        self.proc = None
        _RUNNING.discard(self)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ----------------------------------------------------------------------------------------
# TLS material for tests
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TestPki:
    """A throw-away CA and a server certificate for 127.0.0.1 (PEM files)."""

    __test__ = False  # not a pytest test class
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_test_pki(folder: Path) -> TestPki:
    """Create a CA and a server certificate with SAN IP:127.0.0.1 using the openssl CLI."""
    openssl = require_binary("openssl", "openssl")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
        "-days", "2", "-subj", "/CN=ems test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(crt), "-days", "2", "-extfile", str(ext))
    for p in (ca_key, key):
        p.chmod(0o600)
    return TestPki(ca_crt, crt, key)


# ----------------------------------------------------------------------------------------
# Mosquitto
# ----------------------------------------------------------------------------------------

class MosquittoServer(ManagedServer):
    """Mosquitto 2 with its own config, password file, ACL file and persistence.

    users: ``{name: password}`` written as a Mosquitto password file (hashed);
    acl: ACL file text (None: no ACL, every authenticated user may do all);
    anonymous: allow clients without a user name (only when ``users`` is empty);
    tls: also open a TLS listener on ``tls_port`` with a throw-away CA
    (``pki.ca_cert`` is what clients must trust).  Messages persist across a
    clean ``stop()``/``start()`` (retained messages, QoS 1 sessions).
    """

    name = "mosquitto"

    def __init__(self, workdir: Path, users: Mapping[str, str] | None = None, acl: str | None = None,
                 anonymous: bool = False, tls: bool = False, password_file: Path | None = None,
                 acl_file: Path | None = None):
        super().__init__(workdir)
        self.binary = require_binary("mosquitto", "mosquitto")
        self.users = dict(users or {})
        self.acl = acl
        self.anonymous = anonymous
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.pki: TestPki | None = None
        self.password_file = password_file
        self.acl_file = acl_file
        self.config_path = self.workdir / "mosquitto.conf"

    def _reassign_ports(self) -> None:
        super()._reassign_ports()
        if self.tls:
            self.tls_port = free_port()

    def _configure(self) -> None:
        from telemetry.mosquitto_acl import password_file_text

        (self.workdir / "data").mkdir(exist_ok=True)
        lines = [
            # Mosquitto started as root drops to user "mosquitto", which could not read this folder.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "per_listener_settings false",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.workdir / 'data'}/",
            "autosave_interval 60",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "max_queued_messages 100000",
            "set_tcp_nodelay true",  # Nagle + delayed ACK would add ~40 ms per hop on loopback
        ]
        if self.users and self.password_file is None:
            self.password_file = self.workdir / "passwd"
            self.password_file.write_text(password_file_text(self.users, iterations=101))
            self.password_file.chmod(0o600)
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.acl is not None and self.acl_file is None:
            self.acl_file = self.workdir / "acl"
            self.acl_file.write_text(self.acl)
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        lines.append(f"listener {self.port} 127.0.0.1")
        if self.tls:
            self.pki = self.pki or make_test_pki(self.workdir / "pki")
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.pki.ca_cert}",
                      f"certfile {self.pki.server_cert}", f"keyfile {self.pki.server_key}",
                      "require_certificate false"]
        self.config_path.write_text("\n".join(lines) + "\n")

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def _ready(self) -> bool:
        ok = super()._ready()
        if ok and self.tls:
            try:
                wait_for_port(self.tls_port, timeout_s=0.2)
            except TimeoutError:
                return False
        return ok


# ----------------------------------------------------------------------------------------
# InfluxDB 1.x
# ----------------------------------------------------------------------------------------

class InfluxDB1Server(ManagedServer):
    """InfluxDB 1.x (``influxd``) with meta/data/wal in ``workdir``, HTTP on ``port``.

    The RPC/backup listener (8088 by default) is bound to another free
    loopback port; usage reporting, the _internal monitor database and every
    other listener are off.  auth: turn on authentication and create the
    admin user ``admin_user`` with ``admin_password`` (random per run).
    """

    name = "influxd"

    def __init__(self, workdir: Path, auth: bool = False):
        super().__init__(workdir)
        self.binary = require_binary("influxd", "influxdb")
        self.rpc_port = free_port()
        self.auth = auth
        self.admin_user = "admin"
        self.admin_password = random_password() if auth else None
        self.config_path = self.workdir / "influxdb.conf"
        self._admin_created = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _reassign_ports(self) -> None:
        super()._reassign_ports()
        self.rpc_port = free_port()

    def _configure(self) -> None:
        w = self.workdir
        self.config_path.write_text(f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{w / 'meta'}"
  logging-enabled = false

[data]
  dir = "{w / 'data'}"
  wal-dir = "{w / 'wal'}"
  query-log-enabled = false
  trace-logging-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {'true' if self.auth else 'false'}
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false

[continuous_queries]
  enabled = true
  log-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
""")

    def _command(self) -> list[str]:
        return [self.binary, "run", "-config", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            r = _HTTP.request("GET", f"{self.url}/ping", timeout=1.0)
        except urllib3.exceptions.HTTPError:
            return False
        return r.status == 204

    def start(self) -> "InfluxDB1Server":
        super().start()
        if self.auth and not self._admin_created:
            # With auth on and no users yet, InfluxDB lets exactly this first statement through.
            self.query(f"CREATE USER \"{self.admin_user}\" WITH PASSWORD '{self.admin_password}' "
                       f"WITH ALL PRIVILEGES", admin=False, method="POST")
            self._admin_created = True
        return self

    def query(self, q: str, db: str | None = None, admin: bool = True, method: str = "GET",
              epoch: str | None = "ns") -> dict:
        """Run InfluxQL ``q``; returns the decoded JSON; raises on HTTP or statement errors."""
        params = {"q": q}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        headers = {}
        if self.auth and admin:
            headers = urllib3.make_headers(basic_auth=f"{self.admin_user}:{self.admin_password}")
        r = _HTTP.request(method, f"{self.url}/query?{urlencode(params)}", headers=headers)
        body = json.loads(r.data or b"{}")
        if r.status != 200:
            raise RuntimeError(f"influx query {q!r}: HTTP {r.status}: {body}")
        for res in body.get("results", []):
            if "error" in res:
                raise RuntimeError(f"influx query {q!r}: {res['error']}")
        return body

    def create_database(self, name: str, retention_policy: str | None = None) -> None:
        """Create database ``name`` (and a retention policy of that name, infinite duration, default)."""
        self.query(f'CREATE DATABASE "{name}"', method="POST")
        if retention_policy:
            self.query(f'CREATE RETENTION POLICY "{retention_policy}" ON "{name}" DURATION INF REPLICATION 1',
                       method="POST")

    def create_user(self, user: str, password: str, db: str, privilege: str = "WRITE") -> None:
        """Create a non-admin user with ``privilege`` (READ, WRITE, ALL) on ``db``."""
        self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}'", method="POST")
        self.query(f'GRANT {privilege} ON "{db}" TO "{user}"', method="POST")

    def rows(self, q: str, db: str) -> list[list]:
        """The value rows of the first series of the first result of ``q`` ([] if none)."""
        res = self.query(q, db=db)["results"][0]
        series = res.get("series") or []
        return [row for s in series for row in s.get("values", [])]


# ----------------------------------------------------------------------------------------
# VictoriaMetrics
# ----------------------------------------------------------------------------------------

class VictoriaMetricsServer(ManagedServer):
    """Single-node VictoriaMetrics with data in ``workdir``, HTTP on ``port``.

    Started with deduplication of samples with the same series and
    millisecond timestamp (``-dedup.minScrapeInterval=1ms``): that is what
    makes a re-sent Influx line overwrite instead of duplicate, as InfluxDB
    does.  Retention is 100 years so test timestamps are never out of range,
    and queries see data at once (``-search.latencyOffset=0s``).
    """

    name = "victoria-metrics"

    def __init__(self, workdir: Path, extra_flags: tuple[str, ...] = ()):
        super().__init__(workdir)
        self.binary = require_binary("victoria-metrics", "victoria-metrics")
        self.extra_flags = extra_flags

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _configure(self) -> None:
        (self.workdir / "data").mkdir(exist_ok=True)

    def _command(self) -> list[str]:
        return [self.binary, f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.workdir / 'data'}", "-retentionPeriod=100y",
                "-dedup.minScrapeInterval=1ms", "-search.latencyOffset=0s",
                "-search.disableCache", "-loggerLevel=WARN", *self.extra_flags]

    def _ready(self) -> bool:
        try:
            r = _HTTP.request("GET", f"{self.url}/health", timeout=1.0)
        except urllib3.exceptions.HTTPError:
            return False
        return r.status == 200

    def flush(self) -> None:
        """Make everything received so far visible to queries."""
        _HTTP.request("GET", f"{self.url}/internal/force_flush")

    def export(self, match: str, start_s: float = 0, end_s: float = 4_102_444_800) -> list[dict]:
        """Raw samples of the series matching ``match`` (a PromQL selector) between ``start_s`` and
        ``end_s`` [s unix] (default: 1970 to 2100, so future test timestamps count), deduplicated by VM.

        Each item is ``{"metric": {...labels}, "values": [...], "timestamps": [ms, ...]}``.
        """
        self.flush()
        r = _HTTP.request("POST", f"{self.url}/api/v1/export",
                          fields={"match[]": match, "start": str(start_s), "end": str(end_s)},
                          encode_multipart=False)
        if r.status != 200:
            raise RuntimeError(f"VM export {match}: HTTP {r.status}: {r.data[:300]!r}")
        return [json.loads(line) for line in r.data.decode().splitlines() if line.strip()]

    def sample_count(self, match: str) -> int:
        """Number of samples VictoriaMetrics holds for ``match``."""
        return sum(len(s["timestamps"]) for s in self.export(match))


def wait_until(condition, timeout_s: float = 30.0, interval_s: float = 0.05, what: str = "condition"):
    """Poll ``condition()`` until it returns a truthy value (returned), or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s} s")
        time.sleep(interval_s)
