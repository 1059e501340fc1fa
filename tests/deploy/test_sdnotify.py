"""ems.sdnotify against real AF_UNIX datagram sockets: a path in a temp folder and the abstract namespace."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import uuid

import pytest

from ems.sdnotify import Notifier


def _listen(address: str | bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


@pytest.fixture
def path_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    with _listen(path) as s:
        yield path, s


@pytest.fixture
def abstract_socket():
    name = f"ems-test-{uuid.uuid4().hex}"
    with _listen(b"\0" + name.encode()) as s:
        yield "@" + name, s


@pytest.mark.parametrize("where", ["path_socket", "abstract_socket"])
def test_messages_arrive(where, request):
    name, sock = request.getfixturevalue(where)
    n = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "30000000"})
    assert n.enabled and n.watchdog_interval_s == 15.0
    assert n.ready()
    assert sock.recv(4096) == b"READY=1"
    assert n.status("3 devices ok,\nplan 12:00")
    assert sock.recv(4096) == b"STATUS=3 devices ok, plan 12:00"  # one line: a newline would start a new field
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.ready(status="running")
    assert sock.recv(4096) == b"READY=1\nSTATUS=running"
    assert n.extend_timeout(90)
    assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=90000000"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_without_systemd_everything_is_a_no_op():
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval_s is None
    assert not n.ready() and not n.watchdog() and not n.status("x") and not n.stopping()


def test_watchdog_only_for_the_process_it_is_meant_for(path_socket):
    name, sock = path_socket
    env = {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "20000000"}
    assert Notifier({**env, "WATCHDOG_PID": "4242"}, pid=4242).watchdog_interval_s == 10.0
    other = Notifier({**env, "WATCHDOG_PID": "4242"}, pid=4243)
    assert other.watchdog_interval_s is None and not other.watchdog()
    for bad in ("", "0", "-5", "soon"):
        assert Notifier({**env, "WATCHDOG_USEC": bad}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "20000000"}).watchdog_interval_s is None  # no socket: nobody to ping
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)  # nothing was sent


def test_a_send_error_is_logged_once_and_never_raised(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock"), "WATCHDOG_USEC": "1000000"})
    with caplog.at_level(logging.WARNING, logger="ems.sdnotify"):
        assert not n.ready()
        assert not n.watchdog()
        assert not n.status("still here")
    assert len(caplog.records) == 1 and "gone.sock" in caplog.records[0].getMessage()
    with _listen(str(tmp_path / "gone.sock")) as sock:  # the socket comes back: sending works again
        assert n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_odd_socket_names_disable_it(caplog):
    with caplog.at_level(logging.WARNING, logger="ems.sdnotify"):
        assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    assert "vsock" in caplog.text


def test_a_child_process_reads_its_own_environment(abstract_socket):
    name, sock = abstract_socket
    env = {**os.environ, "NOTIFY_SOCKET": name}
    env.pop("WATCHDOG_PID", None)
    code = "from ems.sdnotify import Notifier; Notifier().ready('child up')"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
    assert sock.recv(4096) == b"READY=1\nSTATUS=child up"
