"""SiteForecast validation."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from optimizer.inputs import InputError, SiteForecast

T0 = datetime(2025, 7, 1, tzinfo=timezone(timedelta(hours=9)))


def build(n=4, step=30, **over):
    times = [T0 + timedelta(minutes=step * i) for i in range(n)]
    cols = dict(price_buy=[10.0] * n, price_sell=[5.0] * n, load_w=[100.0] * n, pv_w=[0.0] * n,
                critical_load_w=[50.0] * n)
    cols.update(over)
    return SiteForecast.from_columns(over.pop("times", times), **{k: v for k, v in cols.items() if k != "times"})


def test_good_series_is_utc_and_sliced():
    f = build(6, step=15)
    assert f.times[0].tzinfo == timezone.utc and f.times[0] == T0
    assert f.slot_h == 0.25 and f.n == 6 and f.end == T0 + timedelta(minutes=90)
    w = f.window(2, 3)
    assert w.n == 3 and w.times[0] == f.times[2]
    assert f.window(4, 10).n == 2
    with pytest.raises(IndexError):
        f.window(6, 1)
    with pytest.raises(ValueError):
        f.load_w[0] = 1.0  # read-only


@pytest.mark.parametrize("over, row, column", [
    (dict(load_w=[1, 2, -3, 4]), 3, "load_w"),
    (dict(pv_w=[0, float("nan"), 0, 0]), 2, "pv_w"),
    (dict(price_buy=[1, 2, 3, float("inf")]), 4, "price_buy"),
    (dict(critical_load_w=[0, 0, "x", 0]), 3, "critical_load_w"),
    (dict(times=[T0, T0 + timedelta(minutes=30), T0 + timedelta(minutes=90), T0 + timedelta(minutes=120)]), 3, "time"),
    (dict(times=[T0, T0 - timedelta(minutes=30), T0, T0]), 2, "time"),
    (dict(times=[T0, T0.replace(tzinfo=None), T0, T0]), 2, "time"),
])
def test_bad_values_name_row_and_column(over, row, column):
    with pytest.raises(InputError) as exc:
        build(**over)
    assert exc.value.row == row and exc.value.column == column
    assert f"row {row}" in str(exc.value) and column in str(exc.value)


def test_length_mismatch_and_empty():
    with pytest.raises(InputError, match="3 values for 4 slots"):
        build(load_w=[1, 2, 3])
    with pytest.raises(InputError, match="at least one slot"):
        SiteForecast.from_columns([], price_buy=[], price_sell=[], load_w=[], pv_w=[], critical_load_w=[])


def test_replace_revalidates():
    f = build()
    assert np.all(f.replace(load_w=[5, 5, 5, 5]).load_w == 5)
    with pytest.raises(InputError):
        f.replace(load_w=[5, -5, 5, 5])
