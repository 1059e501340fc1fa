"""A stand-in for the edge daemon's telemetry path, run as a child process by test_kill9.py.

Produces points ``m,run=<run> v=<i>`` for i in [start, start+count) in puts
of ``batch``, ships them with an InfluxShipper, prints ``committed <i>``
after each put returned (the point counts as produced from then on) and
``drained`` once the outbox is empty.  The test SIGKILLs it at any moment.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from telemetry.influx_writers import InfluxV1Writer, InfluxV2Writer
from telemetry.outbox import Outbox
from telemetry.schema import Priority
from telemetry.shipper import InfluxShipper


async def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--api", choices=["v1", "v2"], required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--base-ns", type=int, required=True)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--pause-s", type=float, default=0.005)
    a = ap.parse_args(argv)
    writer = InfluxV1Writer(a.url, "ems") if a.api == "v1" else InfluxV2Writer(a.url, "ems")
    with Outbox(a.db) as ob:
        shipper = InfluxShipper(ob, writer, batch_points=200, min_backoff_s=0.05, max_backoff_s=0.5)
        task = asyncio.create_task(shipper.run())
        for first in range(a.start, a.start + a.count, a.batch):
            last = min(first + a.batch, a.start + a.count)
            ob.put([(f"m,run={a.run} v={i} {a.base_ns + i * 1_000_000}", Priority.LOW) for i in range(first, last)])
            print(f"committed {last - 1}", flush=True)
            await asyncio.sleep(a.pause_s)
        while not await shipper.drain(5):
            pass
        print("drained", flush=True)
        shipper.stop()
        await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
