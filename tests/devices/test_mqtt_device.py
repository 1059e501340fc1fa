"""MQTT devices: JSON payloads mapped to readings, staleness, bad payloads; and a real broker."""

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest

from devices.config import DeviceConfig
from devices.errors import DeviceError
from devices.factory import build_devices
from devices.mqtt_device import MqttDevice, MqttDeviceHub
from devices.readings import BatteryReading, BatteryState, MeterReading, PVReading

T0 = datetime(2025, 8, 1, 2, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def cfg(nature="battery", fields=None, scale=None, time_key=None, topic="hall/bms", **kw):
    fields = fields or {"battery": {"soc_pct": "bms.soc", "power_w": "p_kw", "state": "st"},
                        "meter": {"power_w": "p", "import_wh": "e.in", "voltage_v": "u"},
                        "pv": {"power_w": "p"}}[nature]
    t = {"kind": "mqtt", "topic": topic, "fields": fields}
    if scale:
        t["scale"] = scale
    if time_key:
        t["time_key"] = time_key
    return DeviceConfig.model_validate({"id": f"my-{nature}", "nature": nature, "transport": t, **kw})


async def test_battery_message_to_reading_with_scale_and_receive_time():
    clock = Clock()
    dev = MqttDevice(cfg(scale={"power_w": 1000}, rated_w=10000), clock=clock)
    dev.feed(json.dumps({"bms": {"soc": 57.5}, "p_kw": -2.5, "st": 2}))
    r = await dev.read()
    assert isinstance(r, BatteryReading)
    assert (r.device_id, r.time, r.soc_pct, r.power_w, r.state) == ("my-battery", T0, 57.5, -2500.0,
                                                                     BatteryState.CHARGING)
    assert dev.messages == 1 and dev.bad_messages == 0


async def test_meter_with_time_key_in_iso_and_epoch_and_derived_grid_ok():
    clock = Clock()
    dev = MqttDevice(cfg("meter", time_key="ts"), clock=clock)
    dev.feed(json.dumps({"p": "350.5", "e": {"in": 1000}, "u": 101.0, "ts": "2025-08-01T10:59:58+09:00"}))
    r = await dev.read()
    assert isinstance(r, MeterReading) and r.power_w == 350.5 and r.grid_ok
    assert r.time == T0 - timedelta(seconds=2)
    dev.feed(json.dumps({"p": 0, "u": 0.0, "ts": (T0.timestamp() - 1) * 1000}))  # epoch ms; no voltage: grid lost
    r = await dev.read()
    assert r.time == T0 - timedelta(seconds=1) and r.grid_ok is False and r.import_wh is None


async def test_pv_clamps_night_values_and_takes_rated_from_config():
    dev = MqttDevice(cfg("pv", rated_w=5000), clock=Clock())
    dev.feed(b'{"p": -3}')
    r = await dev.read()
    assert isinstance(r, PVReading) and r.power_w == 0.0 and r.rated_w == 5000


async def test_no_message_and_stale_reading_raise_device_error():
    clock = Clock()
    dev = MqttDevice(cfg(period_s=1), clock=clock)
    with pytest.raises(DeviceError, match="topic hall/bms: no message received yet") as info:
        await dev.read()
    assert info.value.kind == "timeout"
    dev.feed(b'{"bms": {"soc": 50}, "p_kw": 1}')
    clock.t += timedelta(seconds=4.9)
    assert (await dev.read()).soc_pct == 50
    clock.t += timedelta(seconds=0.2)
    with pytest.raises(DeviceError, match=r"latest reading is 5.1 s old \(max 5 s\)"):
        await dev.read()


@pytest.mark.parametrize("payload, kind, words", [
    (b"{not json", "decode", "payload is not JSON"),
    (b"[1, 2]", "decode", "not a JSON object"),
    (b'{"p_kw": 1}', "implausible", "field soc_pct: key 'bms.soc' missing"),
    (b'{"bms": {"soc": "full"}, "p_kw": 1}', "decode", "field soc_pct: key 'bms.soc' is 'full', not a number"),
    (b'{"bms": {"soc": true}, "p_kw": 1}', "decode", "is a boolean"),
    (b'{"bms": {"soc": 150}, "p_kw": 1}', "implausible", "field soc_pct: 150 outside 0..100"),
    (b'{"bms": {"soc": 50}, "p_kw": "NaN"}', "implausible", "field power_w: key 'p_kw' is not finite"),
    (b'{"bms": {"soc": 50}, "p_kw": 1e9}', "implausible", "exceeds 1.5 × rated_w"),
])
async def test_bad_payloads_name_topic_and_field_are_counted_and_never_crash(payload, kind, words):
    clock = Clock()
    dev = MqttDevice(cfg(rated_w=5000), clock=clock)
    dev._on_message("hall/bms", payload)  # what the MQTT thread calls: must not raise
    assert dev.bad_messages == 1 and dev.last_error.kind == kind
    with pytest.raises(DeviceError) as info:
        await dev.read()
    assert words in str(info.value) and "my-battery: topic hall/bms" in str(info.value)


async def test_a_bad_message_does_not_hide_a_fresh_good_reading():
    clock = Clock()
    dev = MqttDevice(cfg(), clock=clock)
    dev.feed(b'{"bms": {"soc": 50}, "p_kw": 1}')
    with pytest.raises(DeviceError):
        dev.feed(b"garbage")
    assert (await dev.read()).soc_pct == 50 and dev.bad_messages == 1


@pytest.mark.parametrize("ts, words", [
    ("2025-08-01T02:00:00", "has no timezone"),
    ("yesterday", "not ISO 8601 or epoch"),
    ((T0 + timedelta(minutes=5)).isoformat(), "in the future"),
    (None, "time: key 'ts' missing"),
])
async def test_bad_times(ts, words):
    dev = MqttDevice(cfg("pv", time_key="ts"), clock=Clock())
    with pytest.raises(DeviceError, match=words):
        dev.feed(json.dumps({"p": 1, "ts": ts}))


async def test_out_of_order_message_does_not_replace_a_newer_one():
    dev = MqttDevice(cfg("pv", time_key="ts"), clock=Clock())
    dev.feed(json.dumps({"p": 2, "ts": T0.isoformat()}))
    dev.feed(json.dumps({"p": 1, "ts": (T0 - timedelta(seconds=3)).isoformat()}))
    assert (await dev.read()).power_w == 2


@pytest.mark.parametrize("fields, scale, words", [
    ({"soc_pct": "s", "power_w": "p", "setpoint_w": "sp"}, None, "setpoint_w: MQTT devices are read-only"),
    ({"power_w": "p"}, None, "required field(s) soc_pct not mapped"),
    ({"soc_pct": "s", "power_w": "p"}, {"soh_pct": 2}, "scale for unmapped field(s) soh_pct"),
])
def test_bad_configuration_is_refused(fields, scale, words):
    with pytest.raises(DeviceError) as info:
        MqttDevice(cfg(fields=fields, scale=scale))
    assert info.value.kind == "config" and words in str(info.value)


async def test_through_a_real_broker_with_the_factory(tmp_path):
    from tests.servers import MosquittoServer, random_password
    from tests.servers import wait_until

    pw = random_password()
    with MosquittoServer(tmp_path / "mqtt", users={"gw": pw, "bms": pw}) as broker:
        hub = MqttDeviceHub("127.0.0.1", broker.port, "gw", pw)
        devices = build_devices([cfg(scale={"power_w": 1000}), cfg("pv", topic="hall/pv/+")],
                                mqtt_kwargs={"hub": hub})
        hub.start()
        assert await asyncio.to_thread(hub.wait_ready, 20)
        import paho.mqtt.client as mqtt
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.username_pw_set("bms", pw)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        try:
            pub.publish("hall/bms", b'{"bms": {"soc": 66}, "p_kw": 0.5}', qos=1).wait_for_publish(10)
            pub.publish("hall/pv/inv1", b'{"p": 1234}', qos=1).wait_for_publish(10)
            pub.publish("hall/bms", b"broken", qos=1).wait_for_publish(10)
            bat, pv = devices["my-battery"], devices["my-pv"]
            await asyncio.to_thread(wait_until, lambda: bat.messages >= 2 and pv.messages >= 1, 20)
            assert (await bat.read()).power_w == 500.0 and (await pv.read()).power_w == 1234.0
            assert bat.bad_messages == 1
            await bat.close()
            pub.publish("hall/bms", b'{"bms": {"soc": 1}, "p_kw": 0}', qos=1).wait_for_publish(10)
            pub.publish("hall/pv/inv1", b'{"p": 1}', qos=1).wait_for_publish(10)
            await asyncio.to_thread(wait_until, lambda: pv.messages >= 2, 20)
            assert bat.messages == 2  # unsubscribed: no longer fed
        finally:
            pub.loop_stop()
            pub.disconnect()
            hub.stop()
