"""Poll cost per device, ECHONET Lite against Modbus TCP, in the same run.

One hall of the example fleet is simulated twice in a SEPARATE process (so
this process' CPU is the client's alone): once with its Modbus devices
(generic_battery map, SDM630 meter, SunSpec PV inverter on one TCP port) and
once as an ECHONET Lite node (storage battery 0x027D, smart meter 0x0288,
home solar 0x0279 on one UDP port).  Both device sets are built by the
device factory, as a gateway builds them.  Then, for each nature and
protocol in turn (interleaved in ``--rounds`` blocks so that drift of the
machine hits both alike), ``device.read()`` is awaited back to back for
``--seconds`` per block, and the battery setpoint write (verified by
read-back) likewise.

Printed per nature and protocol: polls, wall latency per poll [ms] (mean,
p50, p95), CPU of this process per poll [ms], requests per poll (ECHONET:
datagrams sent, retries included), and the ratio ECHONET / Modbus.

Run: ``ems bench echonet`` (``--help`` for the options, ``--json FILE``
writes the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from benchmarks.bench_control import HOST, SimulatorProcess, pick_free_ports
from devices.config import DeviceConfig
from devices.factory import build_devices, close_all
from ems.config import load_fleet

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "fleet.yaml"
NATURES = ("battery", "meter", "pv")


def echonet_site(site, udp_port: int, sim_port: int):
    """``site`` with its devices replaced by ECHONET Lite objects on ``udp_port`` (answers to any local port)."""
    t = {"kind": "echonet_lite", "host": HOST, "port": udp_port, "instance": 1, "local_port": 0}
    devices = [DeviceConfig.model_validate({"id": d.id, "nature": d.nature.value, "rated_w": d.rated_w,
                                            "timeout_s": d.timeout_s, "transport": t}) for d in site.devices]
    return site.model_copy(update={"devices": devices,
                                   "simulator": site.simulator.model_copy(update={"port": sim_port})})


def modbus_site(site, port: int):
    """``site`` with its Modbus devices moved to ``port`` on loopback."""
    devices = [d.model_copy(update={"transport": d.transport.model_copy(update={"port": port, "host": HOST})})
               for d in site.devices]
    return site.model_copy(update={"devices": devices,
                                   "simulator": site.simulator.model_copy(update={"port": port})})


def _requests(device) -> int:
    """Requests sent so far on the device's shared connection (EchonetSocket or ModbusConnection)."""
    conn = device.connection
    return conn.requests if hasattr(conn, "requests") else conn.stats.requests


async def _block(op, seconds: float) -> tuple[list[float], float, int]:
    """Run ``op`` back to back for ``seconds``: (latencies [s], CPU [s], calls)."""
    latencies = []
    cpu0, end = time.process_time(), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await op()
        latencies.append(time.perf_counter() - t0)
    return latencies, time.process_time() - cpu0, len(latencies)


def _summary(latencies: list[float], cpu_s: float, requests: int) -> dict:
    n = len(latencies)
    q = statistics.quantiles(latencies, n=20) if n >= 20 else [max(latencies)] * 19
    return {"polls": n, "mean_ms": 1000 * statistics.fmean(latencies), "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * q[18], "cpu_ms": 1000 * cpu_s / n, "requests_per_poll": requests / n if requests else None}


async def measure(modbus: dict, echonet: dict, seconds: float, rounds: int) -> dict:
    """Figures per operation and protocol (see the module docstring)."""
    ops: dict[str, dict[str, object]] = {}
    for nature in NATURES:
        ops[f"read {nature}"] = {"modbus": modbus[nature].read, "echonet": echonet[nature].read}
    sign = [1]

    def setpoint(dev):
        async def op():
            sign[0] = -sign[0]
            await dev.set_power_w(500.0 * sign[0])
        return op

    ops["write battery setpoint"] = {"modbus": setpoint(modbus["battery"]), "echonet": setpoint(echonet["battery"])}
    for per in ops.values():  # warm-up: connect, SunSpec discovery, property maps
        for op in per.values():
            await op()
    results: dict[str, dict[str, dict]] = {}
    for name, per in ops.items():
        acc = {proto: ([], 0.0, 0) for proto in per}
        for _ in range(rounds):
            for proto, op in per.items():
                dev = (modbus if proto == "modbus" else echonet)[name.split()[-1] if name.startswith("read")
                                                                 else "battery"]
                r0 = _requests(dev)
                lat, cpu, _n = await _block(op, seconds / rounds)
                lats, cpus, reqs = acc[proto]
                acc[proto] = (lats + lat, cpus + cpu, reqs + _requests(dev) - r0)
        results[name] = {proto: _summary(*acc[proto]) for proto in per}
    await modbus["battery"].set_power_w(0)
    await echonet["battery"].set_power_w(0)
    return results


def report(results: dict) -> str:
    lines = [f"{'operation':24} {'protocol':9} {'polls':>6} {'mean ms':>8} {'p50 ms':>7} {'p95 ms':>7} "
             f"{'CPU ms':>7} {'req/poll':>8}"]
    for name, per in results.items():
        for proto, r in per.items():
            req = f"{r['requests_per_poll']:.2f}" if r["requests_per_poll"] else "-"
            lines.append(f"{name:24} {proto:9} {r['polls']:6d} {r['mean_ms']:8.3f} {r['p50_ms']:7.3f} "
                         f"{r['p95_ms']:7.3f} {r['cpu_ms']:7.3f} {req:>8}")
        m, e = per["modbus"], per["echonet"]
        lines.append(f"{'':24} ECHONET/Modbus: latency x{e['mean_ms'] / m['mean_ms']:.2f}, "
                     f"CPU x{e['cpu_ms'] / m['cpu_ms']:.2f}")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict:
    fleet = load_fleet(args.config)
    site = fleet.site(args.site) if args.site else fleet.sites[0]
    if {d.transport.kind for d in site.devices} != {"modbus_tcp"}:
        raise SystemExit(f"error: site {site.id} must have Modbus TCP devices (the reference)")
    tcp_port, sim_port = pick_free_ports(2)
    udp_port = pick_free_ports(1)[0]
    m_site, e_site = modbus_site(site, tcp_port), echonet_site(site, udp_port, sim_port)
    sims = SimulatorProcess([SimpleNamespace(hall=m_site, port=tcp_port),
                             SimpleNamespace(hall=e_site, port=sim_port)])
    modbus = build_devices(m_site.devices)
    echonet = build_devices(e_site.devices)
    try:
        results = await measure({d.nature.value: modbus[d.id] for d in m_site.devices},
                                {d.nature.value: echonet[d.id] for d in e_site.devices}, args.seconds, args.rounds)
    finally:
        await close_all(modbus)
        await close_all(echonet)
        sims.close()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ems bench echonet", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="fleet file (default: the example fleet)")
    p.add_argument("--site", help="hall to simulate (default: the first); its devices must be Modbus TCP")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per operation and protocol (default 2)")
    p.add_argument("--rounds", type=int, default=4, help="interleaved blocks per operation (default 4)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if not args.seconds > 0 or args.rounds < 1:
        p.error("--seconds must be > 0 and --rounds >= 1")
    results = asyncio.run(run(args))
    print(f"poll cost per device on loopback, simulators in a separate process ({args.seconds:g} s per "
          f"operation and protocol, {args.rounds} interleaved blocks)")
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
