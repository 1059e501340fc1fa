"""Uniform access to the two real databases: make a writer, read back what one run stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from telemetry.influx_writers import InfluxV1Writer, InfluxV2Writer, LineWriter


@dataclass
class Target:
    """A database under test: ``writer()`` builds a writer, ``values(run)`` returns the stored v fields
    of measurement ``m`` with tag run=<run> (one per stored point: duplicates would show twice),
    ``stop``/``start`` cause an outage."""

    name: str
    url: str
    writer: Callable[[], LineWriter]
    values: Callable[[str], list[float]]
    stop: Callable[[], None]
    start: Callable[[], None]
    api: str


def influx_target(server) -> Target:
    def values(run: str) -> list[float]:
        return [row[1] for row in server.rows(f"SELECT v FROM m WHERE run = '{run}'", db="ems")]

    return Target("influxdb1", server.url, lambda: InfluxV1Writer(server.url, "ems"), values,
                  server.stop, server.start, "v1")


def vm_target(server) -> Target:
    def values(run: str) -> list[float]:
        return [v for s in server.export(f'm_v{{run="{run}"}}') for v in s["values"]]

    return Target("victoriametrics", server.url, lambda: InfluxV2Writer(server.url, "ems"), values,
                  server.stop, server.start, "v2")
