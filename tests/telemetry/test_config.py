"""Telemetry settings file: validation with file/field errors, secrets from file or environment."""

import pytest

from devices.configfile import ConfigError
from telemetry.config import build_outbox, build_writer, load_telemetry_config, mqtt_settings
from telemetry.influx_writers import InfluxV1Writer, InfluxV2Writer


def write(tmp_path, text):
    p = tmp_path / "telemetry.yaml"
    p.write_text(text)
    return p


def test_v1_with_password_file_and_mqtt_from_env(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("influx-secret\n")
    monkeypatch.setenv("EMS_TEST_MQTT_PW", "mqtt-secret")
    cfg = load_telemetry_config(write(tmp_path, f"""
influx: {{api: v1, url: "http://127.0.0.1:8086", database: ems, retention_policy: autogen,
          username: edge, password_file: {tmp_path / 'pw'}}}
outbox: {{max_mb: 1}}
mqtt: {{host: 127.0.0.1, port: 8883, tls: true, ca_file: /etc/ca.pem, username: edge-hall-01,
        password_env: EMS_TEST_MQTT_PW}}
"""))
    w = build_writer(cfg.influx)
    assert isinstance(w, InfluxV1Writer) and w.password == "influx-secret" and w.retention_policy == "autogen"
    s = mqtt_settings(cfg.mqtt)
    assert (s.port, s.tls, s.password, s.ca_file) == (8883, True, "mqtt-secret", "/etc/ca.pem")
    assert "mqtt-secret" not in repr(s)
    with build_outbox(cfg.outbox, tmp_path / "state") as ob:
        assert ob.path == tmp_path / "state" / "outbox.sqlite" and ob.max_bytes == 1024 * 1024


def test_v2_without_token_for_victoriametrics(tmp_path):
    cfg = load_telemetry_config(write(tmp_path, "influx: {api: v2, url: 'http://127.0.0.1:8428', bucket: ems}\n"))
    w = build_writer(cfg.influx)
    assert isinstance(w, InfluxV2Writer) and w.bucket == "ems"
    w.close()
    assert cfg.mqtt is None


@pytest.mark.parametrize("text, words", [
    ("influx: {api: v3, url: 'http://x', bucket: b}", "influx"),
    ("influx: {api: v1, url: 'http://x', database: ems, password: hunter2}", "influx.password: unknown key"),
    ("influx: {api: v1, url: 'ftp://x', database: ems}", "influx.url: String should match"),
    ("influx: {api: v1, url: 'http://x', database: ems, password_env: X}", "a password needs a username"),
    ("influx: {api: v2, url: 'http://x', bucket: b, token_file: /a, token_env: B}", "not both"),
    ("mqtt: {host: h, ca_file: /ca.pem}", "ca_file, cert_file and key_file are only used with tls"),
    ("mqtt: {host: h, tls: true, cert_file: /c.pem}", "a client certificate needs both cert_file and key_file"),
    ("outbox: {max_mb: 0}", "outbox.max_mb: must be >= 1"),
])
def test_bad_settings_name_file_and_field(tmp_path, text, words):
    with pytest.raises(ConfigError) as info:
        load_telemetry_config(write(tmp_path, text))
    assert "telemetry.yaml" in str(info.value) and words in str(info.value), str(info.value)


def test_missing_secret_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("EMS_NOT_SET", raising=False)
    cfg = load_telemetry_config(write(tmp_path, f"""
influx: {{api: v2, url: 'http://x', bucket: b, token_file: {tmp_path / 'nope'}}}
mqtt: {{host: h, username: u, password_env: EMS_NOT_SET}}
"""))
    with pytest.raises(ValueError, match="nope: cannot read"):
        build_writer(cfg.influx)
    with pytest.raises(ValueError, match="EMS_NOT_SET is not set"):
        mqtt_settings(cfg.mqtt)
    (tmp_path / "nope").write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        build_writer(cfg.influx)
