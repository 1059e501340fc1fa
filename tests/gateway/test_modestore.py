"""Mode store: atomic persistence, first start, corrupt files, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ems.gateway.alarms import CORRUPT_STATE_FILE, AlarmSet, Severity
from ems.gateway.modes import Mode, ModeRequest
from ems.gateway.modestore import ModeStore

from .helpers import T0, at

REPO = Path(__file__).resolve().parents[2]


def disaster(t: float = 0.0) -> ModeRequest:
    return ModeRequest("disaster_reserve", "JMA storm warning 3120100", "jma-watcher", at(t),
                       command_id="cmd-42")


def test_missing_file_means_vpp_default(tmp_path):
    loaded = ModeStore(tmp_path / "state", "hall-01").load(T0)
    assert loaded.source == "default" and loaded.alarm is None
    assert loaded.request.mode is Mode.VPP and loaded.request.reason == "default at first start"
    assert not (tmp_path / "state").exists()  # loading alone writes nothing


def test_save_and_load_round_trip(tmp_path):
    store = ModeStore(tmp_path / "a" / "b", "hall-01")  # folders are created
    store.save(disaster(), now=at(1))
    loaded = ModeStore(tmp_path / "a" / "b", "hall-01").load(at(2))
    assert loaded.source == "file" and loaded.request == disaster()
    data = json.loads(store.path.read_text())
    assert data["site_id"] == "hall-01" and data["request"]["issued_by"] == "jma-watcher"
    assert data["saved_at"] == at(1).isoformat()
    manual = ModeRequest("manual", "commissioning", "op-b", at(3), setpoint_w=-1234.5)
    store.save(manual)
    assert store.load(at(4)).request == manual
    assert sorted(p.name for p in store.state_dir.iterdir()) == ["mode-hall-01.json"]  # no temp files


def test_sites_have_separate_files(tmp_path):
    ModeStore(tmp_path, "hall-01").save(disaster())
    assert ModeStore(tmp_path, "hall-02").load(T0).source == "default"


def test_save_fsyncs_file_and_folder(tmp_path, monkeypatch):
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    ModeStore(tmp_path, "hall-01").save(disaster())
    assert len(synced) >= 2


def test_failed_replace_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    store = ModeStore(tmp_path, "hall-01")
    store.save(disaster())
    before = store.path.read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.save(ModeRequest("vpp", "all clear", "op", at(5)))
    assert store.path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["mode-hall-01.json"]


CORRUPT = {
    "garbage": b"\x00\xff{not json",
    "truncated": b'{"version": 1, "site_id": "hall-01", "request": {"mode": "disas',
    "empty": b"",
    "not_object": b"[1, 2, 3]",
    "old_version": json.dumps({"version": 0, "site_id": "hall-01", "request": {}}).encode(),
    "other_site": json.dumps({"version": 1, "site_id": "hall-02",
                              "request": disaster().to_dict()}).encode(),
    "safe_mode": json.dumps({"version": 1, "site_id": "hall-01",
                             "request": {**disaster().to_dict(), "mode": "safe"}}).encode(),
    "manual_no_setpoint": json.dumps({"version": 1, "site_id": "hall-01",
                                      "request": {**disaster().to_dict(), "mode": "manual"}}).encode(),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_file_falls_back_to_disaster_reserve(tmp_path, name):
    store = ModeStore(tmp_path, "hall-01")
    tmp_path.joinpath("mode-hall-01.json").write_bytes(CORRUPT[name])
    alarms = AlarmSet("hall-01")
    loaded = store.load(at(10), alarms)
    assert loaded.source == "fallback" and loaded.request.mode is Mode.DISASTER_RESERVE
    assert loaded.request.issued_by == "system" and "corrupt" in loaded.request.reason
    # the corrupt file is kept aside, byte for byte
    assert loaded.corrupt_path is not None and loaded.corrupt_path.read_bytes() == CORRUPT[name]
    assert loaded.corrupt_path.name.startswith("mode-hall-01.json.corrupt-")
    # alarm raised, critical, naming the file
    assert loaded.alarm is not None and alarms.is_active(CORRUPT_STATE_FILE)
    assert loaded.alarm.severity is Severity.CRITICAL and "mode-hall-01.json" in loaded.alarm.message
    # the fallback is persisted: the next start does not drop back to vpp
    again = ModeStore(tmp_path, "hall-01").load(at(20))
    assert again.source == "file" and again.request.mode is Mode.DISASTER_RESERVE


def test_two_corruptions_in_the_same_second_keep_both_files(tmp_path):
    store = ModeStore(tmp_path, "hall-01")
    for _ in range(2):
        store.path.write_bytes(b"junk")
        store.load(T0)
    kept = sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    assert len(kept) == 2


def test_unreadable_path_falls_back(tmp_path):
    store = ModeStore(tmp_path, "hall-01")
    store.path.mkdir()  # a folder where the file should be
    loaded = store.load(T0)
    assert loaded.source == "fallback" and "cannot read" in loaded.alarm.message
    assert store.load(at(1)).request.mode is Mode.DISASTER_RESERVE


def test_fallback_without_alarm_set_still_returns_an_alarm(tmp_path):
    store = ModeStore(tmp_path, "hall-01")
    store.path.write_text("{")
    assert store.load(T0).alarm.code == CORRUPT_STATE_FILE


WRITER = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    from ems.gateway.modes import ModeRequest
    from ems.gateway.modestore import ModeStore
    store = ModeStore(sys.argv[1], "hall-01")
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        mode = "disaster_reserve" if i % 2 else "manual"
        sp = None if mode == "disaster_reserve" else float(i)
        store.save(ModeRequest(mode, "r" * (i % 500 + 1), "writer", datetime.now(timezone.utc),
                               setpoint_w=sp, command_id=str(i)))
""")


def test_sigkill_during_writes_never_leaves_a_corrupt_file(tmp_path):
    """A crash at any moment leaves the old or the new request, never a broken file."""
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO,
                                stdout=subprocess.PIPE)
        try:
            assert proc.stdout.readline().strip() == b"ready"
            store = ModeStore(tmp_path, "hall-01")
            deadline = time.monotonic() + 30
            while not store.path.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.05 * (round_ + 1))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        loaded = ModeStore(tmp_path, "hall-01").load(T0)
        assert loaded.source == "file", loaded.alarm
        assert loaded.request.issued_by == "writer"
        assert not list(tmp_path.glob("*.tmp"))  # leftovers of the killed writer are gone


def test_load_removes_this_sites_leftover_temp_files_only(tmp_path):
    ModeStore(tmp_path, "hall-01").save(disaster())
    mine = tmp_path / ".mode-hall-01.json.abc123.tmp"
    other = tmp_path / ".mode-hall-02.json.abc123.tmp"
    mine.write_text("half a wri")
    other.write_text("not mine")
    assert ModeStore(tmp_path, "hall-01").load(T0).source == "file"
    assert not mine.exists() and other.exists()
