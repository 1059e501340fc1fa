"""`ems deploy init` / `add-hall`: what is written, that the real loaders read it, secrets kept and never shown."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import yaml

from ems.central.config import load_central_config
from ems.config import load_fleet
from ems.gateway.config import load_gateway_config
from tests.deploy.conftest import FLEET, Deployment, ems, fleet_copy, test_tree_options
from tests.netutil import free_port

SITES = [s.id for s in load_fleet(FLEET).sites]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _secrets(out: Path) -> dict[Path, str]:
    """Every secret file: the passwords and the central audit log's key."""
    files = sorted([*out.rglob("*.password"), *out.rglob("*.key")])
    return {p: p.read_text(encoding="utf-8").strip() for p in files}


def _passwd_ok(passwd: Path, user: str, password: str) -> bool:
    line = next(x for x in passwd.read_text().splitlines() if x.startswith(f"{user}:"))
    _, _, it, salt, digest = line.split(":", 1)[1].split("$")
    return base64.b64decode(digest) == hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt),
                                                           int(it))


def test_layout_and_modes(deployment: Deployment):
    out = deployment.out
    for rel in ("deploy.yaml", "README.md", "fleet/fleet.yaml", "fleet/devicemaps/sdm630.yaml",
                "broker/mosquitto.conf", "broker/passwd", "broker/acl", "central/central.yaml",
                "systemd/ems-gateway@.service", "systemd/ems-central.service", "systemd/ems-broker.service"):
        assert (out / rel).is_file(), rel
    assert sorted(p.name for p in (out / "gateways").iterdir()) == sorted(SITES)
    for site in SITES:
        g = out / "gateways" / site
        assert (g / "gateway.yaml").is_file()
        assert _mode(g / "secrets") == 0o700
        assert sorted(p.name for p in (g / "secrets").iterdir()) == ["influx.password", "mqtt.password"]
    secrets = _secrets(out)
    assert len(secrets) == 2 * (len(SITES) + 1) + 1  # + the audit key
    assert sorted(p.name for p in (out / "central" / "secrets").iterdir()) == ["audit.key", "influx.password",
                                                                               "mqtt.password"]
    assert all(_mode(p) == 0o600 for p in secrets)
    assert all(len(v) >= 32 for v in secrets.values())
    assert len(set(secrets.values())) == len(secrets)  # every service its own
    assert _mode(out / "broker" / "passwd") == 0o600 and _mode(out / "broker" / "acl") == 0o600
    assert _mode(out / "central" / "secrets") == 0o700


def test_every_gateway_file_loads_with_the_real_loader(deployment: Deployment):
    for site in SITES:
        cfg = load_gateway_config(deployment.out / "gateways" / site / "gateway.yaml")
        assert cfg.site == site
        assert cfg.fleet_path.resolve() == (deployment.out / "fleet" / "fleet.yaml").resolve()
        assert cfg.state_path == deployment.root / "var" / "ems" / site
        assert cfg.uplink is not None and cfg.uplink.username == f"edge-{site}"
        assert (cfg.uplink.host, cfg.uplink.port) == ("127.0.0.1", deployment.port)
        assert cfg.uplink._secret("password", cfg.base_dir) == deployment.secret("gateways", site, "secrets",
                                                                                   "mqtt.password")
        influx = cfg.telemetry.influx
        assert influx is not None and influx.api == "v1" and influx.username == f"edge-{site}"
        assert influx._secret("password", cfg.base_dir) == deployment.secret("gateways", site, "secrets",
                                                                             "influx.password")
        assert cfg.prices.source == "central"
        assert load_fleet(cfg.fleet_path).site(site).id == site  # the copied fleet, with its devicemaps


