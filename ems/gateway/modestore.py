"""Persist a site's requested mode so it survives a restart or a crash.

One JSON file per site under the fleet's state folder
(``<state_dir>/mode-<site>.json``) with the request: mode, setpoint, reason,
who, when, command id.  Writes are atomic: a temp file in the same folder is
written and fsynced, then ``os.replace``\\ d over the old file, then the
folder is fsynced, so after a crash the file holds either the old or the new
request, never a mix.

Fail-safe choice for a corrupt file: start in ``disaster_reserve``.  The file
may have held a disaster request (a typhoon warning, a municipal order);
silently dropping it would empty the shelter battery into VPP trading while
people rely on it.  Wrongly staying in disaster_reserve only costs VPP
revenue until an operator looks, and the alarm tells them to.  The corrupt
file is kept aside (``.corrupt-<time>``) for inspection and the fallback is
written as the new request, so a second restart does not fall back to vpp.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from ems.gateway.alarms import CORRUPT_STATE_FILE, Alarm, AlarmSet, Severity
from ems.atomicfile import replace_atomically
from ems.gateway.modes import Mode, ModeRequest, ModeRequestError, default_request

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class LoadedMode:
    """Result of :meth:`ModeStore.load`.

    source: "file" (read back), "default" (no file: first start) or
    "fallback" (file corrupt: disaster_reserve); alarm: raised on fallback;
    corrupt_path: where the corrupt file was moved (None if it could not be).
    """

    request: ModeRequest
    source: Literal["file", "default", "fallback"]
    alarm: Alarm | None = None
    corrupt_path: Path | None = None


class ModeStore:
    """Reads and writes the requested mode of one site under ``state_dir``."""

    def __init__(self, state_dir: str | Path, site_id: str):
        self.state_dir = Path(state_dir)
        self.site_id = site_id
        self.path = self.state_dir / f"mode-{site_id}.json"

    def save(self, req: ModeRequest, now: datetime | None = None) -> None:
        """Write ``req`` atomically; raises OSError if it cannot be made durable.

        Call before acting on a request: a request that could not be saved
        must be refused, not applied.
        """
        payload: dict[str, Any] = {"version": FORMAT_VERSION, "site_id": self.site_id,
                                   "request": req.to_dict()}
        if now is not None:
            payload["saved_at"] = now.isoformat()
        data = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
        replace_atomically(self.path, data, durable=True)

    def load(self, now: datetime, alarms: AlarmSet | None = None) -> LoadedMode:
        """Read the stored request.

        Missing file → vpp "default at first start".  Unreadable or invalid
        file → moved aside, alarm ``corrupt_state_file`` raised (into
        ``alarms`` if given), disaster_reserve returned and saved.  Temp
        files left by a crash during :meth:`save` are removed.
        """
        self._remove_leftover_temps()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return LoadedMode(default_request(now), "default")
        except OSError as exc:
            return self._fallback(now, alarms, f"cannot read: {exc.strerror or exc}")
        try:
            req = self._parse(raw)
        except ValueError as exc:
            return self._fallback(now, alarms, str(exc))
        return LoadedMode(req, "file")

    def _remove_leftover_temps(self) -> None:
        # Only this site's daemon writes these, and it is starting: none is in progress.
        try:
            leftovers = list(self.state_dir.glob(f".{self.path.name}.*.tmp"))
        except OSError:
            return
        for tmp in leftovers:
            try:
                tmp.unlink()
            except OSError:
                pass

    def _parse(self, raw: bytes) -> ModeRequest:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown format version {data.get('version')!r} (expected {FORMAT_VERSION})")
        if data.get("site_id") != self.site_id:
            raise ValueError(f"belongs to site {data.get('site_id')!r}, not {self.site_id!r}")
        try:
            return ModeRequest.from_dict(data.get("request"))
        except ModeRequestError as exc:
            raise ValueError(f"request: {exc}") from None

    def _fallback(self, now: datetime, alarms: AlarmSet | None, problem: str) -> LoadedMode:
        moved: Path | None = self.path.with_name(f"{self.path.name}.corrupt-{now.strftime('%Y%m%dT%H%M%SZ')}")
        n = 1
        while moved.exists():
            n += 1
            moved = moved.with_name(f"{self.path.name}.corrupt-{now.strftime('%Y%m%dT%H%M%SZ')}-{n}")
        try:
            os.replace(self.path, moved)
        except OSError:
            moved = None
        req = ModeRequest(
            Mode.DISASTER_RESERVE,
            f"state file {self.path.name} corrupt ({problem}); holding the shelter reserve "
            "until an operator confirms the mode",
            "system", now,
        )
        note = ""
        try:
            self.save(req, now)
        except OSError as exc:
            note = f"; the fallback could not be saved either: {exc.strerror or exc}"
        where = f"kept as {moved.name}" if moved else "could not be moved aside"
        message = (f"mode state file {self.path} is corrupt ({problem}); {where}; "
                   f"started in disaster_reserve as a fail-safe{note}")
        alarm_set = alarms if alarms is not None else AlarmSet(self.site_id)
        alarm = alarm_set.raise_(CORRUPT_STATE_FILE, Severity.CRITICAL, message, now)
        return LoadedMode(req, "fallback", alarm, moved)
