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


def test_demo_serves_dashboard_and_public_page_and_stops_cleanly(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ems.cli", "demo", "--plain", "--duration", "25", "--speed", "120",
         "--port", str(port), "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        banner = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out_lines.append(line)
            if "Ctrl-C stops" in line:
                banner = "".join(out_lines)
                break
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
