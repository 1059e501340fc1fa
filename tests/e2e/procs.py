"""Processes of a real deployment, started as a systemd unit would start them: own process, own log.

:class:`Proc` runs one command in a new session (so a kill reaches its
children too), keeps its output in a log file, and tells its exit status:
the end-to-end tests check that SIGTERM stops each process cleanly (0).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[2]


def ems_command(*args: str) -> list[str]:
    """The ``ems`` command line, run by this interpreter (the venv's)."""
    return [sys.executable, "-m", "ems.cli", *args]


class Proc:
    """One child process: start, wait until ready, SIGTERM/SIGKILL, exit status, log tail."""

    def __init__(self, name: str, command: Sequence[str], log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.command = list(command)
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.returncodes: list[int] = []

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, ready: Callable[[], bool] | None = None, timeout_s: float = 60.0) -> "Proc":
        """Start; with ``ready``, wait until it returns True (RuntimeError with the log if the process dies)."""
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {' '.join(self.command)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=ROOT, env=self.env, start_new_session=True)
        log.close()
        if ready is not None:
            deadline = time.monotonic() + timeout_s
            while not ready():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s; log:\n{self.log_tail()}")
                time.sleep(0.2)
        return self

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status (SIGKILL and -9 when it does not stop in time)."""
        return self._signal(signal.SIGTERM, timeout_s)

    def kill(self) -> int:
        """SIGKILL the whole process group at once."""
        return self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: int, timeout_s: float) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        rc = self.proc.returncode
        self.returncodes.append(rc)
        return rc

    def group_alive(self, grace_s: float = 5.0) -> bool:
        """Whether any process of this process group (the child and what it started: a planner process,
        multiprocessing's resource tracker) is still running ``grace_s`` [s] after the child ended."""
        if self.proc is None:
            return False
        deadline = time.monotonic() + grace_s
        while True:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return False
            if time.monotonic() > deadline:
                return True
            time.sleep(0.1)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
