"""Telemetry benchmarks: Influx write throughput with and without the outbox, MQTT command round trips.

Starts its own servers on free loopback ports in a temporary folder (the
same helpers as the tests: ``tests/servers.py``) and prints figures:

* points/s into InfluxDB 1.x (v1 ``/write``) and VictoriaMetrics (v2 API)
  from one process: direct (serialise + write in batches) and through the
  durable outbox (put in cycle-sized chunks + shipper), and their cost ratio;
* MQTT command round trip central → edge → ack for N simulated sites (all
  edges and the central client in this process, each edge its own
  connection): one command at a time, and a burst to every site at once.

Goals (issue 4): ≥ 20,000 points/s through the outbox at ≤ 1.5× the direct
cost; round-trip p99 ≤ 200 ms on loopback.

    python benchmarks/bench_telemetry.py [--points 200000] [--sites 14,1000] [--skip-influx] [--skip-mqtt]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devices.readings import BatteryReading, BatteryState  # noqa: E402
from telemetry.influx_writers import InfluxV1Writer, InfluxV2Writer  # noqa: E402
from telemetry.outbox import Outbox  # noqa: E402
from telemetry.schema import reading_point  # noqa: E402
from telemetry.shipper import InfluxShipper  # noqa: E402

BATCH = 5000
CHUNK = 500  # points per put: a cycle of a large gateway


def make_points(n: int, run: str):
    """n battery points over 50 series, 1 ms apart within a series (VictoriaMetrics keeps ms)."""
    t0 = datetime.now(timezone.utc) - timedelta(hours=2)
    return [reading_point(f"{run}-{i % 50:02d}", BatteryReading(
        "battery", t0 + timedelta(milliseconds=i // 50), soc_pct=50 + (i % 40) * 0.5, power_w=float(i % 5000 - 2500),
        max_charge_w=5000.0, max_discharge_w=5000.0, state=BatteryState.IDLE)) for i in range(n)]


def direct(writer, points) -> float:
    """Seconds to serialise and write ``points`` in batches, no outbox."""
    start = time.perf_counter()
    for i in range(0, len(points), BATCH):
        writer.write([p.to_line() for p in points[i:i + BATCH]])
    return time.perf_counter() - start


async def through_outbox(writer, points, folder: Path) -> tuple[float, float]:
    """(seconds until everything is delivered, seconds spent in put()) through outbox + shipper."""
    with Outbox(folder / f"bench-{uuid.uuid4().hex[:6]}.sqlite", max_bytes=2 * 1024**3) as ob:
        shipper = InfluxShipper(ob, writer, batch_points=BATCH)
        task = asyncio.create_task(shipper.run())
        start = time.perf_counter()
        put_s = 0.0
        for i in range(0, len(points), CHUNK):
            t = time.perf_counter()
            ob.put(points[i:i + CHUNK])
            put_s += time.perf_counter() - t
            await asyncio.sleep(0)  # the control loop yields between cycles
        if not await shipper.drain(timeout_s=600):
            raise RuntimeError(f"outbox not drained: {shipper.status}")
        total = time.perf_counter() - start
        shipper.stop()
        await task
    return total, put_s


def bench_influx(n: int, folder: Path) -> list[dict]:
    from tests.servers import InfluxDB1Server, VictoriaMetricsServer

    results = []
    with InfluxDB1Server(folder / "influx") as influx, VictoriaMetricsServer(folder / "vm") as vm:
        influx.create_database("ems")
        targets = [("InfluxDB 1.6 (v1 /write)", lambda: InfluxV1Writer(influx.url, "ems")),
                   ("VictoriaMetrics (v2 API)", lambda: InfluxV2Writer(vm.url, "ems"))]
        for name, make_writer in targets:
            w = make_writer()
            direct(w, make_points(min(n, 20_000), "warm"))  # warm up connections and the database
            d = direct(w, make_points(n, "direct"))
            o, put_s = asyncio.run(through_outbox(w, make_points(n, "outbox"), folder))
            w.close()
            r = {"target": name, "points": n, "direct_pps": n / d, "outbox_pps": n / o, "ratio": o / d,
                 "put_us_per_point": put_s / n * 1e6}
            results.append(r)
            print(f"{name:28s} direct {r['direct_pps']:9,.0f} pts/s   outbox {r['outbox_pps']:9,.0f} pts/s   "
                  f"cost ratio {r['ratio']:.2f}   put() {r['put_us_per_point']:.1f} µs/point", flush=True)
    return results


#: Edges per worker process: paho's network loop uses select(), which cannot watch file
#: descriptors above 1024, and each edge holds about six (socket, wake-up pair, SQLite files).
EDGES_PER_WORKER = 100


async def edge_worker(sites: list[str], port: int, state_dir: Path) -> None:
    """Child process: run EdgeMqtt for ``sites``, say 'ready', run until stdin closes."""
    import os

    from telemetry.edge_mqtt import EdgeMqtt
    from telemetry.mosquitto_acl import gateway_username
    from telemetry.mqtt_client import MqttSettings

    pw = os.environ["BENCH_MQTT_PASSWORD"]
    edges = []
    for s in sites:
        e = EdgeMqtt(s, MqttSettings("127.0.0.1", port, gateway_username(s), pw, keepalive_s=60), state_dir,
                     client_id=f"edge-{s}")
        e.on_command(lambda cmd: {"accepted": cmd.kind})
        e.start()
        edges.append(e)
    ok = await asyncio.gather(*(e.wait_connected(120) for e in edges))
    print("ready" if all(ok) else f"failed {ok.count(False)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for e in edges:
        e.stop(1)


async def bench_mqtt(n_sites: int, folder: Path, rounds: int) -> dict:
    import os
    import subprocess

    from telemetry.central_mqtt import CentralMqtt
    from telemetry.fleet_state import FleetStateStore
    from telemetry.mosquitto_acl import acl_text, gateway_username
    from telemetry.mqtt_client import MqttSettings
    from tests.servers import MosquittoServer, random_password

    sites = [f"b{i:04d}" for i in range(n_sites)]
    pw = random_password()  # one password for all simulated users keeps start-up short
    users = {"central": pw, **{gateway_username(s): pw for s in sites}}
    workers: list[subprocess.Popen] = []
    with MosquittoServer(folder / f"mqtt-{n_sites}", users=users, acl=acl_text(sites)) as broker:
        try:
            t = time.perf_counter()
            for i in range(0, n_sites, EDGES_PER_WORKER):
                workers.append(subprocess.Popen(
                    [sys.executable, __file__, "--edge-worker", ",".join(sites[i:i + EDGES_PER_WORKER]),
                     "--port", str(broker.port), "--state", str(folder / f"state-{n_sites}")],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                    env={**os.environ, "BENCH_MQTT_PASSWORD": pw}))
            for w in workers:
                line = await asyncio.to_thread(w.stdout.readline)
                if line.strip() != "ready":
                    raise RuntimeError(f"edge worker: {line.strip() or 'exited'}")
            connect_s = time.perf_counter() - t
            central = CentralMqtt(MqttSettings("127.0.0.1", broker.port, "central", pw), FleetStateStore(sites),
                                  "bench", client_id="bench-central", clean_session=True)
            central.start()
            if not await asyncio.to_thread(central.wait_connected, 60):
                raise RuntimeError("central did not connect")
            payload = {"mode": "vpp", "reason": "benchmark"}

            async def one(site: str) -> float:
                start = time.perf_counter()
                ack = await central.command(site, "mode", payload, timeout_s=60)
                if ack is None or ack["status"] != "ok":
                    raise RuntimeError(f"{site}: bad ack {ack}")
                return time.perf_counter() - start

            for s in sites[:min(20, n_sites)]:  # warm-up
                await one(s)
            sequential = [await one(sites[i % n_sites]) for i in range(max(rounds * 14, 200))]
            burst: list[float] = []
            burst_wall = []
            for _ in range(rounds if n_sites <= 100 else 3):
                t = time.perf_counter()
                burst += await asyncio.gather(*(one(s) for s in sites))
                burst_wall.append(time.perf_counter() - t)
            central.stop()
        finally:
            for w in workers:
                if w.poll() is None:
                    w.stdin.close()
            for w in workers:
                try:
                    w.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    w.kill()

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000

    r = {"sites": n_sites, "connect_s": connect_s,
         "seq_p50_ms": pct(sequential, 0.5), "seq_p99_ms": pct(sequential, 0.99),
         "burst_p50_ms": pct(burst, 0.5), "burst_p99_ms": pct(burst, 0.99),
         "burst_all_acked_s": statistics.mean(burst_wall)}
    print(f"MQTT {n_sites:5d} sites: one at a time p50 {r['seq_p50_ms']:.1f} ms p99 {r['seq_p99_ms']:.1f} ms | "
          f"burst to all: p50 {r['burst_p50_ms']:.1f} ms p99 {r['burst_p99_ms']:.1f} ms, all acked in "
          f"{r['burst_all_acked_s']:.2f} s | {n_sites} edges in {len(workers)} processes connected in "
          f"{connect_s:.1f} s", flush=True)
    return r


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and print the figures; returns the exit status."""
    ap = argparse.ArgumentParser(prog="bench telemetry", description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=200_000, help="points per Influx measurement run")
    ap.add_argument("--sites", default="14,1000", help="comma-separated site counts for the MQTT round trip")
    ap.add_argument("--rounds", type=int, default=10, help="burst rounds for small fleets")
    ap.add_argument("--skip-influx", action="store_true")
    ap.add_argument("--skip-mqtt", action="store_true")
    ap.add_argument("--edge-worker", help=argparse.SUPPRESS)  # internal: run simulated edges
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.edge_worker:
        asyncio.run(edge_worker(args.edge_worker.split(","), args.port, args.state))
        return 0
    # SIGTERM (e.g. from `timeout`) unwinds normally, so the servers are stopped and the folder removed.
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    except ValueError:  # not the main thread
        previous = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
            folder = Path(tmp)
            if not args.skip_influx:
                bench_influx(args.points, folder)
            if not args.skip_mqtt:
                for n in (int(x) for x in args.sites.split(",") if x.strip()):
                    asyncio.run(bench_mqtt(n, folder, args.rounds))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
