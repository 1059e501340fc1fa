"""Real servers for the telemetry tests, one of each per test module that asks for it."""

import pytest

from tests.servers import InfluxDB1Server, VictoriaMetricsServer


@pytest.fixture(scope="module")
def influx1(tmp_path_factory):
    """InfluxDB 1.x without authentication, database ``ems`` created."""
    with InfluxDB1Server(tmp_path_factory.mktemp("influx")) as server:
        server.create_database("ems")
        yield server


@pytest.fixture(scope="module")
def victoria(tmp_path_factory):
    """VictoriaMetrics with dedup of equal timestamps (so re-sent points overwrite)."""
    with VictoriaMetricsServer(tmp_path_factory.mktemp("vm")) as server:
        yield server
