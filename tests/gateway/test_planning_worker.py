"""The optimizer plans in a worker (thread or process): setpoint_at never waits, one job in flight plus one
follow-up, failures give the fallback plan, aclose stops the worker, each plan says where its prices and weather
came from."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import datetime, timedelta
from typing import Sequence

import numpy as np
import pytest

from ems.gateway.modes import Mode
from ems.gateway.planning import OptimizerPlanSource, SlotPrices
from optimizer.planner import SitePlanner
from optimizer.prices import JST
from tests.gateway.test_planning import T0, settled, site, snap  # noqa: F401 - site is a fixture


class SlowPlanner:
    """A real SitePlanner behind a delay [s] (time.sleep: the GIL is free, as in HiGHS); records its calls;
    raises ``fail`` once if set."""

    def __init__(self, site, delay_s: float = 0.0):
        self.inner = SitePlanner(site.safety_policy(), site_id=site.id)
        self.delay_s = delay_s
        self.calls: list[tuple[float, str]] = []
        self.fail: Exception | None = None
        self.started = threading.Event()

    def plan(self, forecast, soc_pct, mode, **kw):
        self.calls.append((soc_pct, mode))
        self.started.set()
        time.sleep(self.delay_s)
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        return self.inner.plan(forecast, soc_pct, mode, **kw)


@pytest.fixture
def made():
    sources: list[OptimizerPlanSource] = []
    yield sources
    for src in sources:
        asyncio.run(src.aclose())


def source(site, made, **kw) -> OptimizerPlanSource:
    made.append(OptimizerPlanSource(site, deviation_w=1e9, **kw))
    return made[-1]


def test_a_slow_solve_does_not_delay_setpoint_at_and_the_old_plan_is_followed_meanwhile(site, made):
    slow = SlowPlanner(site)
    src = source(site, made, planner=slow)
    settled(src, snap(T0), Mode.VPP)
    old = src.plan
    slow.delay_s, slow.started = 0.5, threading.Event()
    src.invalidate("weather changed")
    times_ms, answers = [], []
    t = T0
    src.setpoint_at(snap(t), Mode.VPP)  # submits the slow re-plan
    assert slow.started.wait(5.0)
    while src.busy:
        t += timedelta(seconds=1)
        tick = time.perf_counter()
        answers.append(src.setpoint_at(snap(t), Mode.VPP))
        times_ms.append((time.perf_counter() - tick) * 1e3)
        time.sleep(0.01)
    assert len(times_ms) >= 20, "the solve ran about 0.5 s"
    assert max(times_ms) < 5.0, f"setpoint_at took up to {max(times_ms):.2f} ms while the worker solved"
    assert all(a is not None and a[1].startswith("plan optimal") for a in answers), "the old plan meanwhile"
    assert src.plan is not old and src.plan_info["reason"] == "weather changed", "the new plan once finished"
    assert src.plans_made == 2


def test_one_job_in_flight_and_one_follow_up_with_the_latest_inputs(site, made):
    slow = SlowPlanner(site)
    src = source(site, made, planner=slow)
    settled(src, snap(T0), Mode.VPP)
    slow.delay_s, slow.started = 0.3, threading.Event()
    src.invalidate("first")
    src.setpoint_at(snap(T0, soc=40.0), Mode.VPP)
    assert slow.started.wait(5.0)
    for k, soc in enumerate((41.0, 42.0, 43.0)):  # three more triggers while the first runs
        src.invalidate(f"trigger {k}")
        src.setpoint_at(snap(T0, soc=soc), Mode.VPP)
    assert src.wait_idle(10.0)
    assert slow.calls[1:] == [(40.0, "vpp"), (43.0, "vpp")], "the running job, then one follow-up: the latest"
    assert src.plan_info["reason"] == "trigger 2" and src.worker_stats.jobs == 3


def test_a_planner_exception_gives_the_fallback_plan_and_the_worker_goes_on(site, made, caplog):
    slow = SlowPlanner(site)
    slow.fail = RuntimeError("HiGHS crashed")
    src = source(site, made, planner=slow)
    with caplog.at_level("ERROR"):
        w, why = settled(src, snap(T0), Mode.VPP)
    assert src.plan.fallback and "fallback" in why and "HiGHS crashed" in src.plan.message
    assert src.plan_info["fallback"] is True and "HiGHS crashed" in caplog.text
    src.invalidate("try again")
    settled(src, snap(T0), Mode.VPP)
    assert not src.plan.fallback and src.plan_info["reason"] == "try again" and src.plans_made == 2


def test_a_forecast_that_fails_keeps_the_previous_plan_and_is_not_retried_every_cycle(site, made, monkeypatch,
                                                                                       caplog):
    src = source(site, made)
    settled(src, snap(T0), Mode.VPP)
    old = src.plan

    def broken(*a, **kw):
        raise ValueError("price_buy[3] is NaN")

    monkeypatch.setattr(src.forecaster, "forecast", broken)
    src.invalidate("now")
    with caplog.at_level("ERROR"):
        settled(src, snap(T0), Mode.VPP)
    later = old.expires_at + timedelta(seconds=1)
    for s in range(3):  # the plan expired but the last attempt failed: not again every cycle
        assert src.setpoint_at(snap(later + timedelta(seconds=s)), Mode.VPP) is None
    assert src.wait_idle(5.0)
    assert src.plan is old and src.worker_stats.jobs == 1
    assert caplog.text.count("price_buy[3] is NaN") == 1, "logged once"


async def test_aclose_stops_the_worker_and_abandons_a_long_solve(site):
    slow = SlowPlanner(site)
    src = OptimizerPlanSource(site, planner=slow)
    src.setpoint_at(snap(T0), Mode.VPP)
    while src.busy:
        await asyncio.sleep(0.01)
    await src.aclose()
    assert not src._thread.is_alive(), "an idle worker stops at once"
    src.invalidate("after close")
    assert src.setpoint_at(snap(T0), Mode.VPP) is not None and not src.busy, "the last plan, no new job"

    stuck = SlowPlanner(site, delay_s=1.5)
    src = OptimizerPlanSource(site, planner=stuck)
    src.setpoint_at(snap(T0), Mode.VPP)
    assert await asyncio.to_thread(stuck.started.wait, 5.0)
    tick = time.monotonic()
    await src.aclose(timeout_s=0.2)
    assert time.monotonic() - tick < 1.0, "a running solve is waited for at most the time-out"
    await asyncio.to_thread(src._thread.join, 10.0)
    assert src.plan is None, "a plan finished after aclose is thrown away"


class MarketPrices:
    def __init__(self):
        self.asked: list[Sequence[datetime]] = []

    def prices(self, times):
        self.asked.append(times)
        return SlotPrices(np.full(len(times), 30.0), np.full(len(times), 8.0), "jepx day-ahead (central)")


class DayWeather:
    """A forecast for the first (JST) day, none for later ones (typical then)."""

    def __init__(self, first_day):
        self.first_day = first_day

    def weather_factor(self, t):
        return (0.3, "jma forecast") if t.astimezone(JST).date() == self.first_day else (0.8, "typical")


def test_plan_info_names_the_price_and_weather_sources(site, made):
    src = source(site, made, prices=MarketPrices(), weather=DayWeather(T0.astimezone(JST).date()))
    settled(src, snap(T0), Mode.VPP)
    info = src.plan_info
    assert info["price_source"] == "jepx day-ahead (central)"
    assert info["weather_source"] == "jma forecast + typical", "the horizon reaches into the next day"
    assert info["reason"] == "first plan" and info["created_at"] == T0.isoformat() and info["status"] == "optimal"
    assert info["fallback"] is False and info["solve_ms"] > 0
    assert len(src.prices.asked) == 1 and len(src.prices.asked[0]) == src.horizon_slots


def test_defaults_are_synthetic_prices_and_typical_weather_and_a_failing_provider_falls_back(site, made):
    src = source(site, made)
    assert src.plan_info["price_source"] is None, "no plan yet"
    settled(src, snap(T0), Mode.VPP)
    assert src.plan_info["price_source"] == f"synthetic (seed {site.simulator.seed})"
    assert src.plan_info["weather_source"] == "typical"

    class Broken:
        def prices(self, times):
            raise ConnectionError("central unreachable")

    src = source(site, made, prices=Broken())
    settled(src, snap(T0), Mode.VPP)
    assert src.plan is not None and not src.plan.fallback
    assert src.plan_info["price_source"].startswith("synthetic (seed")
    assert "provider failed: ConnectionError: central unreachable" in src.plan_info["price_source"]


class CrashOnce:
    """A picklable planner for the process worker: the first plan kills its process, later ones plan; with
    ``sleep_s`` every plan first writes ``flag_file``.started and sleeps that long."""

    def __init__(self, site, flag_file, sleep_s: float = 0.0):
        self.inner = SitePlanner(site.safety_policy(), site_id=site.id)
        self.flag_file, self.sleep_s = flag_file, sleep_s

    def plan(self, forecast, soc_pct, mode, **kw):
        if self.sleep_s:
            self.flag_file.with_suffix(".started").write_text("solving")
            time.sleep(self.sleep_s)
        if not self.flag_file.exists():
            self.flag_file.write_text("crashed once")
            os._exit(3)
        return self.inner.plan(forecast, soc_pct, mode, **kw)


@pytest.mark.timeout(120)
def test_a_process_worker_plans_survives_its_child_dying_and_stops(site, made, tmp_path):
    src = source(site, made, worker="process", planner=CrashOnce(site, tmp_path / "crashed"))
    w, why = settled(src, snap(T0), Mode.VPP)
    assert src.plan.fallback and "planner process ended" in src.plan.message, "the child died: fallback"
    src.invalidate("again")
    settled(src, snap(T0), Mode.VPP)
    assert src.plan_info["status"] == "optimal" and src.plan_info["reason"] == "again", "a new child planned"
    assert src.worker_stats.cpu_s > 0
    asyncio.run(src.aclose())
    assert not src._thread.is_alive() and not src._remote.alive


@pytest.mark.timeout(120)
def test_aclose_ends_a_process_worker_stuck_in_a_solve(site, tmp_path):
    (tmp_path / "crashed").write_text("no crash")
    src = OptimizerPlanSource(site, worker="process", planner=CrashOnce(site, tmp_path / "crashed", sleep_s=60.0))

    async def go():
        src.setpoint_at(snap(T0), Mode.VPP)
        deadline = time.monotonic() + 60
        while not (tmp_path / "crashed.started").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert src.busy
        tick = time.monotonic()
        await src.aclose(timeout_s=0.5)
        return time.monotonic() - tick

    assert asyncio.run(go()) < 5.0
    assert not src._remote.alive and src.plan is None
    src._thread.join(5.0)
    assert not src._thread.is_alive(), "the worker thread's wait ended with the child"


def test_worker_must_be_thread_or_process(site):
    with pytest.raises(ValueError, match="worker must be"):
        OptimizerPlanSource(site, worker="fiber")


def test_thread_workers_of_several_sources_plan_one_at_a_time_and_leave_stdout_alone(site, made):
    """Pyomo redirects the process' stdout/stderr while handing a model to HiGHS: two threads doing it at once
    deadlocked or lost the process' output (the simulated fleet's 14 halls); thread workers take turns."""
    stdout_before = os.fstat(1)
    sources = [source(site, made) for _ in range(6)]
    for src in sources:  # six first (cold) plans submitted at once
        src.setpoint_at(snap(T0), Mode.VPP)
    assert all(src.wait_idle(60.0) for src in sources)
    assert all(src.plan is not None and not src.plan.fallback for src in sources)
    after = os.fstat(1)
    assert (after.st_dev, after.st_ino) == (stdout_before.st_dev, stdout_before.st_ino)
