"""A deployment written once per module by the real CLI (`ems deploy init`), into a test tree.

The options point every path the generated files name into the test's own
folder (``--etc-dir`` = the deployment folder, ``--var-dir``), the units at
this virtualenv (``--prefix``) and the broker at a free loopback port, so
the files are used exactly as written: Mosquitto starts with the conf,
``systemd-analyze verify`` finds the binaries, the loaders read the YAML.
"""

from __future__ import annotations

import copy
import io
import os
import pwd
import shutil
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ems.cli.main import main
from tests.netutil import free_port

REPO = Path(__file__).resolve().parents[2]
FLEET = REPO / "config" / "fleet.yaml"


@dataclass
class Run:
    rc: int
    out: str
    err: str


def ems(*argv: str) -> Run:
    """Run the `ems` CLI in-process; its exit status and output."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return Run(rc, out.getvalue(), err.getvalue())


def test_tree_options(root: Path, port: int) -> list[str]:
    """Options that keep every generated path inside ``root`` (out = root/etc)."""
    return ["--etc-dir", str(root / "etc"), "--var-dir", str(root / "var"), "--prefix", sys.prefix,
            "--broker-user", pwd.getpwuid(os.getuid()).pw_name, "--broker-bind", "127.0.0.1",
            "--broker-port", str(port)]


test_tree_options.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def fleet_copy(folder: Path, extra_sites: tuple[str, ...] = ()) -> Path:
    """config/fleet.yaml (and its devicemaps) copied to ``folder``, with halls cloned from hall-01 added."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "devicemaps").exists():
        shutil.copytree(FLEET.parent / "devicemaps", folder / "devicemaps")
    data = yaml.safe_load(FLEET.read_text(encoding="utf-8"))
    for i, site in enumerate(extra_sites):
        s = copy.deepcopy(data["sites"][0])
        s["id"], s["name"] = site, f"テスト公民館 {site}"
        port = 16000 + i
        s["simulator"]["port"] = port
        for d in s["devices"]:
            d["transport"]["port"] = port
        data["sites"].append(s)
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Deployment:
    root: Path
    out: Path
    port: int
    run: Run

    def secret(self, *parts: str) -> str:
        return self.out.joinpath(*parts).read_text(encoding="utf-8").strip()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Deployment:
    root = tmp_path_factory.mktemp("deploy")
    port = free_port()
    out = root / "etc"
    run = ems("deploy", "init", "--fleet", FLEET, "--out", out, "--broker-host", "127.0.0.1",
              "--influx-url", "http://127.0.0.1:8086", "--central-host", "ems.example.jp",
              *test_tree_options(root, port))
    assert run.rc == 0, run.err
    return Deployment(root, out, port, run)
