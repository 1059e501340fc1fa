"""Command envelope validation and the persisted replay guard (no broker)."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from telemetry.commands import (Command, CommandRefused, DispatchPayload, ModePayload, SetpointPayload,
                                new_command, parse_command)
from telemetry.replay import ReplayGuard

NOW = datetime(2025, 9, 1, 12, 0, tzinfo=timezone.utc)


def env(**over):
    e = {"id": "c-1", "site": "hall-01", "issued_by": "operator:sato", "issued_at": NOW.isoformat(),
         "expires_at": (NOW + timedelta(minutes=5)).isoformat(), "kind": "mode",
         "payload": {"mode": "disaster_reserve", "reason": "typhoon warning"}}
    e.update(over)
    return json.dumps(e).encode()


def refusal(raw, kind="mode", now=NOW) -> CommandRefused:
    with pytest.raises(CommandRefused) as info:
        parse_command(raw, "hall-01", kind, now)
    return info.value


def test_valid_commands_of_each_kind():
    cmd = parse_command(env(), "hall-01", "mode", NOW)
    assert isinstance(cmd, Command) and isinstance(cmd.payload, ModePayload)
    assert cmd.payload.mode == "disaster_reserve" and cmd.received_at == NOW
    d = parse_command(env(kind="dispatch", payload={"power_w": 3000, "start": NOW.isoformat(),
                                                    "end": (NOW + timedelta(minutes=30)).isoformat()}),
                      "hall-01", "dispatch", NOW)
    assert isinstance(d.payload, DispatchPayload) and d.payload.power_w == 3000.0
    s = parse_command(env(kind="setpoint", payload={"power_w": -2500, "hold_s": 600}), "hall-01", "setpoint", NOW)
    assert isinstance(s.payload, SetpointPayload) and s.payload.device == "battery"


@pytest.mark.parametrize("raw, code, words", [
    (b"not json", "malformed", "not JSON"),
    (b"[1]", "malformed", "not a JSON object"),
    (b"\xff", "malformed", "not JSON"),
    (env(id="has space"), "malformed", "id:"),
    (env(issued_by=""), "malformed", "issued_by"),
    (env(issued_at="2025-09-01T12:00:00"), "malformed", "issued_at: Input should have timezone info"),
    (env(kind="reboot"), "malformed", "kind:"),
    (env(extra=1), "malformed", "extra: Extra inputs are not permitted"),
    (env(payload={"mode": "party", "reason": "x"}), "malformed", "payload.mode"),
    (env(payload={"mode": "vpp"}), "malformed", "payload.reason: Field required"),
    (env(payload={"mode": "vpp", "reason": "x", "force": True}), "malformed", "payload.force"),
    (env(site="hall-02"), "wrong_site", "for 'hall-02', this is 'hall-01'"),
    (env(expires_at=NOW.isoformat()), "malformed", "expires_at must be after issued_at"),
    (env(expires_at=(NOW + timedelta(days=8)).isoformat()), "too_long_lived", "exceeds"),
    (env(issued_at=(NOW - timedelta(minutes=10)).isoformat(), expires_at=(NOW - timedelta(seconds=1)).isoformat()),
     "expired", "expired at 2025-09-01T11:59:59"),
    (env(issued_at=(NOW + timedelta(hours=1)).isoformat(), expires_at=(NOW + timedelta(hours=2)).isoformat()),
     "not_yet_valid", "in the future"),
])
def test_refusals_name_the_problem(raw, code, words):
    r = refusal(raw)
    assert r.code == code and words in r.message, r.message


def test_refusal_carries_id_and_kind_when_readable():
    r = refusal(env(payload={"mode": "party", "reason": "x"}))
    assert (r.command_id, r.kind) == ("c-1", "mode")
    assert refusal(b"garbage").command_id is None


def test_kind_must_match_the_topic():
    r = refusal(env(kind="setpoint", payload={"power_w": 1}), kind="mode")
    assert r.code == "wrong_kind" and "'setpoint' sent on the topic for 'mode'" in r.message
    assert refusal(env(), kind="reboot").code == "wrong_kind"


@pytest.mark.parametrize("payload, words", [
    ({"power_w": 1e9, "start": NOW.isoformat(), "end": (NOW + timedelta(hours=1)).isoformat()}, "payload.power_w"),
    ({"power_w": 1, "start": NOW.isoformat(), "end": NOW.isoformat()}, "end must be after start"),
    ({"power_w": 1, "start": NOW.isoformat(), "end": (NOW + timedelta(hours=25)).isoformat()}, "at most 24 h"),
    ({"power_w": "NaN", "start": NOW.isoformat(), "end": (NOW + timedelta(hours=1)).isoformat()}, "power_w"),
])
def test_dispatch_payload_checks(payload, words):
    r = refusal(env(kind="dispatch", payload=payload), kind="dispatch")
    assert r.code == "malformed" and words in r.message


@pytest.mark.parametrize("kind, payload, field", [
    ("dispatch", {"power_w": bad, "start": NOW.isoformat(), "end": (NOW + timedelta(hours=1)).isoformat()},
     "payload.power_w") for bad in ("NaN", "Infinity", "-inf", float("nan"), float("inf"), float("-inf"))
] + [
    ("setpoint", {"power_w": bad}, "payload.power_w") for bad in ("NaN", float("nan"), float("-inf"))
] + [
    ("setpoint", {"power_w": 100, "hold_s": bad}, "payload.hold_s") for bad in (float("nan"), float("inf"))
])
def test_nan_and_inf_are_refused_naming_the_field(kind, payload, field):
    # json.dumps writes float nan/inf as the bare NaN/Infinity tokens, which json.loads accepts.
    r = refusal(env(kind=kind, payload=payload), kind=kind)
    assert r.code == "malformed" and f"{field}: Input should be a finite number" in r.message, r.message
    with pytest.raises(ValueError, match="finite number"):
        new_command("hall-01", kind, payload, "central", now=NOW)


def test_new_command_round_trips_and_refuses_bad_payload():
    e = new_command("hall-01", "setpoint", {"power_w": 1000}, "central", now=NOW)
    cmd = parse_command(json.dumps(e), "hall-01", "setpoint", NOW + timedelta(seconds=1))
    assert cmd.id == e["id"] and cmd.issued_by == "central"
    with pytest.raises(ValueError):
        new_command("hall-01", "setpoint", {"watts": 1000}, "central")


def test_replay_guard_refuses_a_second_time_also_after_restart(tmp_path):
    cmd = parse_command(env(), "hall-01", "mode", NOW)
    g = ReplayGuard(tmp_path / "seen.sqlite")
    g.record(cmd)
    with pytest.raises(CommandRefused) as info:
        g.record(cmd)
    assert info.value.code == "replayed" and "already received at 2025-09-01T12:00:00" in info.value.message
    g.close()
    g2 = ReplayGuard(tmp_path / "seen.sqlite")
    with pytest.raises(CommandRefused, match="replayed"):
        g2.record(cmd)
    assert g2.seen("c-1") and not g2.seen("c-2")


def test_replay_guard_forgets_only_long_expired_ids(tmp_path):
    g = ReplayGuard(tmp_path / "seen.sqlite")
    g.record(parse_command(env(), "hall-01", "mode", NOW))
    assert g.purge(NOW + timedelta(minutes=10)) == 0  # expired, but kept for a margin against clock steps
    assert g.purge(NOW + timedelta(hours=2)) == 1 and len(g) == 0