def test_central_file_loads_with_the_real_loader(deployment: Deployment):
    cfg = load_central_config(deployment.out / "central" / "central.yaml")
    assert cfg.fleet_path == (deployment.out / "fleet" / "fleet.yaml").resolve()
    assert cfg.data_path == deployment.root / "var" / "ems-central"
    assert cfg.mqtt.username == "central" and cfg.mqtt.port == deployment.port
    assert cfg.mqtt.secret(cfg.base_dir) == deployment.secret("central", "secrets", "mqtt.password")
    assert cfg.history.backend == "influx1" and cfg.history.url == "http://127.0.0.1:8086"
    assert cfg.history.username == "central"
    assert cfg.history.secret(cfg.base_dir) == deployment.secret("central", "secrets", "influx.password")
    assert cfg.jma.enabled
    # Warnings and typhoons from the extra feed, earthquakes and tsunamis from eqvol (issue 12).
    assert cfg.jma.source.endswith("/extra.xml") and [s.rsplit("/", 1)[1] for s in cfg.jma.extra_sources] == ["eqvol.xml"]
    assert cfg.jma.earthquake.enabled and cfg.jma.earthquake.min_intensity == "5弱" and "landslide" in cfg.jma.kinds


def test_central_audit_log_is_signed_with_a_key_outside_the_state_folder(deployment: Deployment, tmp_path):
    from ems.central.audit import AuditLog, load_key

    cfg = load_central_config(deployment.out / "central" / "central.yaml")
    key_file, head_log = cfg.path(cfg.audit.key_file), cfg.path(cfg.audit.head_log)
    assert key_file == deployment.out / "central" / "secrets" / "audit.key" and _mode(key_file) == 0o600
    assert head_log == deployment.root / "var" / "ems-central" / "audit-head.log"
    assert cfg.data_path not in key_file.parents
    log = AuditLog(tmp_path / "audit.sqlite", load_key(key_file), tmp_path / "audit-head.log")
    log.append("deploy-test", "login", "")
    assert log.verify().ok and log.verify().head_seq == 1
    log.close()


def test_broker_users_match_the_service_secrets(deployment: Deployment):
    passwd = deployment.out / "broker" / "passwd"
    assert _passwd_ok(passwd, "central", deployment.secret("central", "secrets", "mqtt.password"))
    for site in SITES[:3]:
        assert _passwd_ok(passwd, f"edge-{site}", deployment.secret("gateways", site, "secrets", "mqtt.password"))
    acl = (deployment.out / "broker" / "acl").read_text()
    assert all(f"user edge-{s}" in acl for s in SITES)


def test_secrets_are_never_shown(deployment: Deployment):
    secrets = list(_secrets(deployment.out).values())
    shown = deployment.run.out + deployment.run.err
    texts = [p.read_text(encoding="utf-8") for p in deployment.out.rglob("*")
             if p.is_file() and p.suffix not in (".password", ".key") and p.name != "passwd"]
    for s in secrets:
        assert s not in shown
        assert not any(s in t for t in texts)
    assert "new secrets (mode 0600): 31 files" in deployment.run.out


def test_readme_says_what_goes_where(deployment: Deployment):
    text = (deployment.out / "README.md").read_text(encoding="utf-8")
    for needle in ("ems-gateway@hall-01", "ems users add", "--roles admin", "gateways/<site>/", "broker/",
                   "systemctl reload ems-broker", "add-hall", "ems deploy influx-users", "0600",
                   f"{deployment.port}/tcp", "ems.example.jp"):
        assert needle in text, needle


