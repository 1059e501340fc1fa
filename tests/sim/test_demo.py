"""`ems demo` as a newcomer runs it: one process, the whole embedded system, a dashboard that answers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.netutil import free_port

ROOT = Path(__file__).resolve().parents[2]


def _read_until_banner(proc: subprocess.Popen, out_lines: list[str], timeout_s: float) -> str:
    """Read the demo's output into ``out_lines`` until its start banner ends (or the deadline); the text."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out_lines.append(line)
        if "Ctrl-C stops" in line:
            break
    return "".join(out_lines)


def test_demo_serves_dashboard_and_public_page_and_stops_cleanly(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ems.cli", "demo", "--plain", "--duration", "25", "--speed", "120",
         "--port", str(port), "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        banner = _read_until_banner(proc, out_lines, 60)
        assert f"http://127.0.0.1:{port}/" in banner, "".join(out_lines)[-3000:]
        assert re.search(r"demo-municipal +password run-\S{20,}", banner), banner
        # The public page's API answers with every shelter, and the halls reach a mode.
        url = f"http://127.0.0.1:{port}/api/public/shelters"
        shelters = []
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.load(r)
            shelters = body.get("shelters", body) if isinstance(body, dict) else body
            if len(shelters) == 14 and all(s.get("hours_left") is not None for s in shelters):
                break
            time.sleep(1)
        assert len(shelters) == 14 and all(s.get("hours_left") is not None for s in shelters), shelters
        rest, _ = proc.communicate(timeout=90)
        out_lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(out_lines)
    assert proc.returncode == 0, text[-3000:]
    assert re.search(r"hall-\d\d (vpp|disaster_reserve|islanded|manual) +SoC", text), text[-3000:]
    assert "Traceback" not in text


def _processes_with(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(entry.name))
    return pids


def test_demo_sh_takes_arguments_and_sigterm_stops_everything_with_status_0(tmp_path):
    """``scripts/demo.sh --port N`` (its arguments once broke the venv setup), then SIGTERM as systemd or
    ``kill`` sends it: exit status 0 and no Mosquitto left behind (it used to keep running)."""
    import shutil
    import signal

    port = free_port()
    state = tmp_path / "state"
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "demo.sh"), "--port", str(port), "--plain",
                             "--speed", "120", "--state-dir", str(state)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_lines: list[str] = []
    try:
        text = _read_until_banner(proc, out_lines, 120)
        assert f"http://127.0.0.1:{port}/" in text, text[-3000:]
        broker = _processes_with(str(state / "mqtt")) if shutil.which("mosquitto") else []
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=90)
        out_lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(out_lines)
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text
    if shutil.which("mosquitto"):
        assert broker, "the demo's Mosquitto was not found while it ran"
        time.sleep(0.5)
        assert not _processes_with(str(state / "mqtt")), "the demo's Mosquitto is still running after SIGTERM"
