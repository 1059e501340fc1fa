"""The central service's periodic work: expired login sessions are deleted while it runs."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone

from ems.central.sessions import SessionStore
from tests.central.conftest import make_env


def _session_rows(path) -> int:
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    finally:
        conn.close()


def test_running_service_deletes_expired_sessions(tmp_path, fleet):
    env = make_env(tmp_path / "c", fleet, users={"otto": ["operator"]})
    now = [datetime.now(timezone.utc)]
    db = tmp_path / "c" / "users.sqlite"
    sessions = SessionStore(db, idle_s=1800, clock=lambda: now[0])
    env.service.security.sessions = sessions
    users = env.service.security.users
    left = sessions.create(users.get("otto"))  # never used again: only the purge removes it
    now[0] += timedelta(minutes=31)
    fresh = sessions.create(users.get("otto"))
    assert _session_rows(db) == 2

    async def run() -> None:
        await env.service.start()
        try:
            for _ in range(300):  # up to 30 s on a loaded machine; the first purge comes after ~1 s
                if _session_rows(db) == 1:
                    break
                await asyncio.sleep(0.1)
        finally:
            await env.service.stop()

    asyncio.run(run())
    assert _session_rows(db) == 1
    assert sessions.get(fresh.id) is not None and sessions.get(left.id) is None
