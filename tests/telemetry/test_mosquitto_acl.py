"""The Mosquitto password/ACL writer (the broker itself checks them in test_mqtt_broker.py)."""

import base64
import hashlib
import shutil
import stat
import subprocess

import pytest

from telemetry.mosquitto_acl import (acl_text, fleet_site_ids, gateway_username, hash_password, main,
                                     password_file_text, write_auth_files)


def test_hash_is_mosquitto_pbkdf2_sha512():
    h = hash_password("s3cret", iterations=101, salt=b"0123456789ab")
    _, seven, it, salt, digest = h.split("$")
    assert (seven, it) == ("7", "101") and base64.b64decode(salt) == b"0123456789ab"
    assert base64.b64decode(digest) == hashlib.pbkdf2_hmac("sha512", b"s3cret", b"0123456789ab", 101)
    assert hash_password("x") != hash_password("x")  # random salt
    with pytest.raises(ValueError):
        hash_password("")


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")
def test_same_format_as_mosquitto_passwd(tmp_path):
    f = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(f), "alice", "pw-1"], check=True)
    theirs = f.read_text().strip().split(":", 1)[1]
    _, _, it, salt, _ = theirs.split("$")
    assert hash_password("pw-1", int(it), base64.b64decode(salt)) == theirs


def test_acl_rules_per_gateway_and_central():
    text = acl_text(["hall-01", "hall-02"], central=["central"], readers=["dashboard"])
    block = text.split("user edge-hall-01\n")[1].split("\n\n")[0].splitlines()
    assert "topic read ems/v1/hall-01/cmd/#" in block
    assert "topic read ems/v1/_fleet/#" in block  # prices and weather from the central service
    assert all(("hall-01" in line) for line in block if line != "topic read ems/v1/_fleet/#")
    assert all(line.startswith("topic write ems/v1/hall-01/") for line in block if "write" in line)
    assert not any(line.startswith("topic write ems/v1/hall-01/cmd") for line in block)
    assert not any("readwrite" in line or "#" in line and "write" in line for line in block)
    central = text.split("user central\n")[1].split("\n\n")[0].splitlines()
    assert central == ["topic read ems/v1/#", "topic write ems/v1/+/cmd/#", "topic write ems/v1/_fleet/#"]
    assert text.split("user dashboard\n")[1].split("\n\n")[0].splitlines() == ["topic read ems/v1/#"]


@pytest.mark.parametrize("bad", ["Hall-01", "hall/01", "hall+", "#", ""])
def test_bad_site_ids_refused(bad):
    with pytest.raises(ValueError):
        gateway_username(bad)


def test_write_auth_files_reuses_secrets_and_protects_them(tmp_path):
    secrets_dir, out = tmp_path / "secrets", tmp_path / "out"
    secrets_dir.mkdir()
    (secrets_dir / "central.password").write_text("given-by-operator\n")
    files = write_auth_files(out, ["hall-01", "hall-02"], secrets_dir)
    assert files.users == ("central", "edge-hall-01", "edge-hall-02")
    assert stat.S_IMODE(files.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((secrets_dir / "edge-hall-01.password").stat().st_mode) == 0o600
    generated = (secrets_dir / "edge-hall-01.password").read_text().strip()
    assert len(generated) >= 24
    lines = dict(line.split(":", 1) for line in files.password_file.read_text().splitlines())
    _, _, it, salt, digest = lines["central"].split("$")
    assert base64.b64decode(digest) == hashlib.pbkdf2_hmac("sha512", b"given-by-operator", base64.b64decode(salt),
                                                           int(it))
    write_auth_files(out, ["hall-01", "hall-02"], secrets_dir)
    assert (secrets_dir / "edge-hall-01.password").read_text().strip() == generated  # not regenerated
    with pytest.raises(ValueError, match="duplicate"):
        write_auth_files(out, ["hall-01", "hall-01"], secrets_dir)
    (secrets_dir / "empty.password").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        write_auth_files(out, ["hall-01"], secrets_dir, central=["empty"])
    with pytest.raises(ValueError, match="used twice"):
        write_auth_files(out, ["hall-01"], secrets_dir, central=["edge-hall-01"])


def test_password_file_text_refuses_odd_user_names():
    with pytest.raises(ValueError, match="user name"):
        password_file_text({"bad:name": "x"})


def test_cli_with_the_shipped_fleet(tmp_path, capsys):
    from pathlib import Path
    fleet = Path(__file__).resolve().parents[2] / "config" / "fleet.yaml"
    assert main(["--fleet", str(fleet), "--secrets", str(tmp_path / "s"), "--out", str(tmp_path / "o"),
                 "--reader", "dashboard"]) == 0
    ids = fleet_site_ids(fleet)
    assert len(ids) == 14
    acl = (tmp_path / "o" / "acl").read_text()
    assert all(f"user edge-{s}" in acl for s in ids) and "user dashboard" in acl
    assert "password_file" in capsys.readouterr().out


def test_cli_errors_name_the_problem(tmp_path, capsys):
    bad = tmp_path / "fleet.yaml"
    bad.write_text("sites:\n  - id: hall-01\n  - id: Hall_2\n")
    assert main(["--fleet", str(bad), "--secrets", str(tmp_path / "s"), "--out", str(tmp_path / "o")]) == 2
    assert "sites[1].id" in capsys.readouterr().err
    assert main(["--sites", "hall-01,,hall-02", "--secrets", str(tmp_path / "s"), "--out", str(tmp_path / "o")]) == 0
