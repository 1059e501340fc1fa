"""kill -9 of the writer, with the database up and during an outage: every committed point arrives once.

Child A produces and ships points 0.. and is SIGKILLed mid-stream while the
database is up (some batches are sent but not yet deleted).  Child B, on the
same outbox file, ships A's leftovers and produces points 1,000,000..; the
database is stopped under it (a backlog builds up) and B is SIGKILLed too.
The database comes back; child C ships everything left and produces
2,000,000..2,000,499, then stops cleanly.

The database must then hold, each exactly once: A's points 0..Ma, B's
1,000,000..Mb and all of C's, where each M is at least the last index the
child reported committed and at most one put beyond it (a put that
committed but was killed before it could report).
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.servers import wait_until
from tests.telemetry.influx_targets import influx_target, vm_target

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BATCH = 50


class Child:
    """The writer process with its stdout read in a thread."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.telemetry.outbox_writer_proc", *args],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.committed = -1
        self.drained = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("committed "):
                self.committed = int(line.split()[1])
            elif line.strip() == "drained":
                self.drained = True

    def kill9(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        return self.committed

    def finish(self, timeout_s=60):
        self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        assert self.proc.returncode == 0, self.proc.stderr.read()


@pytest.fixture(params=["influxdb1", "victoriametrics"])
def target(request):
    if request.param == "influxdb1":
        return influx_target(request.getfixturevalue("influx1"))
    return vm_target(request.getfixturevalue("victoria"))


def contiguous_prefix(values, first):
    """The last index if ``values`` are exactly first..last, each once; else None."""
    if not values:
        return None
    last = int(values[-1])
    return last if values == [float(i) for i in range(first, last + 1)] else None


def test_sigkill_and_outage_lose_nothing_and_duplicate_nothing(target, tmp_path):
    run = uuid.uuid4().hex[:8]
    base_ns = (time.time_ns() // 10**9 - 7200) * 10**9
    common = ["--db", str(tmp_path / "outbox.sqlite"), "--api", target.api, "--url", target.url,
              "--run", run, "--base-ns", str(base_ns), "--batch", str(BATCH)]
    children = []
    try:
        a = Child(*common, "--start", "0", "--count", "900000", "--pause-s", "0.005")
        children.append(a)
        wait_until(lambda: a.committed >= 1500 and len(target.values(run)) >= 300, timeout_s=60,
                   interval_s=0.1, what="child A's first points in the database")
        killed_a = a.kill9()  # database up: the shipper is busy sending
        b = Child(*common, "--start", "1000000", "--count", "900000", "--pause-s", "0.005")
        children.append(b)
        wait_until(lambda: b.committed >= 1_000_500, timeout_s=60, what="child B producing")
        target.stop()  # outage while B keeps producing
        mark = b.committed
        wait_until(lambda: b.committed >= mark + 1500, timeout_s=60, what="backlog during the outage")
        killed_b = b.kill9()
    finally:
        for c in children:
            if c.proc.poll() is None:
                c.proc.kill()
    assert killed_a < 899_999 and killed_b < 1_899_999, "a child finished before it was killed"
    target.start()
    c = Child(*common, "--start", "2000000", "--count", "500", "--pause-s", "0")
    wait_until(lambda: c.drained, timeout_s=120, what="child C drained the outbox")
    c.finish()

    def split():
        vals = sorted(target.values(run))
        parts = ([v for v in vals if v < 1e6], [v for v in vals if 1e6 <= v < 2e6], [v for v in vals if v >= 2e6])
        return parts if len(parts[2]) >= 500 else None

    parts = wait_until(split, timeout_s=30, interval_s=0.2, what="child C's points visible")
    ma, mb, mc = (contiguous_prefix(p, first) for p, first in zip(parts, (0, 1_000_000, 2_000_000)))
    assert ma is not None, f"child A's points have a gap or a duplicate ({len(parts[0])} points)"
    assert mb is not None, f"child B's points have a gap or a duplicate ({len(parts[1])} points)"
    assert mc == 2_000_499
    assert killed_a <= ma <= killed_a + BATCH, (killed_a, ma)
    assert killed_b <= mb <= killed_b + BATCH, (killed_b, mb)
    print(f"{target.name}: A {ma + 1}, B {mb - 999_999}, C 500 points stored exactly once "
          f"(killed at {killed_a} and {killed_b})")