def test_second_init_and_add_hall_keep_every_secret(tmp_path):
    src = fleet_copy(tmp_path / "src")
    out, port = tmp_path / "etc", free_port()
    opts = test_tree_options(tmp_path, port)
    assert ems("deploy", "init", "--fleet", src, "--out", out, *opts).rc == 0
    before = _secrets(out)
    assert len(before) == len(SITES) + 2  # no InfluxDB: MQTT secrets and the audit key only
    gw01 = (out / "gateways" / "hall-01" / "gateway.yaml").read_text(encoding="utf-8")

    again = ems("deploy", "init", "--fleet", src, "--out", out)  # options from deploy.yaml
    assert again.rc == 0, again.err
    assert "secrets: all kept" in again.out
    assert _secrets(out) == before
    assert (out / "gateways" / "hall-01" / "gateway.yaml").read_text(encoding="utf-8") == gw01  # same port kept

    fleet_copy(tmp_path / "src", extra_sites=("hall-15", "hall-16"))
    added = ems("deploy", "add-hall", "--out", out, "--site", "hall-15")
    assert added.rc == 0, added.err
    after = _secrets(out)
    assert {p: v for p, v in after.items() if p in before} == before
    new = out / "gateways" / "hall-15" / "secrets" / "mqtt.password"
    assert set(after) - set(before) == {new}
    assert new.read_text().strip() not in added.out + added.err
    assert "hall-15" in load_fleet(out / "fleet" / "fleet.yaml").site("hall-15").id  # fleet copied again
    assert not (out / "gateways" / "hall-16").exists()  # only the hall asked for
    passwd = out / "broker" / "passwd"
    assert _passwd_ok(passwd, "edge-hall-15", new.read_text().strip())
    assert _passwd_ok(passwd, "edge-hall-01", before[out / "gateways" / "hall-01" / "secrets" / "mqtt.password"])
    assert "edge-hall-16" not in passwd.read_text()
    assert "user edge-hall-15" in (out / "broker" / "acl").read_text()
    cfg = load_gateway_config(out / "gateways" / "hall-15" / "gateway.yaml")
    assert cfg.site == "hall-15" and cfg.uplink.port == port and cfg.telemetry.influx is None


def _one_line_error(run, *needles: str) -> None:
    assert run.rc == 2, (run.out, run.err)
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bad_input_is_one_clear_line(tmp_path):
    out = tmp_path / "d"
    _one_line_error(ems("deploy", "init", "--fleet", tmp_path / "nope.yaml", "--out", out), "--fleet", "nope.yaml")
    _one_line_error(ems("deploy", "init", "--fleet", FLEET, "--out", out, "--influx-url", "ftp://x"),
                    "--influx-url", "ftp://x")
    _one_line_error(ems("deploy", "init", "--fleet", FLEET, "--out", out, "--influx-url", "http://:80"),
                    "--influx-url")
    _one_line_error(ems("deploy", "init", "--fleet", FLEET, "--out", out, "--broker-host", "mqtt example"),
                    "--broker-host")
    _one_line_error(ems("deploy", "init", "--fleet", FLEET, "--out", out, "--broker-port", "70000"),
                    "--broker-port", "70000")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _one_line_error(ems("deploy", "init", "--fleet", FLEET, "--out", a_file), "--out", "is a file")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    _one_line_error(ems("deploy", "init", "--fleet", FLEET, "--out", foreign), "not empty")
    _one_line_error(ems("deploy", "add-hall", "--out", tmp_path / "none", "--site", "hall-01"),
                    "not a deployment folder")
    assert not out.exists()  # nothing written on bad input


def test_add_hall_refuses_an_unknown_site(deployment: Deployment):
    before = _secrets(deployment.out)
    _one_line_error(ems("deploy", "add-hall", "--out", deployment.out, "--site", "hall-99"), "hall-99", "fleet.yaml")
    assert _secrets(deployment.out) == before


def test_bad_fleet_file_names_file_and_field(tmp_path):
    bad = fleet_copy(tmp_path / "src")
    data = yaml.safe_load(bad.read_text(encoding="utf-8"))
    data["sites"][1]["battery"]["capacity_wh"] = -5
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    run = ems("deploy", "init", "--fleet", bad, "--out", tmp_path / "d")
    assert run.rc == 2 and "sites[1].battery.capacity_wh" in run.err and str(bad) in run.err


def test_influx_without_auth_writes_no_influx_credentials(tmp_path):
    out = tmp_path / "d"
    assert ems("deploy", "init", "--fleet", FLEET, "--out", out, "--influx-url", "https://influx.example.jp/",
               "--influx-no-auth", *test_tree_options(tmp_path, 1883)).rc == 0
    assert not list(out.rglob("influx.password"))
    cfg = load_gateway_config(out / "gateways" / "hall-01" / "gateway.yaml")
    assert cfg.telemetry.influx.url == "https://influx.example.jp" and cfg.telemetry.influx.username is None
    central = load_central_config(out / "central" / "central.yaml")
    assert central.history.backend == "influx1" and central.history.username is None
    run = ems("deploy", "influx-users", "--out", out, "--admin-user", "admin", "--admin-password-file", __file__)
    assert run.rc == 2 and "no InfluxDB users" in run.err
