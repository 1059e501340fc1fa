"""MarketInputs: the plan's prices and weather at a gateway.  Fallback order (configured source, last known,
tariff), bad messages change nothing, a restart keeps the last known prices, JEPX CSV files, weather by
local date, thread safety, and the whole path over a real Mosquitto."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from ems.gateway.config import PricesSection, WeatherSection
from ems.gateway.inputs import MarketInputs
from optimizer.prices import synthetic_spot_prices
from telemetry.market import (PriceSlot, PricesMessage, WeatherDay, WeatherMessage, prices_topic, to_payload,
                              weather_topic)

JST = timezone(timedelta(hours=9))
NOW = datetime(2026, 12, 7, 5, 0, tzinfo=timezone.utc)  # 14:00 JST
PRICES = prices_topic("chugoku")
WEATHER = weather_topic("3120100")
TARIFF = "tariff flat 30 JPY/kWh"
HEADER = ("受渡日,時刻コード,売り入札量(kWh),買い入札量(kWh),約定総量(kWh),システムプライス(円/kWh),"
          "エリアプライス中国(円/kWh)")


class Clock:
    def __init__(self, t: datetime = NOW):
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def make(tmp_path: Path, clock=None, prices: dict | None = None, weather: dict | None = None, **kw) -> MarketInputs:
    return MarketInputs(PricesSection(**(prices or {})), WeatherSection(**(weather or {})), site_id="hall-01",
                        jepx_area="chugoku", area_code="3120100", cloud_factor=kw.pop("cloud_factor", 0.25),
                        state_dir=tmp_path / "state", clock=clock or Clock(), **kw)


def slots(start: datetime, n: int, minutes: int = 30) -> list[datetime]:
    return [start + timedelta(minutes=minutes * k) for k in range(n)]


def prices_msg(start: datetime, values, source="spot_2026.csv", published_at=NOW, minutes=30, area="chugoku"):
    return PricesMessage(area=area, source=source, published_at=published_at, slot_minutes=minutes,
                         slots=[PriceSlot(start=t, spot_jpy_per_kwh=v)
                                for t, v in zip(slots(start, len(values), minutes), values)])


def payload(msg) -> bytes:
    return to_payload(msg)


def weather_msg(days: dict[date, float], source="drill", published_at=NOW, code="3120100"):
    return WeatherMessage(area_code=code, source=source, published_at=published_at,
                          days=[WeatherDay(date=d, factor=f) for d, f in sorted(days.items())])


TODAY0 = datetime(2026, 12, 7, tzinfo=JST)  # 00:00 JST today


# -- fallback order ---------------------------------------------------------------------------------

def test_fallback_order_central_then_last_known_then_tariff(tmp_path):
    clock = Clock()
    inp = make(tmp_path, clock, prices={"buy_adder_jpy_per_kwh": 10.0, "sell_factor": 0.5})
    times = slots(NOW, 48)  # 14:00 JST today to 13:30 JST tomorrow
    # Nothing known yet: the tariff, which sells at its sell price (0 by default).
    p = inp.prices(times)
    assert p.source == TARIFF and np.all(p.buy == 30.0) and np.all(p.sell == 0.0)
    # An older message covering today 14:00-24:00 and a newer one covering only 14:00-18:00.
    inp.on_message(PRICES, payload(prices_msg(NOW, [20.0] * 20, source="old.csv",
                                              published_at=NOW - timedelta(hours=1))))
    clock.t += timedelta(minutes=5)
    inp.on_message(PRICES, payload(prices_msg(NOW, [8.0] * 8, source="spot_2026.csv")))
    p = inp.prices(times)
    assert p.buy[:8].tolist() == [18.0] * 8 and p.sell[:8].tolist() == [4.0] * 8  # spot 8: +10, ×0.5
    assert p.buy[8:20].tolist() == [30.0] * 12 and p.sell[8] == 10.0  # last known: spot 20
    assert p.buy[20:].tolist() == [30.0] * 28 and p.sell[20] == 0.0  # tariff
    live = "central (spot_2026.csv, published 2026-12-07T05:00:00+00:00)"
    older = "central, last known (old.csv, received 2026-12-07T05:00:00+00:00)"
    assert p.source == f"{live}: 8 slots; {older}: 12 slots; {TARIFF}: 28 slots"
    assert inp.last_central_at == NOW + timedelta(minutes=5)
    assert inp.state_fields()["price_source"] == p.source


def test_tariff_source_ignores_central_prices_and_tou_tariff(tmp_path):
    tou = {"kind": "tou", "periods": [{"from_hour": 0, "jpy_per_kwh": 20}, {"from_hour": 8, "jpy_per_kwh": 35},
                                      {"from_hour": 22, "jpy_per_kwh": 20}], "sell_jpy_per_kwh": 8}
    inp = make(tmp_path, prices={"source": "tariff", "tariff": tou})
    assert inp.topics() == [WEATHER]
    inp.on_message(PRICES, payload(prices_msg(NOW, [1.0] * 4)))  # not asked for: refused
    assert inp.rejected == 1
    p = inp.prices(slots(TODAY0, 48))
    assert p.buy[0] == 20 and p.buy[16] == 35 and p.buy[44] == 20 and np.all(p.sell == 8)
    assert p.source == "tariff time-of-use (0h 20, 8h 35, 22h 20 JPY/kWh)"


def test_synthetic_source(tmp_path):
    inp = make(tmp_path, prices={"source": "synthetic", "buy_adder_jpy_per_kwh": 0}, seed=4)
    times = slots(NOW, 10)
    p = inp.prices(times)
    assert p.source == "synthetic (seed 4)" and p.buy.tolist() == synthetic_spot_prices(times, seed=4).tolist()


def test_fifteen_minute_plan_slots_take_the_half_hour_price(tmp_path):
    inp = make(tmp_path)
    inp.on_message(PRICES, payload(prices_msg(NOW, [10.0, 20.0])))
    p = inp.prices(slots(NOW, 4, minutes=15))
    assert p.buy.tolist() == [22.0, 22.0, 32.0, 32.0]


def test_same_message_again_changes_nothing_but_the_time_heard(tmp_path):
    clock = Clock()
    inp = make(tmp_path, clock)
    why = []
    inp.add_listener(why.append)
    msg = payload(prices_msg(NOW, [10.0] * 4))
    inp.on_message(PRICES, msg)
    clock.t += timedelta(minutes=30)
    inp.on_message(PRICES, msg)  # re-delivered on re-subscribe after a reconnect
    assert len(why) == 1 and "spot_2026.csv" in why[0]
    assert inp.last_central_at == clock.t


# -- bad messages -----------------------------------------------------------------------------------

def good_dict() -> dict:
    return json.loads(payload(prices_msg(NOW, [10.0, 11.0, 12.0])))


def with_(**changes) -> bytes:
    d = good_dict()
    d.update(changes)
    return json.dumps(d).encode()


BAD = [
    (b"not json", "not JSON"),
    (b"", "empty message"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "(message)"),
    (with_(area="tokyo"), "does not match the topic"),
    (with_(area="Chugoku!"), "area"),
    (json.dumps(good_dict()).replace("10.0", "NaN").encode(), "slots.0.spot_jpy_per_kwh"),
    (json.dumps(good_dict()).replace("10.0", "Infinity").encode(), "slots.0.spot_jpy_per_kwh"),
    (with_(slots=[{"start": "2026-12-07T05:00:00Z", "spot_jpy_per_kwh": 1},
                  {"start": "2026-12-07T06:00:00Z", "spot_jpy_per_kwh": 1}]), "slots[1].start"),  # a gap
    (with_(slots=[{"start": "2026-12-07T05:10:00Z", "spot_jpy_per_kwh": 1}]), "slots[0].start"),  # off the grid
    (with_(slots=[{"start": "2026-12-07T05:00:00", "spot_jpy_per_kwh": 1}]), "timezone"),
    (with_(slots=[]), "slots"),
    (with_(slots=[{"start": "2026-12-07T05:00:00Z", "spot_jpy_per_kwh": 1e9}]), "spot_jpy_per_kwh"),
    (with_(published_at="yesterday"), "published_at"),
    (with_(extra_field=1), "extra_field"),
    (b" " * 300_000 + json.dumps(good_dict()).encode(), "larger than"),  # huge
    (with_(slots=[{"start": (NOW + timedelta(minutes=30 * k)).isoformat(), "spot_jpy_per_kwh": 1}
                  for k in range(7 * 96 + 1)]), "slots"),  # more slots than a week of 15-minute slots
    (b"[" * 50_000 + b"]" * 50_000, "not JSON"),  # deep nesting
]


@pytest.mark.parametrize("raw, field", BAD)
def test_bad_prices_messages_are_refused_and_change_nothing(tmp_path, caplog, raw, field):
    inp = make(tmp_path)
    inp.on_message(PRICES, payload(prices_msg(NOW, [7.0] * 4)))
    before = inp.prices(slots(NOW, 6))
    heard = inp.last_central_at
    state = inp.state_file.read_bytes()
    with caplog.at_level(logging.WARNING, logger="ems.gateway.inputs"):
        inp.on_message(PRICES, raw)
        inp.on_message(PRICES, raw)  # retained: arrives again on every reconnect
    after = inp.prices(slots(NOW, 6))
    assert after.source == before.source and after.buy.tolist() == before.buy.tolist()
    assert inp.rejected == 2 and field in inp.last_rejection and PRICES in inp.last_rejection
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and PRICES in warnings[0] and field in warnings[0], warnings
    assert inp.last_central_at == heard and inp.state_file.read_bytes() == state


def test_bad_weather_messages_change_nothing(tmp_path):
    inp = make(tmp_path)
    inp.on_message(WEATHER, payload(weather_msg({date(2026, 12, 7): 0.4})))
    good = json.loads(payload(weather_msg({date(2026, 12, 7): 0.9})))
    bad = [
        {**good, "days": [{"date": "2026-12-07", "factor": 1.5}]},
        {**good, "days": [{"date": "2026-12-08", "factor": 0.5}, {"date": "2026-12-07", "factor": 0.5}]},
        {**good, "area_code": "3120200"},
        {**good, "days": [{"date": "2026-12-07", "factor": float("nan")}]},
    ]
    for b in bad:
        inp.on_message(WEATHER, json.dumps(b).encode())
    assert inp.rejected == 4 and inp.weather_factor(NOW)[0] == 0.4


def test_a_message_on_a_topic_not_asked_for_is_refused(tmp_path):
    inp = make(tmp_path)
    inp.on_message(prices_topic("tokyo"), payload(prices_msg(NOW, [1.0], area="tokyo")))
    assert inp.rejected == 1 and "not a topic" in inp.last_rejection
    assert inp.prices(slots(NOW, 1)).source == TARIFF


# -- restart ----------------------------------------------------------------------------------------

def test_restart_without_uplink_keeps_the_last_known_prices_and_weather(tmp_path):
    clock = Clock()
    inp = make(tmp_path, clock)
    inp.on_message(PRICES, payload(prices_msg(NOW, [9.0] * 10)))
    inp.on_message(WEATHER, payload(weather_msg({date(2026, 12, 7): 0.3, date(2026, 12, 8): 0.6})))
    assert inp.weather_factor(NOW) == (0.3, "central (drill, published 2026-12-07T05:00:00+00:00)")
    # The gateway restarts an hour later; the uplink is down, so nothing arrives.
    clock.t += timedelta(hours=1)
    again = make(tmp_path, clock)
    p = again.prices(slots(clock.t, 12))
    last = "central, last known (spot_2026.csv, received 2026-12-07T05:00:00+00:00)"
    assert p.source == f"{last}: 8 slots; {TARIFF}: 4 slots" and p.buy[0] == 21.0
    assert again.weather_factor(datetime(2026, 12, 8, 12, tzinfo=JST)) == \
        (0.6, "central, last known (drill, received 2026-12-07T05:00:00+00:00)")
    assert again.last_central_at == NOW and again.state_fields()["last_central_at"] == "2026-12-07T05:00:00+00:00"
    # The uplink is back: the retained message arrives again and is live.
    again.on_message(PRICES, payload(prices_msg(NOW, [9.0] * 10)))
    assert again.prices(slots(clock.t, 8)).source == "central (spot_2026.csv, published 2026-12-07T05:00:00+00:00)"
    # Known prices older than two days are dropped.
    clock.t += timedelta(days=3)
    later = make(tmp_path, clock)
    assert later.prices(slots(NOW, 4)).source == TARIFF


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 99}', b'{"version": 1, "jepx_area": "chugoku"}',
                                     b'{"version": 1, "jepx_area": "chugoku", "area_code": "3120100", "batches": [],'
                                     b' "prices": [["2026-12-07T05:00:00+00:00", 1, 30, 5]], "weather": []}',
                                     b"\x00\xff"])
def test_corrupt_state_file_is_logged_and_ignored(tmp_path, caplog, content):
    path = tmp_path / "state" / "market-hall-01.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="ems.gateway.inputs"):
        inp = make(tmp_path)
    assert str(path) in caplog.text
    assert inp.prices(slots(NOW, 2)).source == TARIFF and inp.last_central_at is None
    inp.on_message(PRICES, payload(prices_msg(NOW, [5.0] * 2)))  # and it works on
    assert json.loads(path.read_bytes())["prices"][0][1] == 5.0


def test_state_of_another_area_is_not_used(tmp_path):
    inp = make(tmp_path)
    inp.on_message(PRICES, payload(prices_msg(NOW, [5.0] * 2)))
    other = MarketInputs(PricesSection(jepx_area="tokyo"), WeatherSection(), site_id="hall-01", jepx_area="chugoku",
                         area_code="3120100", state_dir=tmp_path / "state", clock=Clock())
    assert other.prices(slots(NOW, 2)).source == TARIFF and other.topics()[0] == prices_topic("tokyo")


def test_unwritable_state_folder_does_not_stop_the_inputs(tmp_path, caplog):
    (tmp_path / "state").write_text("a file where the folder should be")
    inp = make(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ems.gateway.inputs"):
        inp.on_message(PRICES, payload(prices_msg(NOW, [5.0] * 2)))
    assert "cannot write" in caplog.text
    assert inp.prices(slots(NOW, 2)).buy.tolist() == [17.0, 17.0]


# -- JEPX CSV ---------------------------------------------------------------------------------------

def day_rows(day: date, base: float) -> list[str]:
    return [f"{day:%Y/%m/%d},{c},1,1,1,{base:.2f},{base + c:.2f}" for c in range(1, 49)]


def write_csv(path: Path, rows: list[str]) -> None:
    path.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode("cp932"))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_jepx_csv_file_bad_file_keeps_the_last_good_then_last_known_after_restart(tmp_path, caplog):
    f = tmp_path / "spot.csv"
    write_csv(f, day_rows(date(2026, 12, 7), 10.0))
    clock = Clock()
    cfg = {"source": "jepx_csv", "jepx_csv": Path("spot.csv"), "buy_adder_jpy_per_kwh": 0}
    inp = make(tmp_path, clock, prices=cfg, base_dir=tmp_path)
    assert inp.topics() == [WEATHER]
    times = slots(NOW, 24)  # 14:00 JST to 02:00 JST tomorrow: the file has today only
    p = inp.prices(times)
    assert p.buy[0] == 10.0 + 29 and p.source == f"JEPX CSV (spot.csv): 20 slots; {TARIFF}: 4 slots"
    write_csv(f, day_rows(date(2026, 12, 7), 10.0) + ["2026/12/08,1,1,1,1,10,oops"])
    with caplog.at_level(logging.ERROR, logger="ems.gateway.inputs"):
        p2 = inp.prices(times)
        inp.prices(times)
    assert p2.buy.tolist() == p.buy.tolist() and p2.source == p.source
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"{f}: line 50" in errors[0]
    # Restarted with the file gone: the prices read before are the last known.
    f.unlink()
    clock.t += timedelta(minutes=30)
    again = make(tmp_path, clock, prices=cfg, base_dir=tmp_path)
    p3 = again.prices(slots(clock.t, 4))
    assert p3.buy.tolist() == [40.0, 41.0, 42.0, 43.0]
    assert p3.source == "JEPX CSV, last known (spot.csv, read 2026-12-07T05:00:00+00:00)"


def test_jepx_csv_folder(tmp_path):
    folder = tmp_path / "jepx"
    folder.mkdir()
    write_csv(folder / "spot_summary_2026.csv", day_rows(date(2026, 12, 7), 10.0))
    write_csv(folder / "spot_summary_2027.csv", day_rows(date(2026, 12, 8), 30.0))
    inp = make(tmp_path, prices={"source": "jepx_csv", "jepx_csv": folder, "buy_adder_jpy_per_kwh": 0})
    p = inp.prices(slots(datetime(2026, 12, 7, 23, tzinfo=JST), 4))
    assert p.buy.tolist() == [10 + 47, 10 + 48, 30 + 1, 30 + 2]
    assert p.source == "JEPX CSV (spot_summary_2026.csv): 2 slots; JEPX CSV (spot_summary_2027.csv): 2 slots"


# -- weather ----------------------------------------------------------------------------------------

def test_weather_by_local_date_else_typical(tmp_path):
    inp = make(tmp_path, cloud_factor=0.25)
    typical = (0.75, "typical 0.75 (no weather from the central service for the day)")
    assert inp.weather_factor(NOW) == typical
    inp.on_message(WEATHER, payload(weather_msg({date(2026, 12, 8): 0.2})))
    # 8 December JST starts at 15:00 UTC on the 7th.
    assert inp.weather_factor(datetime(2026, 12, 7, 14, 59, tzinfo=timezone.utc)) == typical
    assert inp.weather_factor(datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc))[0] == 0.2
    assert inp.weather_factor(datetime(2026, 12, 9, 1, tzinfo=JST)) == typical
    typical_cfg = make(tmp_path / "t", weather={"source": "typical"}, cloud_factor=0.25)
    assert typical_cfg.topics() == [PRICES] and typical_cfg.weather_factor(NOW) == (0.75, "typical 0.75")


def test_for_site_from_the_gateway_file(tmp_path):
    from ems.config import load_fleet
    from ems.gateway.config import load_gateway_config

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "spot.csv").write_bytes(b"")
    (tmp_path / "gw.yaml").write_text(f"fleet: {root / 'config' / 'fleet.yaml'}\nsite: hall-02\nstate_dir: st\n"
                                      "prices: {source: jepx_csv, jepx_csv: spot.csv}\n")
    cfg = load_gateway_config(tmp_path / "gw.yaml")
    fleet = load_fleet(cfg.fleet_path)
    site = next(s for s in fleet.sites if s.id == "hall-02")
    inp = MarketInputs.for_site(cfg, fleet, site, clock=Clock())
    assert inp.jepx_area == fleet.fleet.jepx_area and inp.area_code == site.area_code
    assert inp.state_file == tmp_path / "st" / "market-hall-02.json"
    assert inp._csv is not None and inp._csv.path == tmp_path / "spot.csv"
    assert math.isclose(inp.typical_factor, 1 - (site.simulator.cloud_factor if site.simulator else 0.2))


# -- threads ----------------------------------------------------------------------------------------

def test_messages_from_another_thread_while_planning(tmp_path):
    clock = Clock()
    inp = make(tmp_path, clock)
    stop = threading.Event()
    errors = []

    def feed():
        k = 0
        while not stop.is_set():
            k += 1
            try:
                inp.on_message(PRICES, payload(prices_msg(NOW, [float(k % 50)] * 48,
                                                          published_at=NOW + timedelta(seconds=k))))
                inp.on_message(WEATHER, payload(weather_msg({date(2026, 12, 7): (k % 10) / 10},
                                                            published_at=NOW + timedelta(seconds=k))))
            except Exception as exc:  # pragma: no cover - the test fails on it
                errors.append(exc)

    t = threading.Thread(target=feed)
    t.start()
    try:
        for _ in range(300):
            p = inp.prices(slots(NOW, 48))
            assert len(p.buy) == 48 and np.all(np.isfinite(p.buy)) and p.source.startswith("central")
            assert 0 <= inp.weather_factor(NOW)[0] <= 1
    finally:
        stop.set()
        t.join(10)
    assert not errors
    assert json.loads(inp.state_file.read_bytes())["version"] == 1


# -- the whole path over a real broker --------------------------------------------------------------

async def test_central_to_gateway_over_mosquitto_and_restart_with_the_uplink_down(tmp_path):
    import asyncio

    from ems.central.market import MarketPublisher, SyntheticFeed
    from telemetry.central_mqtt import CentralMqtt
    from telemetry.edge_mqtt import EdgeMqtt
    from telemetry.fleet_state import FleetStateStore
    from telemetry.mosquitto_acl import acl_text, gateway_username
    from telemetry.mqtt_client import MqttSettings
    from tests.servers import MosquittoServer, random_password, wait_until

    clock = Clock(datetime.now(timezone.utc).replace(microsecond=0))
    users = {"central": random_password(), gateway_username("hall-01"): random_password()}
    with MosquittoServer(tmp_path / "mqtt", users=users, acl=acl_text(["hall-01"])) as broker:
        def mqtt(user):
            return MqttSettings("127.0.0.1", broker.port, user, users[user], min_reconnect_s=0.5, max_reconnect_s=1)

        link = CentralMqtt(mqtt("central"), FleetStateStore(["hall-01"]), "central", client_id="central-inputs")
        link.start()
        assert await asyncio.to_thread(link.wait_connected, 20)
        pub = MarketPublisher(link.publish_retained, areas=["chugoku"], area_codes=["3120100"],
                              prices=SyntheticFeed(seed=2), clock=clock)
        pub.check_once()
        pub.set_weather(["3120100"], 0.35, "drill: typhoon")

        inp = make(tmp_path, clock)
        edge = EdgeMqtt("hall-01", mqtt("edge-hall-01"), tmp_path / "edge", client_id=f"gw-{uuid.uuid4().hex[:6]}")
        edge.subscribe(inp.topics(), inp.on_message)
        edge.start()
        try:
            assert await edge.wait_connected(20)
            await asyncio.to_thread(wait_until, lambda: inp.last_central_at is not None and
                                    inp.weather_factor(clock.t)[0] == 0.35, 20, what="prices and weather")
            times = slots(datetime.fromtimestamp(clock.t.timestamp() // 1800 * 1800, tz=timezone.utc), 4)
            p = inp.prices(times)
            assert p.source.startswith("central (synthetic (seed 2), published ")
            assert p.buy.tolist() == pytest.approx((synthetic_spot_prices(times, seed=2) + 12).tolist())
            assert inp.rejected == 0
        finally:
            await edge.aclose()
            link.stop()
    # The broker is gone; the gateway restarts and plans with what it knew.
    again = make(tmp_path, clock)
    p = again.prices(times)
    assert p.source.startswith("central, last known (synthetic (seed 2), received ")
    assert again.weather_factor(clock.t)[0] == 0.35
