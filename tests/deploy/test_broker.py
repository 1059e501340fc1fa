"""The generated mosquitto.conf runs Debian's Mosquitto as written: users, ACL, packet limit, persistence."""

from __future__ import annotations

import pytest

from ems.deploy.msgsize import gateway_messages, largest_messages, max_packet_size, prices_message
from telemetry.market import MAX_PAYLOAD_BYTES
from tests.deploy.conftest import Deployment
from tests.servers import ManagedServer, require_binary, wait_until
from tests.telemetry.mqtt_helpers import RawClient


class GeneratedBroker(ManagedServer):
    """Mosquitto started with the deployment's own conf (``mosquitto -c DIR/broker/mosquitto.conf``)."""

    name = "mosquitto-deployed"

    def __init__(self, deployment: Deployment):
        super().__init__(deployment.root / "broker-run")
        self.binary = require_binary("mosquitto", "mosquitto")
        self.port = deployment.port
        self.conf = deployment.out / "broker" / "mosquitto.conf"
        (deployment.root / "var" / "ems-broker").mkdir(parents=True, exist_ok=True)  # systemd's StateDirectory

    def _configure(self) -> None:
        pass

    def _reassign_ports(self) -> None:
        pass  # the port is written in the conf

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.conf)]


@pytest.fixture(scope="module")
def broker(deployment: Deployment):
    with GeneratedBroker(deployment) as server:
        yield server


def _client(deployment: Deployment, user: str, secret: tuple[str, ...]) -> RawClient:
    return RawClient(deployment.port, user, deployment.secret(*secret))


def _gateway(deployment: Deployment, site: str) -> RawClient:
    return _client(deployment, f"edge-{site}", ("gateways", site, "secrets", "mqtt.password"))


def _central(deployment: Deployment) -> RawClient:
    return _client(deployment, "central", ("central", "secrets", "mqtt.password"))


def _close(*clients: RawClient) -> None:
    for c in clients:
        c.client.disconnect()
        c.client.loop_stop()


def test_conf_states_the_limit_and_its_basis(deployment: Deployment):
    conf = (deployment.out / "broker" / "mosquitto.conf").read_text()
    limit = max_packet_size()
    assert f"\nmax_packet_size {limit}\n" in conf
    for m in largest_messages():
        assert f"{m.packet_bytes} bytes  {m.topic}" in conf
    largest = max(m.packet_bytes for m in largest_messages())
    assert limit >= 4 * largest and limit > MAX_PAYLOAD_BYTES
    assert "\nallow_anonymous false\n" in conf and "\npersistence true\n" in conf
    assert f"\npersistence_location {deployment.root / 'var' / 'ems-broker'}/\n" in conf


def test_gateway_publishes_under_its_own_site_only(deployment: Deployment, broker):
    central, gw1 = _central(deployment), _gateway(deployment, "hall-01")
    try:
        assert [c.value for c in central.subscribe("ems/v1/#")] == [1]
        gw1.publish("ems/v1/hall-02/state", b'{"forged": true}')      # another hall's topic: dropped
        gw1.publish("ems/v1/hall-01/cmd/mode", b'{"self": "command"}')  # its own commands: read only
        gw1.publish("ems/v1/_fleet/prices/chugoku", b'{"fake": 1}')      # central's topics: read only
        gw1.publish("ems/v1/hall-01/state", b'{"real": true}')
        wait_until(lambda: central.on("ems/v1/hall-01/state"), 10, what="own state at central")
        assert central.on("ems/v1/hall-02/state") == []
        assert central.on("ems/v1/hall-01/cmd/mode") == []
        assert central.on("ems/v1/_fleet/prices/chugoku") == []
    finally:
        _close(central, gw1)


def test_commands_reach_only_their_hall(deployment: Deployment, broker):
    central, gw1, gw2 = _central(deployment), _gateway(deployment, "hall-01"), _gateway(deployment, "hall-02")
    try:
        assert gw1.subscribe("ems/v1/hall-01/cmd/#")[0].value == 1
        assert gw2.subscribe("ems/v1/hall-01/cmd/#")[0].value in (1, 0x80)  # granted or refused: never delivered
        central.publish("ems/v1/hall-01/cmd/mode", b'{"to": "hall-01"}')
        wait_until(lambda: gw1.on("ems/v1/hall-01/cmd/mode"), 10, what="command at hall-01")
        assert gw2.on("ems/v1/hall-01/cmd/mode") == []
    finally:
        _close(central, gw1, gw2)


def test_wrong_password_and_anonymous_are_refused(deployment: Deployment, broker):
    bad = RawClient(deployment.port, "edge-hall-01", deployment.secret("gateways", "hall-02", "secrets",
                                                                       "mqtt.password"))
    anon = RawClient(deployment.port, None, None)
    try:
        assert bad.wait_connack().is_failure and anon.wait_connack().is_failure
    finally:
        _close(bad, anon)


def test_the_largest_real_messages_pass_and_an_oversized_one_does_not(deployment: Deployment, broker):
    central, gw1 = _central(deployment), _gateway(deployment, "hall-01")
    try:
        central.subscribe("ems/v1/#")
        plan, state = gateway_messages()
        gw1.publish("ems/v1/hall-01/plan", plan, retain=True)
        gw1.publish("ems/v1/hall-01/state", state, retain=True)
        topic, prices = prices_message()
        central.publish("ems/v1/_fleet/prices/chugoku", prices.replace(b'"hokuriku"', b'"chugoku"'), retain=True)
        wait_until(lambda: central.on("ems/v1/hall-01/plan") and central.on("ems/v1/_fleet/prices/chugoku"), 10,
                   what="plan and prices delivered")
        assert central.on("ems/v1/hall-01/plan")[-1] == plan

        big = _gateway(deployment, "hall-04")
        lost: list = []
        big.wait_connack()
        big.client.on_disconnect = lambda *a: lost.append(a)
        big.client.publish("ems/v1/hall-04/alarm", b"x" * (max_packet_size() + 1), qos=1)
        wait_until(lambda: lost, 10, what="disconnect of the client sending too much")
        _close(big)
        gw1.publish("ems/v1/hall-01/alarm", b"marker")
        wait_until(lambda: central.on("ems/v1/hall-01/alarm"), 10, what="marker")
        assert central.on("ems/v1/hall-04/alarm") == []
    finally:
        _close(central, gw1)
