"""JEPX spot CSV (Shift_JIS), tariffs and the synthetic price generator."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from optimizer.prices import (JEPX_FLOOR_JPY_PER_KWH, FlatTariff, PriceDataError, TimeOfUseTariff, area_column,
                              parse_jepx_spot_csv, spot_linked, synthetic_spot_prices)

JST = timezone(timedelta(hours=9))
HEADER = ("受渡日,時刻コード,売り入札量(kWh),買い入札量(kWh),約定総量(kWh),システムプライス(円/kWh),"
          "エリアプライス北海道(円/kWh),エリアプライス東京(円/kWh),エリアプライス中国(円/kWh)")


def sample(rows: list[str]) -> bytes:
    return ("\r\n".join([HEADER, *rows]) + "\r\n").encode("shift_jis")


def day_rows(day: str, base: float) -> list[str]:
    return [f"{day},{code},1000,1000,900,{base + code / 10:.2f},{base:.2f},{base + 1:.2f},{base + code:.2f}"
            for code in range(1, 49)]


def test_parses_area_column_to_utc_slots(tmp_path):
    path = tmp_path / "spot_summary_2024.csv"
    path.write_bytes(sample(day_rows("2024/04/01", 10.0) + day_rows("2024/04/02", 20.0)))
    series = parse_jepx_spot_csv(path.read_bytes(), area="chugoku", source=path.name)
    assert len(series.times) == 96
    # Time code 1 of 1 April is 00:00 JST = 15:00 UTC the day before.
    assert series.times[0] == datetime(2024, 3, 31, 15, tzinfo=timezone.utc)
    assert series.times[47] == datetime(2024, 4, 1, 14, 30, tzinfo=timezone.utc)
    assert series.price[0] == pytest.approx(11.0) and series.price[47] == pytest.approx(58.0)
    assert series.price[48] == pytest.approx(21.0)
    system = parse_jepx_spot_csv(path.read_bytes(), area="system")
    assert system.price[0] == pytest.approx(10.1)
    wanted = [datetime(2024, 4, 1, 12, tzinfo=JST), datetime(2024, 4, 2, 0, tzinfo=JST)]
    assert series.at(wanted).tolist() == pytest.approx([10 + 25, 20 + 1])
    with pytest.raises(KeyError, match="2024-04-03"):
        series.at([datetime(2024, 4, 3, tzinfo=JST)])


def test_japanese_area_name_and_dash_dates():
    raw = sample(day_rows("2024-04-01", 5.0))
    assert parse_jepx_spot_csv(raw, area="中国").price[1] == pytest.approx(7.0)
    assert area_column("Tokyo") == "エリアプライス東京(円/kWh)"
    with pytest.raises(ValueError, match="unknown JEPX area"):
        area_column("atlantis")


@pytest.mark.parametrize("rows, message", [
    (["2024/04/01,49,1,1,1,10,10,10,10"], "時刻コード: 49 outside 1–48"),
    (["2024/04/01,x,1,1,1,10,10,10,10"], "not an integer"),
    (["2024/13/01,1,1,1,1,10,10,10,10"], "not a date"),
    (["2024/04/01,1,1,1,1,10,10,10,abc"], "not a number"),
    (["2024/04/01,1,1,1,1,10,10,10,-1"], "invalid price"),
    (["2024/04/01,1,1,1,1,10,10,10,5", "2024/04/01,1,1,1,1,10,10,10,6"], "line 3: duplicate slot"),
    (["2024/04/01,1,1"], "line 2: 3 fields"),
    ([], "no data rows"),
])
def test_bad_rows_name_line_and_column(rows, message):
    with pytest.raises(PriceDataError, match=message) as exc:
        parse_jepx_spot_csv(sample(rows), source="spot.csv")
    assert str(exc.value).startswith("spot.csv")


def test_missing_column_and_bad_encoding():
    raw = "受渡日,時刻コード,システムプライス(円/kWh)\r\n2024/04/01,1,10\r\n".encode("shift_jis")
    with pytest.raises(PriceDataError, match="line 1: column エリアプライス中国"):
        parse_jepx_spot_csv(raw, area="chugoku")
    with pytest.raises(PriceDataError, match="not Shift_JIS"):
        parse_jepx_spot_csv(b"\x82\xff\x00garbage", area="system")


def test_tariffs():
    times = [datetime(2025, 7, 1, h, tzinfo=JST) for h in (0, 7, 8, 21, 22, 23)]
    tou = TimeOfUseTariff(((0, 20.0), (8, 30.0), (22, 20.0)))
    assert tou.prices(times).tolist() == [20, 20, 30, 30, 20, 20]
    assert FlatTariff(25.0).prices(times).tolist() == [25.0] * 6
    assert spot_linked(np.array([1.0, 2.0]), 12.0).tolist() == [13.0, 14.0]
    with pytest.raises(ValueError):
        TimeOfUseTariff(((1, 20.0),))


def test_synthetic_prices_shape_and_determinism():
    start = datetime(2025, 4, 1, tzinfo=JST)
    times = [start + timedelta(minutes=30 * i) for i in range(48 * 60)]
    a = synthetic_spot_prices(times, seed=4)
    assert np.array_equal(a, synthetic_spot_prices(times, seed=4))
    assert not np.array_equal(a, synthetic_spot_prices(times, seed=5))
    # A window gives the same prices as the whole series (per-day seeding).
    assert np.array_equal(a[100:148], synthetic_spot_prices(times[100:148], seed=4))
    assert a.min() >= JEPX_FLOOR_JPY_PER_KWH
    days = a.reshape(60, 48)
    evening, midday = days[:, 36:40].mean(), days[:, 22:28].mean()
    assert evening > 1.5 * midday
    assert (a <= JEPX_FLOOR_JPY_PER_KWH).any()  # spring: sunny middays reach the floor
    assert 5 < a.mean() < 20
