"""The central market publisher: JEPX CSV prices (file or folder, bad files), synthetic prices, weather from a
file or the API, retained publishing only on change, the config section, the service task, and the real
broker (the gateways' user reads what the central user publishes, again after a broker crash)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from devices.configfile import ConfigError
from ems.central.cli import build_market, build_service
from ems.central.config import load_central_config
from ems.central.market import (MAX_SLOTS, JepxCsvFeed, MarketPublisher, SyntheticFeed, WeatherFileError,
                                parse_weather_file)
from telemetry.market import parse_prices, parse_weather, prices_topic, weather_topic
from tests.central.conftest import ROOT, feed, make_env, state_message

JST = timezone(timedelta(hours=9))
HEADER = ("受渡日,時刻コード,売り入札量(kWh),買い入札量(kWh),約定総量(kWh),システムプライス(円/kWh),"
          "エリアプライス東京(円/kWh),エリアプライス中国(円/kWh)")
#: 14:00 JST on 7 December 2026.
NOW = datetime(2026, 12, 7, 5, 0, tzinfo=timezone.utc)
CODES = ["3120100", "3120200"]
PRICES = prices_topic("chugoku")


def day_rows(day: date, base: float, codes=range(1, 49)) -> list[str]:
    return [f"{day:%Y/%m/%d},{c},1000,1000,900,{base + c / 10:.2f},{base + 1:.2f},{base + c:.2f}" for c in codes]


def csv_bytes(rows: list[str]) -> bytes:
    return ("\r\n".join([HEADER, *rows]) + "\r\n").encode("cp932")


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_bytes(csv_bytes(rows))
    # a fresh mtime even within the file system's timestamp granularity
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    return path


class Clock:
    def __init__(self, t: datetime = NOW):
        self.t = t

    def __call__(self) -> datetime:
        return self.t


class Sink:
    """Records what the publisher publishes: topic -> payloads."""

    def __init__(self):
        self.sent: list[tuple[str, bytes]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        self.sent.append((topic, payload))

    def on(self, topic: str) -> list[dict]:
        return [json.loads(p) for t, p in self.sent if t == topic]


def days(start: date, n: int) -> list[date]:
    return [start + timedelta(days=k) for k in range(n)]


def publisher(sink, clock, **kw) -> MarketPublisher:
    return MarketPublisher(sink, areas=kw.pop("areas", ["chugoku"]), area_codes=kw.pop("area_codes", CODES),
                           clock=clock, **kw)


# -- JEPX CSV ---------------------------------------------------------------------------------------

def test_jepx_file_publishes_from_yesterday_to_the_end_of_the_data_once(tmp_path):
    f = write_csv(tmp_path / "spot_summary_2026.csv",
                  [r for i, d in enumerate(days(date(2026, 12, 1), 8)) for r in day_rows(d, 10.0 + i)])
    sink, clock = Sink(), Clock()
    pub = publisher(sink, clock, prices=JepxCsvFeed(f, ["chugoku", "tokyo"]), areas=["chugoku", "tokyo"])
    assert pub.check_once() == [PRICES, prices_topic("tokyo")]
    msg = parse_prices(PRICES, sink.sent[0][1])
    # from 00:00 JST on 6 December (yesterday) to the end of 8 December: 3 days
    assert msg.slots[0].start == datetime(2026, 12, 6, tzinfo=JST) and len(msg.slots) == 3 * 48
    assert msg.slots[0].spot_jpy_per_kwh == pytest.approx(15.0 + 1)  # 6 Dec is day 5: base 15, code 1
    assert msg.source == "spot_summary_2026.csv" and msg.published_at == NOW and msg.slot_minutes == 30
    assert parse_prices(prices_topic("tokyo"), sink.sent[1][1]).slots[0].spot_jpy_per_kwh == pytest.approx(16.0)
    # Nothing changed: nothing published, however often it looks.
    clock.t += timedelta(hours=3)
    assert pub.check_once() == [] and len(sink.sent) == 2
    # The next day's data is added: published again, with the new published_at.
    write_csv(f, [r for i, d in enumerate(days(date(2026, 12, 1), 9)) for r in day_rows(d, 10.0 + i)])
    assert pub.check_once() == [PRICES, prices_topic("tokyo")]
    msg = parse_prices(PRICES, sink.sent[2][1])
    assert len(msg.slots) == 4 * 48 and msg.published_at == clock.t
    st = pub.status()
    assert st["last_error"] is None and st["topics"][0]["slots"] == 192


@pytest.mark.parametrize("rows, where", [
    (["2026/12/07,49,1,1,1,10,10,10"], "line 50: column 時刻コード: 49 outside 1–48"),
    (["2026/12/07,1,1,1,1,10,10,abc"], "line 50: column エリアプライス中国(円/kWh): not a number"),
    (["2026/12/07,1,1,1,1,10,10,5", "2026/12/07,1,1,1,1,10,10,6"], "line 51: duplicate slot"),
    (["2026/12/07,1,1,1,1,10,10,-3"], "line 50: column エリアプライス中国(円/kWh): invalid price"),
    (["2026/12/7x,1,1,1,1,10,10,10"], "line 50: column 受渡日: not a date"),
])
def test_bad_csv_is_logged_with_file_and_line_and_the_last_good_prices_stay(tmp_path, caplog, rows, where):
    # the bad rows follow the 48 good rows of 6 December (line 1 is the header)
    f = write_csv(tmp_path / "spot.csv", [r for d in days(date(2026, 12, 6), 3) for r in day_rows(d, 10.0)])
    sink, clock = Sink(), Clock()
    pub = publisher(sink, clock, prices=JepxCsvFeed(f, ["chugoku"]))
    assert pub.check_once() == [PRICES]
    good = sink.sent[-1][1]
    write_csv(f, day_rows(date(2026, 12, 6), 10.0) + rows)
    with caplog.at_level(logging.ERROR, logger="ems.central.market"):
        assert pub.check_once() == []
        assert pub.check_once() == []  # the same bad version: not logged again
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(f) in errors[0] and where in errors[0], errors
    assert where in pub.status()["last_error"]
    assert sink.sent[-1][1] == good and len(sink.sent) == 1  # the last good prices stay published
    # Fixed: published again (the content changed: one more day), and the error is gone.
    write_csv(f, [r for d in days(date(2026, 12, 6), 4) for r in day_rows(d, 10.0)])
    assert pub.check_once() == [PRICES] and pub.status()["last_error"] is None


def test_unreadable_and_empty_files_keep_the_last_good_prices(tmp_path, caplog):
    f = write_csv(tmp_path / "spot.csv", day_rows(date(2026, 12, 7), 10.0))
    sink, clock = Sink(), Clock()
    pub = publisher(sink, clock, prices=JepxCsvFeed(f, ["chugoku"]))
    assert pub.check_once() == [PRICES]
    f.write_bytes(b"")
    with caplog.at_level(logging.ERROR, logger="ems.central.market"):
        assert pub.check_once() == []
    assert "file is empty" in caplog.text and str(f) in caplog.text
    f.write_bytes(b"\x82\xff\x00garbage")
    assert pub.check_once() == [] and "not Shift_JIS" in pub.status()["last_error"]
    assert len(sink.sent) == 1


def test_folder_of_csvs_later_file_wins_and_a_bad_file_does_not_stop_the_others(tmp_path, caplog):
    folder = tmp_path / "jepx"
    folder.mkdir()
    write_csv(folder / "spot_summary_2025.csv", [r for d in days(date(2026, 12, 5), 3) for r in day_rows(d, 10.0)])
    sink, clock = Sink(), Clock()
    pub = publisher(sink, clock, prices=JepxCsvFeed(folder, ["chugoku"]), check_s=1)
    assert pub.check_once() == [PRICES]
    assert len(parse_prices(PRICES, sink.sent[-1][1]).slots) == 2 * 48  # 6 and 7 December
    # A newer file with 7 and 8 December (different prices) and a broken one.
    write_csv(folder / "spot_summary_2026.csv", [r for d in days(date(2026, 12, 7), 2) for r in day_rows(d, 50.0)])
    (folder / "spot_summary_2027.csv").write_bytes(csv_bytes(["2026/12/09,1,1,1,1,10,10,x"]))
    (folder / "notes.txt").write_text("not a CSV")
    (folder / ".spot_summary_2026.csv.abc.tmp").write_text("half written")
    with caplog.at_level(logging.ERROR, logger="ems.central.market"):
        assert pub.check_once() == [PRICES]
    assert "spot_summary_2027.csv: line 2" in caplog.text
    msg = parse_prices(PRICES, sink.sent[-1][1])
    assert len(msg.slots) == 3 * 48
    assert msg.slots[0].spot_jpy_per_kwh == pytest.approx(11.0)  # 6 Dec from the 2025 file
    assert msg.slots[48].spot_jpy_per_kwh == pytest.approx(51.0)  # 7 Dec: the later file wins
    assert msg.source == "spot_summary_2025.csv + spot_summary_2026.csv"
    # The 2026 file goes away: its prices are no longer published.
    (folder / "spot_summary_2026.csv").unlink()
    assert pub.check_once() == [PRICES]
    assert len(parse_prices(PRICES, sink.sent[-1][1]).slots) == 2 * 48


def test_gap_publishes_the_run_holding_now_and_old_data_publishes_nothing(tmp_path, caplog):
    rows = day_rows(date(2026, 12, 6), 10.0) + day_rows(date(2026, 12, 7), 20.0, codes=range(1, 10)) \
        + day_rows(date(2026, 12, 7), 20.0, codes=range(12, 49)) + day_rows(date(2026, 12, 8), 30.0)
    f = write_csv(tmp_path / "spot.csv", rows)
    sink, clock = Sink(), Clock()
    pub = publisher(sink, clock, prices=JepxCsvFeed(f, ["chugoku"]))
    with caplog.at_level(logging.WARNING, logger="ems.central.market"):
        assert pub.check_once() == [PRICES]
    assert "chugoku has no prices from 2026-12-07T04:30:00+09:00" in caplog.text
    msg = parse_prices(PRICES, sink.sent[-1][1])  # 14:00 JST is in the run from code 12 (05:30) on
    assert msg.slots[0].start == datetime(2026, 12, 7, 5, 30, tzinfo=JST) and len(msg.slots) == 37 + 48
    # Data that ends before yesterday: nothing to publish.
    old = write_csv(tmp_path / "old.csv", day_rows(date(2026, 11, 1), 10.0))
    sink2 = Sink()
    assert publisher(sink2, clock, prices=JepxCsvFeed(old, ["chugoku"])).check_once() == [] and not sink2.sent


def test_at_most_max_slots_are_published(tmp_path):
    f = write_csv(tmp_path / "spot.csv", [r for d in days(date(2026, 12, 6), 20) for r in day_rows(d, 10.0)])
    sink = Sink()
    publisher(sink, Clock(), prices=JepxCsvFeed(f, ["chugoku"])).check_once()
    assert len(parse_prices(PRICES, sink.sent[-1][1]).slots) == MAX_SLOTS


def test_missing_path_is_an_error_not_a_crash(tmp_path):
    feed_ = JepxCsvFeed(tmp_path / "nowhere", ["chugoku"])
    sink = Sink()
    pub = publisher(sink, Clock(), prices=feed_)
    assert pub.check_once() == [] and "no JEPX CSV file" in pub.status()["last_error"]


# -- synthetic --------------------------------------------------------------------------------------

def test_synthetic_prices_today_and_tomorrow_refreshed_daily():
    sink, clock = Sink(), Clock()
    pub = publisher(sink, clock, prices=SyntheticFeed(seed=7))
    assert pub.check_once() == [PRICES]
    msg = parse_prices(PRICES, sink.sent[-1][1])
    assert msg.slots[0].start == datetime(2026, 12, 7, tzinfo=JST) and len(msg.slots) == 96
    assert msg.source == "synthetic (seed 7)" and all(s.spot_jpy_per_kwh >= 0.01 for s in msg.slots)
    clock.t += timedelta(hours=9)  # 23:00 JST: the same day
    assert pub.check_once() == []
    clock.t += timedelta(hours=2)  # 01:00 JST on 8 December: a new day
    assert pub.check_once() == [PRICES]
    nxt = parse_prices(PRICES, sink.sent[-1][1])
    assert nxt.slots[0].start == datetime(2026, 12, 8, tzinfo=JST)
    # Seeded: 8 December's prices are the same in both messages.
    assert [s.spot_jpy_per_kwh for s in nxt.slots[:48]] == [s.spot_jpy_per_kwh for s in msg.slots[48:]]


# -- weather ----------------------------------------------------------------------------------------

def test_weather_file_csv_and_yaml(tmp_path):
    csv_file = tmp_path / "weather.csv"
    csv_file.write_text("# factors for the halls\ndate,area_code,factor\n2026-12-07,3120100,0.9\n"
                        "2026-12-08,3120100,0.4\n\n2026-12-07,3120200,1\n2026-12-06,3120200,0.1\n")
    sink, clock = Sink(), Clock()
    pub = publisher(sink, clock, weather_file=csv_file)
    assert sorted(pub.check_once()) == [weather_topic(c) for c in CODES]
    w = parse_weather(weather_topic("3120100"), [p for t, p in sink.sent if t == weather_topic("3120100")][0])
    assert [(d.date, d.factor) for d in w.days] == [(date(2026, 12, 7), 0.9), (date(2026, 12, 8), 0.4)]
    assert w.source == "weather.csv"
    # 6 December is before today: not published.
    assert [d["date"] for d in sink.on(weather_topic("3120200"))[0]["days"]] == ["2026-12-07"]
    assert pub.check_once() == []

    yaml_file = tmp_path / "weather.yaml"
    yaml_file.write_text("- {date: 2026-12-07, area_code: '3120100', factor: 0.25}\n"
                         "- date: '2026-12-09'\n  area_code: '3120100'\n  factor: 0.5\n")
    sink2 = Sink()
    assert publisher(sink2, clock, weather_file=yaml_file).check_once() == [weather_topic("3120100")]
    assert [(d["date"], d["factor"]) for d in sink2.on(weather_topic("3120100"))[0]["days"]] == \
        [("2026-12-07", 0.25), ("2026-12-09", 0.5)]


@pytest.mark.parametrize("name, text, where", [
    ("w.csv", "date,area_code,factor\n2026-12-07,3120100,1.5\n", "w.csv: line 2: factor: 1.5 is outside 0..1"),
    ("w.csv", "date,area_code,factor\n2026-12-07,3120100,nan\n", "w.csv: line 2: factor: nan is outside"),
    ("w.csv", "date,area_code,factor\n2026-12-07,31201,0.5\n", "w.csv: line 2: area_code: '31201'"),
    ("w.csv", "date,area_code,factor\n\n2026-13-07,3120100,0.5\n", "w.csv: line 3: date: not a date"),
    ("w.csv", "date,area_code,factor\n2026-12-07,3120100,cloudy\n", "w.csv: line 2: factor: not a number"),
    ("w.csv", "date,area_code\n2026-12-07,3120100\n", "w.csv: line 1: columns must be"),
    ("w.csv", "date,area_code,factor\n2026-12-07,3120100\n", "w.csv: line 2: 2 fields, expected 3"),
    ("w.csv", "date,area_code,factor\n2026-12-07,3120100,0.5\n2026-12-07,3120100,0.6\n",
     "w.csv: line 3: 3120100 2026-12-07 is already on line 2"),
    ("w.yaml", "- {date: 2026-12-07, area_code: 3120100, factor: 0.5}\n", "w.yaml: line 1: [0]: area_code: write it in quotes"),
    ("w.yaml", "- {date: 2026-12-07, area_code: '3120100', factor: 0.5}\n- {date: 2026-12-08, area_code: '3120100'}\n",
     "w.yaml: line 2: [1]: factor is missing"),
    ("w.yaml", "- {date: 2026-12-07, area_code: '3120100', factor: 0.5, wind: 3}\n", "w.yaml: line 1: [0]: unknown field wind"),
    ("w.yaml", "- {date: 2026-12-07, area_code: '3120100', factor: true}\n", "w.yaml: line 1: [0]: factor: not a number"),
    ("w.yaml", "days: []\n", "w.yaml: line 1: must be a list"),
    ("w.yaml", "- [unclosed\n", "w.yaml: line 2: not valid YAML"),
])
def test_bad_weather_files_name_file_line_and_field(name, text, where):
    with pytest.raises(WeatherFileError) as err:
        parse_weather_file(text.encode(), name)
    assert where in str(err.value), str(err.value)


def test_bad_weather_file_keeps_the_last_good_factors(tmp_path, caplog):
    f = tmp_path / "weather.csv"
    f.write_text("date,area_code,factor\n2026-12-07,3120100,0.9\n")
    sink, clock = Sink(), Clock()
    pub = publisher(sink, clock, weather_file=f)
    assert pub.check_once() == [weather_topic("3120100")]
    f.write_text("date,area_code,factor\n2026-12-07,3120100,0.9\n2026-12-08,3120100,2\n")
    with caplog.at_level(logging.ERROR, logger="ems.central.market"):
        assert pub.check_once() == [] and pub.check_once() == []
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    assert f"{f}: line 3: factor" in caplog.text and "line 3" in pub.status()["last_error"]


def test_weather_file_codes_outside_the_fleet_are_reported_and_not_published(tmp_path, caplog):
    f = tmp_path / "weather.csv"
    f.write_text("date,area_code,factor\n2026-12-07,3999900,0.9\n")
    sink = Sink()
    with caplog.at_level(logging.WARNING, logger="ems.central.market"):
        assert publisher(sink, Clock(), weather_file=f).check_once() == []
    assert "3999900" in caplog.text and not sink.sent


def test_set_weather_publishes_at_once_holds_from_today_and_wins_over_the_file(tmp_path):
    f = tmp_path / "weather.csv"
    f.write_text("date,area_code,factor\n2026-12-07,3120100,0.9\n2026-12-08,3120100,0.8\n")
    sink, clock = Sink(), Clock()
    pub = publisher(sink, clock, weather_file=f, weather_days_ahead=2)
    pub.check_once()
    assert pub.set_weather(["3120100", "3120200"], 0.2, "drill: typhoon") == [weather_topic(c) for c in CODES]
    got = sink.on(weather_topic("3120100"))[-1]
    assert got["source"] == "drill: typhoon" and [d["factor"] for d in got["days"]] == [0.2, 0.2, 0.2]
    assert got["days"][0]["date"] == "2026-12-07"
    assert pub.set_weather(["3120100"], 0.2, "drill: typhoon") == []  # no change: nothing sent
    # It holds on the next days too (the drill's weather stays until changed).
    clock.t += timedelta(days=3)
    assert pub.check_once() == [weather_topic(c) for c in CODES]
    assert sink.on(weather_topic("3120100"))[-1]["days"][0]["date"] == "2026-12-10"
    # A factor from tomorrow on: today keeps the file's factor.
    clock.t = NOW
    pub.set_weather(["3120100"], 0.5, "drill: clearing", since=date(2026, 12, 8))
    got = sink.on(weather_topic("3120100"))[-1]
    assert [(d["date"], d["factor"]) for d in got["days"]] == [("2026-12-07", 0.9), ("2026-12-08", 0.5),
                                                               ("2026-12-09", 0.5)]
    assert got["source"] == "weather.csv + drill: clearing"
    assert pub.clear_weather(["3120100"]) == [weather_topic("3120100")]
    assert sink.on(weather_topic("3120100"))[-1]["source"] == "weather.csv"


@pytest.mark.parametrize("args, field", [
    ((["3999900"], 0.5, "x"), "area_codes"),
    (([], 0.5, "x"), "area_codes"),
    ((["3120100"], 1.5, "x"), "factor"),
    ((["3120100"], float("nan"), "x"), "factor"),
    ((["3120100"], True, "x"), "factor"),
    ((["3120100"], 0.5, "  "), "source"),
])
def test_set_weather_refuses_bad_arguments(args, field):
    sink = Sink()
    pub = publisher(sink, Clock())
    with pytest.raises(ValueError, match=f"^{field}:"):
        pub.set_weather(*args)
    assert not sink.sent


def test_a_failing_link_is_retried_at_the_next_check():
    calls = []

    def flaky(topic, payload):
        calls.append(topic)
        if len(calls) == 1:
            raise RuntimeError("link down")

    pub = publisher(flaky, Clock(), prices=SyntheticFeed())
    assert pub.check_once() == [] and "link down" in pub.status()["last_error"]
    assert pub.check_once() == [PRICES] and pub.status()["last_error"] is None


# -- config and service -----------------------------------------------------------------------------

def write_config(tmp_path: Path, text: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "fleet.yaml").write_text((ROOT / "config" / "fleet.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "devicemaps").symlink_to(ROOT / "config" / "devicemaps")
    p = tmp_path / "central.yaml"
    p.write_text("data_dir: data\nmqtt: {username: null}\n" + text, encoding="utf-8")
    return p


@pytest.mark.parametrize("text, field", [
    ("market: {source: jepx_csv}\n", "market.path"),
    ("market: {source: synthetic, path: x.csv}\n", "market.path"),
    ("market: {source: spot}\n", "market.source"),
    ("market: {areas: [atlantis]}\n", "market.areas[0]"),
    ("market: {areas: [Chugoku]}\n", "market.areas[0]"),
    ("market: {areas: [chugoku, chugoku]}\n", "market.areas"),
    ("market: {check_s: 0}\n", "market.check_s"),
    ("market: {source: jepx_csv, path: nowhere}\n", "market.path: no such file"),
    ("market: {weather_file: nowhere.csv}\n", "market.weather_file: no such file"),
    ("market: {colour: red}\n", "market.colour"),
])
def test_market_section_errors_name_the_field(tmp_path, text, field):
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_central_config(path)
    # fields checked together are named after their section: "market: path: ..."
    text_ = str(err.value)
    assert str(path) in text_ and (field in text_ or field.replace(".", ": ", 1) in text_), text_


def test_build_service_makes_the_publisher_from_the_config(tmp_path):
    (tmp_path / "jepx").mkdir()
    write_csv(tmp_path / "jepx" / "spot.csv", day_rows(date(2026, 12, 7), 10.0))
    (tmp_path / "weather.yaml").write_text("- {date: 2026-12-07, area_code: '3120100', factor: 0.3}\n")
    cfg = load_central_config(write_config(tmp_path, "market: {source: jepx_csv, path: jepx, check_s: 5, "
                                                     "weather_file: weather.yaml}\n"))
    service = build_service(cfg)
    m = service.market
    assert m is not None and isinstance(m.prices, JepxCsvFeed) and m.prices.path == tmp_path / "jepx"
    assert m.areas == ["chugoku"] and m.check_s == 5 and len(m.area_codes) == 12  # the fleet's area codes
    assert m.weather_file is not None and m.weather_file.path == tmp_path / "weather.yaml"
    # the default: no prices, but the publisher is there for set_weather
    cfg = load_central_config(write_config(tmp_path / "b", "market: {areas: [tokyo, chugoku]}\n"))
    m = build_service(cfg).market
    assert m is not None and m.prices is None and m.areas == ["tokyo", "chugoku"]
    m = build_market(load_central_config(write_config(tmp_path / "c", "market: {source: synthetic, seed: 3}\n")),
                     build_service(cfg).fleet, Sink())
    assert isinstance(m.prices, SyntheticFeed) and m.prices.seed == 3


def test_service_runs_the_publisher_and_sets_weather(tmp_path, fleet):
    sink = Sink()
    clock = Clock(datetime.now(timezone.utc))
    market = MarketPublisher(sink, areas=["chugoku"], area_codes=[s.area_code for s in fleet.sites],
                             prices=SyntheticFeed(), check_s=0.05, clock=clock)
    env = make_env(tmp_path / "c", fleet, market=market)
    assert env.service.market_status()["topics"] == []
    with pytest.raises(ValueError, match="area_codes"):
        env.service.set_weather(["3999900"], 0.5, "drill")

    async def run() -> None:
        await env.service.start()
        try:
            for _ in range(200):
                if sink.on(PRICES):
                    break
                await asyncio.sleep(0.05)
        finally:
            await env.service.stop()

    asyncio.run(run())
    assert len(sink.on(PRICES)) == 1  # published once, however many checks ran
    assert env.service.set_weather(["3120100"], 0.3, "drill: rain") == [weather_topic("3120100")]
    assert {t["topic"] for t in env.service.market_status()["topics"]} == {PRICES, weather_topic("3120100")}
    no_market = make_env(tmp_path / "d", fleet)
    with pytest.raises(RuntimeError, match="no market publisher"):
        no_market.service.set_weather(["3120100"], 0.3, "drill")


def test_fleet_api_shows_each_halls_inputs(tmp_path, fleet):
    from tests.central.conftest import Api

    env = make_env(tmp_path / "c", fleet)
    state = state_message("hall-01")
    state["inputs"] = {"price_source": "central: spot_2026.csv (published 2026-12-07T05:00:00+00:00)",
                       "weather_source": "typical 0.80", "last_central_at": "2026-12-07T05:00:10Z", "extra": "x"}
    feed(env.store, "hall-01", "state", state)
    bad = state_message("hall-02")
    bad["inputs"] = {"price_source": 42, "last_central_at": "yesterday"}
    feed(env.store, "hall-02", "state", bad)
    api = Api(env)
    try:
        halls = {r["site"]: r for r in api.bearer("vera").get("/api/fleet").json()["halls"]}
        assert halls["hall-01"]["inputs"] == {
            "price_source": "central: spot_2026.csv (published 2026-12-07T05:00:00+00:00)",
            "weather_source": "typical 0.80", "last_central_at": "2026-12-07T05:00:10+00:00"}
        assert halls["hall-02"]["inputs"] == {"price_source": None, "weather_source": None, "last_central_at": None}
        assert halls["hall-03"]["inputs"]["price_source"] is None  # an older gateway sends no inputs
        detail = api.bearer("vera").get("/api/sites/hall-01").json()
        assert detail["inputs"]["weather_source"] == "typical 0.80"
    finally:
        api.close()


# -- the real broker --------------------------------------------------------------------------------

def test_gateways_read_what_the_central_publishes_also_after_a_broker_crash(tmp_path, fleet):
    from telemetry.central_mqtt import CentralMqtt
    from telemetry.fleet_state import FleetStateStore
    from telemetry.mosquitto_acl import acl_text, gateway_username
    from telemetry.mqtt_client import MqttSettings
    from tests.servers import MosquittoServer, random_password, wait_until
    from tests.telemetry.mqtt_helpers import RawClient

    sites = [s.id for s in fleet.sites]
    users = {"central": random_password(), **{gateway_username(s): random_password() for s in sites}}
    with MosquittoServer(tmp_path / "mqtt", users=users, acl=acl_text(sites)) as broker:
        link = CentralMqtt(MqttSettings("127.0.0.1", broker.port, "central", users["central"], min_reconnect_s=0.5,
                                        max_reconnect_s=1), FleetStateStore(sites), "central",
                           client_id=f"central-{uuid.uuid4().hex[:6]}")
        link.start()
        assert link.wait_connected(20)
        pub = MarketPublisher(link.publish_retained, areas=["chugoku"], area_codes=["3120100"],
                              prices=SyntheticFeed(), clock=Clock(datetime.now(timezone.utc)))
        try:
            assert pub.check_once() == [PRICES]
            pub.set_weather(["3120100"], 0.4, "drill")
            gw = RawClient(broker.port, "edge-hall-01", users["edge-hall-01"])
            try:
                assert not gw.subscribe("ems/v1/_fleet/#")[0].is_failure
                wait_until(lambda: gw.on(PRICES) and gw.on(weather_topic("3120100")), 20, what="retained messages")
                assert parse_prices(PRICES, gw.on(PRICES)[0]).source == "synthetic (seed 0)"
                assert all(retained for t, _, retained in gw.messages)
            finally:
                gw.close()
            # The broker dies without saving: its retained messages are gone; the central publishes them again.
            broker.kill()
            broker.start()
            wait_until(lambda: link.wait_connected(0.1), 30, what="central reconnected")
            gw = RawClient(broker.port, "edge-hall-02", users["edge-hall-02"])
            try:
                gw.subscribe("ems/v1/_fleet/#")
                wait_until(lambda: gw.on(PRICES) and gw.on(weather_topic("3120100")), 30,
                           what="retained messages after the broker crash")
                assert parse_weather(weather_topic("3120100"), gw.on(weather_topic("3120100"))[-1]).days[0].factor == 0.4
            finally:
                gw.close()
        finally:
            link.stop()
