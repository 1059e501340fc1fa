"""The demo's fleet with damaged store files in its state folder before start: one bad file stops nothing.

One hall's telemetry outbox and another hall's command-replay database are
garbage when the runtime starts (as after a power cut on a gateway's flash).
The fleet starts, every hall cycles, the first hall stores telemetry in a
fresh outbox, the second connects and acks a command, and both damaged files
are kept aside for a person to look at.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from devices.simulator.clock import AcceleratedClock
from ems.sim.runtime import FleetRuntime, RuntimeOptions
from telemetry.central_mqtt import CentralMqtt
from telemetry.commands import new_command
from telemetry.fleet_state import FleetStateStore
from telemetry.mqtt_client import MqttSettings

GARBAGE = b"not a database: a torn write left this\n" * 300


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_fleet_starts_with_a_damaged_outbox_and_a_damaged_command_store(tmp_path, fleet):
    state = tmp_path / "state"
    bad_outbox, bad_commands = "hall-02", "hall-03"
    (state / "halls" / bad_outbox).mkdir(parents=True)
    (state / "halls" / bad_outbox / "outbox.sqlite").write_bytes(GARBAGE)
    (state / "halls" / bad_commands).mkdir(parents=True)
    (state / "halls" / bad_commands / f"commands-{bad_commands}.sqlite").write_bytes(GARBAGE)

    clock = AcceleratedClock(datetime(2025, 9, 15, 3, tzinfo=timezone.utc), 60)
    rt = FleetRuntime(fleet, clock, RuntimeOptions(state_dir=state, central=False, rule_only=True, cycle_s=0.5))
    async with rt:
        assert await rt.wait_until(lambda: all(d.status is not None for d in rt.daemons.values()), 60), \
            [s for s, d in rt.daemons.items() if d.status is None]
        assert len(rt.daemons) == len([s for s in fleet.sites if s.simulator is not None])

        outbox = rt.outboxes[bad_outbox]
        assert outbox.recovery is not None
        assert [c.active for c in outbox.alarm_conditions()] == [True]
        assert await rt.wait_until(lambda: outbox.produced_count > 0, 30)

        edge = rt.edges[bad_commands]
        assert edge.replay.recovery is not None
        assert any(c.active for c in edge.alarm_conditions())
        central = CentralMqtt(MqttSettings("127.0.0.1", rt.broker.port, "central", rt.broker.passwords["central"]),
                              FleetStateStore([bad_commands]), "operator:test",
                              client_id=f"central-{uuid.uuid4().hex[:6]}", clean_session=True)
        central.start()
        try:
            assert await asyncio.to_thread(central.wait_connected, 20)
            env = new_command(bad_commands, "mode", {"mode": "disaster_reserve", "reason": "drill"}, "operator:test",
                              ttl=timedelta(hours=12), now=clock.now())
            central.publish_raw(f"ems/v1/{bad_commands}/cmd/mode", json.dumps(env))
            ack = await asyncio.to_thread(central.wait_ack, env["id"], 30)
        finally:
            central.stop()
        assert ack is not None and ack["status"] == "ok", ack
        assert rt.failed_tasks() == []

    kept = sorted(p.name for p in state.glob("halls/*/*.corrupt-*") if not p.name.endswith(("-wal", "-shm")))
    assert len(kept) == 2 and kept[0].startswith("commands-hall-03.sqlite.corrupt-") \
        and kept[1].startswith("outbox.sqlite.corrupt-"), kept
    assert (state / "halls" / bad_outbox / kept[1]).read_bytes() == GARBAGE
