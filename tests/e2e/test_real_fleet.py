"""A real fleet, each part its own OS process, provisioned by ``ems deploy init``.

Started as on real machines: Mosquitto with the generated configuration,
InfluxDB 1.x, ``ems simulate`` (the halls' devices over Modbus TCP), three
``ems run`` gateways from their generated gateway files and ``ems central``.
Then, as a municipal user in headless Chromium, every hall is switched to
disaster mode while one gateway is down (SIGKILL) — it is restarted, takes
the queued command and its ack arrives; another gateway is SIGKILLed after
the switch and comes back still in disaster mode; each hall's telemetry is
counted in InfluxDB; the broker is restarted and the gateways reconnect
with nothing lost; SIGTERM stops every process with exit status 0 and
nothing is left running.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.browser import chromium, texts, wait
from tests.e2e.procs import ROOT, Proc, ems_command
from tests.netutil import free_port
from tests.servers import InfluxDB1Server, require_binary, wait_until

pytestmark = pytest.mark.slow

SITES = ("hall-01", "hall-02", "hall-03")
TIMEOUT_S = 90  # a loaded 2-core CI machine runs 7 processes, Chromium and InfluxDB here


def _fleet_of_three(folder: Path) -> Path:
    """config/fleet.yaml cut to three halls, each simulated on a free loopback port."""
    data = yaml.safe_load((ROOT / "config" / "fleet.yaml").read_text(encoding="utf-8"))
    data["sites"] = [s for s in data["sites"] if s["id"] in SITES]
    for site in data["sites"]:
        port = free_port()
        old = site["simulator"]["port"]
        site["simulator"]["port"] = port
        for dev in site["devices"]:
            t = dev["transport"]
            if t["kind"] == "modbus_tcp" and t["port"] == old:
                t["port"], t["host"] = port, "127.0.0.1"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    shutil.copytree(ROOT / "config" / "devicemaps", folder / "devicemaps")
    return path


def _jepx_folder(folder: Path) -> Path:
    """A folder with a JEPX spot CSV (Shift_JIS, as JEPX publishes it) for yesterday to tomorrow, JST."""
    from datetime import date, datetime, timedelta, timezone

    today = datetime.now(timezone(timedelta(hours=9))).date()
    header = ("受渡日,時刻コード,売り入札量(kWh),買い入札量(kWh),約定総量(kWh),システムプライス(円/kWh),"
              "エリアプライス東京(円/kWh),エリアプライス中国(円/kWh)")
    rows = [f"{day:%Y/%m/%d},{c},1000,1000,900,{9 + c / 10:.2f},{10 + c / 8:.2f},{8 + c / 4:.2f}"
            for day in (today - timedelta(days=1), today, today + timedelta(days=1)) for c in range(1, 49)]
    folder.mkdir(parents=True, exist_ok=True)
    assert isinstance(today, date)
    (folder / "spot_summary.csv").write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode("cp932"))
    return folder


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Central:
    """The central service's HTTP API as a logged-in user (cookie + CSRF token)."""

    def __init__(self, url: str):
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=15)
        self.csrf = ""

    def login(self, user: str, password: str) -> None:
        r = self.client.post("/api/login", json={"username": user, "password": password})
        r.raise_for_status()
        self.csrf = r.json()["csrf_token"]
        # The deployment sets Secure cookies (it expects a TLS proxy); httpx keeps those for https only,
        # so the session cookie goes back by hand on this loopback http connection.
        name, _, rest = r.headers["set-cookie"].partition("=")
        self.client.headers["Cookie"] = f"{name}={rest.split(';', 1)[0]}"

    def fleet(self) -> dict[str, dict]:
        r = self.client.get("/api/fleet")
        r.raise_for_status()
        return {h["site"]: h for h in r.json()["halls"]}

    def operation(self, op_id: str) -> dict:
        r = self.client.get(f"/api/operations/{op_id}")
        r.raise_for_status()
        return r.json()

    def return_to_vpp(self, reason: str) -> str:
        from ems.central.sessions import CSRF_HEADER

        r = self.client.post("/api/disaster/return", headers={CSRF_HEADER: self.csrf},
                             json={"scope": "all", "reason": reason, "confirm": True})
        r.raise_for_status()
        return r.json()["id"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Provision with ``ems deploy init`` and start every process; stop them all at the end."""
    require_binary("mosquitto", "mosquitto")
    work = tmp_path_factory.mktemp("fleet")
    logs = work / "logs"
    logs.mkdir()
    influx = InfluxDB1Server(work / "influx").start()
    influx.create_database("ems")
    fleet_src = _fleet_of_three(work / "src")
    out = work / "deploy"
    broker_port, central_port = free_port(), free_port()
    init = Proc("deploy-init", ems_command("deploy", "init", "--fleet", str(fleet_src), "--out", str(out),
                                           "--influx-url", influx.url, "--influx-db", "ems", "--influx-no-auth",
                                           "--broker-host", "127.0.0.1", "--broker-port", str(broker_port),
                                           "--broker-bind", "127.0.0.1", "--no-jma",  # no traffic off this machine
                                           "--jepx-csv", str(_jepx_folder(work / "jepx")),
                                           # the machines' /etc/ems and /var/lib are this test's folders
                                           "--etc-dir", str(out), "--var-dir", str(work / "var"),
                                           "--broker-user", pwd.getpwuid(os.getuid()).pw_name), logs)
    init.start()
    assert init.proc.wait(60) == 0, init.log_tail()
    procs: dict[str, Proc] = {}
    try:
        procs["broker"] = Proc("broker", ["mosquitto", "-c", str(out / "broker" / "mosquitto.conf")], logs).start(
            lambda: _port_open(broker_port))
        deployed_fleet = out / "fleet" / "fleet.yaml"
        sim_ports = [s["simulator"]["port"] for s in yaml.safe_load(deployed_fleet.read_text())["sites"]]
        procs["simulate"] = Proc("simulate", ems_command("simulate", "--config", str(deployed_fleet)), logs).start(
            lambda: all(_port_open(p) for p in sim_ports), TIMEOUT_S)
        # The first admin and a municipal user, made with the CLI as the deployment README says.
        from ems.central.config import load_central_config

        central_cfg = load_central_config(out / "central" / "central.yaml")
        users_db = central_cfg.data_path / "users.sqlite"
        password = "pw-" + secrets.token_hex(16)  # hex: never contains the user name
        pw_file = work / "mika.pw"
        pw_file.write_text(password + "\n")
        pw_file.chmod(0o600)
        add = Proc("users-add", ems_command("users", "add", "--db", str(users_db), "--roles", "municipal",
                                            "--password-file", str(pw_file), "mika"), logs).start()
        assert add.proc.wait(60) == 0, add.log_tail()
        procs["central"] = Proc("central", ems_command("central", "--config", str(out / "central" / "central.yaml"),
                                                       "--port", str(central_port)), logs).start(
            lambda: _port_open(central_port), TIMEOUT_S)
        for site in SITES:
            procs[site] = _gateway(out, site, logs).start()
        central = Central(f"http://127.0.0.1:{central_port}")
        central.login("mika", password)
        wait_until(lambda: all(h["online"] and not h["stale"] and h["mode"] == "vpp"
                               for h in central.fleet().values()),
                   TIMEOUT_S, 0.5, "every hall online and in vpp on the dashboard")
        yield {"out": out, "procs": procs, "central": central, "influx": influx, "password": password,
               "logs": logs, "work": work}
    finally:
        for name, p in reversed(list(procs.items())):
            if p.running:
                p.kill()
        influx.stop()


def _gateway(out: Path, site: str, logs: Path) -> Proc:
    return Proc(site, ems_command("run", "--config", str(out / "gateways" / site / "gateway.yaml")), logs)


def _mode_file_mode(out: Path, site: str) -> str | None:
    """The requested mode the gateway persisted (its state folder, from its gateway file)."""
    from ems.gateway.config import load_gateway_config

    cfg = load_gateway_config(out / "gateways" / site / "gateway.yaml")
    for path in cfg.state_path.glob(f"mode-{site}*.json"):
        data = json.loads(path.read_text())
        return (data.get("request") or data).get("mode")
    return None


@pytest.fixture(scope="module")
def browser():
    with chromium(TIMEOUT_S) as driver:
        yield driver


def _wait(driver, condition, what: str):
    return wait(driver, condition, what, TIMEOUT_S)


def _influx_count(influx: InfluxDB1Server, measurement: str, field: str, site: str) -> int:
    rows = influx.rows(f"SELECT count({field}) FROM {measurement} WHERE site = '{site}'", db="ems")
    return int(rows[0][1]) if rows else 0


def test_a_real_fleet_of_separate_processes(deployment, browser, tmp_path):
    from selenium.webdriver.common.by import By

    d = deployment
    out, procs, central, influx = d["out"], d["procs"], d["central"], d["influx"]
    shots = Path(os.environ.get("EMS_SCREENSHOTS") or tmp_path)

    # 1. Each hall's telemetry reaches InfluxDB through its own gateway's outbox.
    wait_until(lambda: all(_influx_count(influx, "battery", "soc_pct", s) >= 5 for s in SITES), TIMEOUT_S, 1.0,
               "battery telemetry of every hall in InfluxDB")

    # 2. hall-02's gateway dies (SIGKILL) just before municipal staff switch the fleet to disaster mode.
    assert procs["hall-02"].kill() == -9
    browser.get(central.url + "/")
    _wait(browser, lambda dr: dr.find_element(By.ID, "login-username").is_displayed(), "login form")
    browser.find_element(By.ID, "login-username").send_keys("mika")
    browser.find_element(By.ID, "login-password").send_keys(d["password"])
    browser.find_element(By.ID, "login-submit").click()
    _wait(browser, lambda dr: dr.find_element(By.ID, "nav").is_displayed(), "navigation after login")
    browser.find_element(By.CSS_SELECTOR, 'a[data-nav="disaster"]').click()
    _wait(browser, lambda dr: dr.find_element(By.ID, "disaster-submit").is_displayed(), "disaster panel")
    browser.find_element(By.ID, "disaster-reason").send_keys("台風接近 typhoon approaching (end-to-end test)")
    browser.find_element(By.ID, "disaster-confirm").click()
    browser.find_element(By.ID, "disaster-submit").click()
    browser.find_element(By.ID, "modal-confirm").click()
    # The two live gateways answer at once.
    _wait(browser, lambda dr: sum(1 for v in texts(dr, "#disaster-op tr[data-site] .ack-status .status", "data-status")
                                  if v == "ok") >= 2, "acks of the two running halls")
    # hall-02 comes back (as systemd would restart it) and takes the command the broker kept for it.
    procs["hall-02"] = _gateway(out, "hall-02", d["logs"]).start()

    def all_ok(dr):
        sites = texts(dr, "#disaster-op tr[data-site]", "data-site")
        status = texts(dr, "#disaster-op tr[data-site] .ack-status .status", "data-status")
        got = dict(zip(sites, status))
        return got if set(got) == set(SITES) and set(got.values()) == {"ok"} else None

    try:
        _wait(browser, all_ok, "an ok ack from every hall, the restarted one included")
    finally:
        browser.save_screenshot(str(shots / "e2e-disaster-acks.png"))
    wait_until(lambda: all(h["mode"] == "disaster_reserve" for h in central.fleet().values()), TIMEOUT_S, 0.5,
               "every hall in disaster_reserve on the dashboard")
    assert _mode_file_mode(out, "hall-02") == "disaster_reserve"

    # 3. hall-03 is SIGKILLed after the switch: it comes back in disaster mode, from its own mode file.
    procs["hall-03"].kill()
    procs["hall-03"] = _gateway(out, "hall-03", d["logs"]).start()
    wait_until(lambda: (h := central.fleet()["hall-03"])["online"] and not h["stale"]
               and h["mode"] == "disaster_reserve", TIMEOUT_S, 0.5, "hall-03 back, still in disaster_reserve")

    # 4. The broker restarts: every gateway reconnects; telemetry never stopped (it goes straight to InfluxDB).
    before = {s: _influx_count(influx, "battery", "soc_pct", s) for s in SITES}
    assert procs["broker"].terminate() == 0
    time.sleep(2)
    procs["broker"] = Proc("broker", ["mosquitto", "-c", str(out / "broker" / "mosquitto.conf")], d["logs"]).start(
        lambda: _port_open(int(_broker_port(out))))
    seen = time.time()
    wait_until(lambda: all(h["online"] and not h["stale"] and h["mode"] == "disaster_reserve"
                           and h["state_age_s"] is not None and h["state_age_s"] < time.time() - seen
                           for h in central.fleet().values()), TIMEOUT_S, 0.5,
               "every hall's state fresh again after the broker restart")
    wait_until(lambda: all(_influx_count(influx, "battery", "soc_pct", s) > before[s] for s in SITES), TIMEOUT_S,
               1.0, "telemetry still arriving")
    # Commands still flow after the reconnect: municipal staff return the fleet to VPP, every hall acks.
    op_id = central.return_to_vpp("警報解除 warnings lifted (end-to-end test)")
    wait_until(lambda: {c["site"]: c["status"] for c in central.operation(op_id)["commands"]}
               == {s: "ok" for s in SITES}, TIMEOUT_S, 0.5, "every hall acks the return to vpp")
    wait_until(lambda: all(h["mode"] == "vpp" for h in central.fleet().values()), TIMEOUT_S, 0.5,
               "every hall back in vpp")
    # Each hall planned with the day-ahead prices the central service published over MQTT.
    wait_until(lambda: all("central" in str((h.get("inputs") or {}).get("price_source"))
                           and (h.get("inputs") or {}).get("last_central_at") for h in central.fleet().values()),
               TIMEOUT_S, 0.5, "every hall's plan made with the central service's prices")
    for site in SITES:
        assert "Traceback" not in procs[site].log_text(), procs[site].log_tail()

    # 5. SIGTERM stops every process cleanly, exit status 0, nothing left behind.
    for name in ("central", *SITES, "simulate", "broker"):
        rc = procs[name].terminate()
        assert rc == 0, f"{name} exited with {rc}; log:\n{procs[name].log_tail()}"
        assert not procs[name].group_alive(), f"{name} left processes running"
    # Every gateway shipped or kept its telemetry: what reached InfluxDB only grows.
    assert all(_influx_count(influx, "battery", "soc_pct", s) >= before[s] for s in SITES)


def _broker_port(out: Path) -> str:
    for line in (out / "broker" / "mosquitto.conf").read_text().splitlines():
        if line.startswith("listener "):
            return line.split()[1]
    raise AssertionError("no listener in the generated mosquitto.conf")
