"""`ems deploy influx-users` against a real InfluxDB 1.x with authentication on."""

from __future__ import annotations

import pytest
import urllib3

from ems.central.config import load_central_config
from ems.gateway.config import load_gateway_config
from telemetry.config import build_writer
from telemetry.influx_writers import WriteError
from tests.deploy.conftest import FLEET, ems, test_tree_options
from tests.netutil import free_port
from tests.servers import InfluxDB1Server


def _query(url: str, user: str, password: str, q: str) -> int:
    r = urllib3.PoolManager().request("POST", f"{url}/query", fields={"q": q, "db": "ems"}, encode_multipart=False,
                        headers=urllib3.make_headers(basic_auth=f"{user}:{password}"))
    return r.status


def test_users_are_created_and_can_do_only_their_part(tmp_path):
    with InfluxDB1Server(tmp_path / "influx", auth=True) as influx:
        out = tmp_path / "etc"
        assert ems("deploy", "init", "--fleet", FLEET, "--out", out, "--influx-url", influx.url,
                   *test_tree_options(tmp_path, free_port())).rc == 0
        admin_pw = tmp_path / "admin.pw"
        admin_pw.write_text(influx.admin_password + "\n")
        admin_pw.chmod(0o600)
        for _ in range(2):  # a second run sets the same passwords again
            run = ems("deploy", "influx-users", "--out", out, "--admin-user", "admin",
                      "--admin-password-file", admin_pw)
            assert run.rc == 0, run.err
            assert "edge-hall-01" in run.out and "central" in run.out

        gw = load_gateway_config(out / "gateways" / "hall-01" / "gateway.yaml")
        writer = build_writer(gw.telemetry.influx, gw.base_dir)
        writer.write(["site,site=hall-01 soc_pct=55.5 1700000000000000000"])
        assert influx.rows("SELECT soc_pct FROM site", db="ems") == [[1700000000000000000, 55.5]]

        central = load_central_config(out / "central" / "central.yaml")
        central_pw = central.history.secret(central.base_dir)
        assert _query(influx.url, "central", central_pw, "SELECT * FROM site") == 200
        gw_pw = gw.telemetry.influx._secret("password", gw.base_dir)
        assert _query(influx.url, "edge-hall-01", gw_pw, "SELECT * FROM site") == 403  # writers cannot read
        with pytest.raises(WriteError):  # the central service cannot write
            build_writer(gw.telemetry.influx.model_copy(update={"username": "central"}), central.base_dir).write(
                ["site,site=hall-01 soc_pct=1 1700000000000000001"])

        bad = ems("deploy", "influx-users", "--out", out, "--admin-user", "admin", "--admin-password-file",
                  tmp_path / "missing.pw")
        assert bad.rc == 2 and "--admin-password-file" in bad.err
        wrong = tmp_path / "wrong.pw"
        wrong.write_text("not-the-password\n")
        bad = ems("deploy", "influx-users", "--out", out, "--admin-user", "admin", "--admin-password-file", wrong)
        assert bad.rc == 2 and "HTTP 401" in bad.err and "not-the-password" not in bad.err
