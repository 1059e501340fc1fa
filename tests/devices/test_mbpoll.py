"""An independent client reads and writes the hall simulator: Debian's ``mbpoll``.

The simulator, the codec and the gateway's client all come from this
project; a shared misunderstanding of the register layout would pass every
in-house test.  ``mbpoll`` (a C Modbus master built on libmodbus) knows
nothing of our code, so the documented registers must read as documented:
battery SoC at holding 0 = SoC × 10, power int32 big-endian at holding 2,
meter float32 big-endian at input 0x0034, SunSpec 'SunS' at holding 40000.
"""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest

from devices.simulator.clock import ManualClock
from devices.simulator.server import HallSimulator
from tests.devices.simulator.helpers import JUNE_NIGHT, JUNE_NOON, make_site
from tests.netutil import free_port

MBPOLL = shutil.which("mbpoll")
pytestmark = pytest.mark.skipif(
    MBPOLL is None, reason="Debian's mbpoll is not installed (scripts/test.sh installs it: apt-get install mbpoll)"
)
VALUE_LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)\s*$", re.MULTILINE)


async def mbpoll(port: int, *args: str) -> tuple[int, str, str]:
    """Run mbpoll against 127.0.0.1:port without blocking the simulator's event loop."""
    proc = await asyncio.create_subprocess_exec(
        MBPOLL, "-m", "tcp", "-p", str(port), "-o", "5", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    return proc.returncode, out.decode(), err.decode()


async def read(port: int, unit: int, ref: int, kind: str, count: int = 1, *extra: str) -> dict[int, str]:
    """Values mbpoll prints for one poll, keyed by reference (0-based: ``-0``)."""
    code, out, err = await mbpoll(port, "-a", str(unit), "-0", "-r", str(ref), "-c", str(count),
                                  "-t", kind, "-1", *extra, "127.0.0.1")
    assert code == 0, f"mbpoll failed ({code}): {err}{out}"
    return {int(k): v for k, v in VALUE_LINE.findall(out)}


@pytest.fixture
async def sim():
    port = free_port()
    hall = HallSimulator(make_site(port), ManualClock(JUNE_NIGHT), port=port)
    await hall.start()
    hall.physics.kick_heartbeat(1)
    hall.physics.set_setpoint(-1800)  # charging, so power and grid are not trivial
    for _ in range(2):  # two steps: the battery's 0.5 s response lag has settled
        hall.clock.advance(10)
        hall.physics.step()
    yield hall
    await hall.stop()


async def test_battery_soc_and_power(sim):
    s = sim.physics.state
    values = await read(sim.port, 1, 0, "4", 2)
    assert int(values[0]) == round(s.soc_pct * 10)  # SoC × 10
    assert int(values[1]) == 1000  # SoH 100.0 %
    power = await read(sim.port, 1, 2, "4:int", 1, "-B")
    assert int(power[2]) == round(s.battery_power_w) == -1800
    capacity = await read(sim.port, 1, 8, "4:int", 1, "-B")
    assert int(capacity[8]) == 15000


async def test_one_based_references_by_default(sim):
    code, out, err = await mbpoll(sim.port, "-a", "1", "-r", "1", "-c", "1", "-t", "4", "-1", "127.0.0.1")
    assert code == 0, err
    assert VALUE_LINE.findall(out) == [("1", str(round(sim.physics.state.soc_pct * 10)))]


async def test_meter_float32_input_registers(sim):
    s = sim.physics.state
    power = await read(sim.port, 2, 0x34, "3:float", 1, "-B")
    assert float(power[0x34]) == pytest.approx(s.grid_power_w, rel=1e-4)
    assert s.grid_power_w > 1800  # the hall's load plus the charging battery
    freq = await read(sim.port, 2, 0x46, "3:float", 1, "-B")
    assert float(freq[0x46]) == pytest.approx(60.0, abs=0.05)
    volts = await read(sim.port, 2, 0, "3:float", 1, "-B")
    assert float(volts[0]) == pytest.approx(101.0, abs=1.5)


async def test_sunspec_marker_and_pv_power():
    port = free_port()
    async with HallSimulator(make_site(port, simulator={"cloud_factor": 0.0}), ManualClock(JUNE_NOON), port=port) as hall:
        marker = await read(port, 3, 40000, "4:hex", 4)
        assert [marker[a].lower() for a in range(40000, 40004)] == ["0x5375", "0x6e53", "0x0001", "0x0042"]
        # Model 1 is 66 long: model 103 header at 40070, its W (offset 12) at 40084, W_SF 0.
        header = await read(port, 3, 40070, "4", 2)
        assert header == {40070: "103", 40071: "50"}
        w = await read(port, 3, 40084, "4", 2)
        assert int(w[40084]) == round(hall.physics.state.pv_power_w) > 7000
        assert int(w[40085]) == 0


async def test_mbpoll_writes_setpoint_and_heartbeat(sim):
    code, _, err = await mbpoll(sim.port, "-a", "1", "-0", "-r", "20", "-t", "4:int", "-B", "127.0.0.1", "--", "-1500")
    assert code == 0, err
    code, _, err = await mbpoll(sim.port, "-a", "1", "-0", "-r", "22", "-t", "4", "127.0.0.1", "42")
    assert code == 0, err
    assert sim.physics.state.setpoint_w == -1500 and sim.physics.state.heartbeat == 42
    back = await read(sim.port, 1, 20, "4:int", 1, "-B")
    assert int(back[20]) == -1500


async def test_mbpoll_cannot_write_a_read_only_register(sim):
    soc = sim.physics.state.soc_pct
    code, _, err = await mbpoll(sim.port, "-a", "1", "-0", "-r", "0", "-t", "4", "127.0.0.1", "999")
    assert code != 0 and "Illegal data address" in err
    assert sim.physics.state.soc_pct == soc
