"""The plan's prices and weather at a gateway: from the central service over MQTT, a JEPX CSV, or the tariff.

:class:`MarketInputs` is both a :class:`~ems.gateway.planning.PriceProvider`
and a :class:`~ems.gateway.planning.WeatherProvider`.  Wiring (the daemon's
composition)::

    inputs = MarketInputs.for_site(gateway_cfg, fleet, site, clock=clock.now)
    edge_mqtt.subscribe(inputs.topics(), inputs.on_message)   # before or after start()
    plan_source = OptimizerPlanSource(site, prices=inputs, weather=inputs, ...)
    inputs.add_listener(lambda why: plan_source.invalidate(why))   # optional: re-plan on new prices
    ...state["inputs"] = inputs.state_fields(price_source=..., weather_source=...)

Prices, slot by slot (``prices(times)``):

1. the configured source: ``central`` (the retained prices message of the
   fleet's JEPX area received in this run), ``jepx_csv`` (a file or a
   folder of JEPX spot CSVs, read again when a file changes; a bad file is
   logged once and its last good prices stay in use), ``synthetic``
   (seeded, simulated halls) or ``tariff``;
2. the last known prices: every spot price received or read before, kept
   in the state folder (``market-<site>.json``, replaced atomically) so a
   gateway restarted while its uplink is down still has them;
3. the tariff (flat or time-of-use, from the gateway file).

Spot prices become buy = spot + ``buy_adder_jpy_per_kwh`` and sell = spot ×
``sell_factor``; tariff slots buy at the tariff and sell at its
``sell_jpy_per_kwh``.  ``SlotPrices.source`` names the source, e.g.
``central (spot_2026.csv, published 2026-12-07T05:00:00+00:00)``,
``central, last known (spot_2026.csv, received …)``, ``tariff flat 30
JPY/kWh``; a mix lists each with its slot count.

Weather (``weather_factor(t)``): the central service's factor for the local
(Asia/Tokyo) date of ``t`` when known (also kept in the state folder), else
the typical 1 − the site's cloud factor.

Thread-safety: :meth:`MarketInputs.on_message` runs in paho's network
thread, ``prices`` and ``weather_factor`` in the daemon's; one lock guards
the data, and the state file is written outside it.  ``prices`` is quick
(dictionary look-ups; with ``jepx_csv`` a ``stat`` per file), except that a
changed JEPX CSV is parsed in the calling thread (~0.15 s for a yearly file).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ems.atomicfile import replace_atomically
from ems.gateway.config import FlatTariffSpec, PricesSection, WeatherSection
from ems.gateway.planning import SlotPrices
from ems.jepx_files import JepxFiles
from optimizer.prices import JST, FlatTariff, TimeOfUseTariff, synthetic_spot_prices
from telemetry.market import (MarketMessageError, PricesMessage, WeatherMessage, parse_prices, parse_weather,
                              prices_topic, weather_topic)

if TYPE_CHECKING:
    from ems.config import FleetConfig, SiteConfig
    from ems.gateway.config import GatewayConfig

log = logging.getLogger(__name__)

#: Known prices are kept from this long before now [the clock's time] ...
KEEP_PAST = timedelta(days=2)
#: ... to this long after it (a message's far-future slots are not kept).
KEEP_AHEAD = timedelta(days=15)
#: Distinct problems logged (each once); later ones are only counted.
MAX_LOGGED_PROBLEMS = 100
STATE_VERSION = 1

Listener = Callable[[str], None]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds")


def _floor(t: datetime, minutes: int) -> datetime:
    """Start of the ``minutes`` slot holding ``t`` (slots counted from midnight UTC, hence JST)."""
    step = minutes * 60
    ts = t.astimezone(timezone.utc).timestamp()
    return datetime.fromtimestamp(ts - ts % step, tz=timezone.utc)


@dataclass(frozen=True, slots=True)
class _Batch:
    """Where a set of known values came from: one central message, or one look at the CSV files."""

    id: int
    kind: str  # "central" (prices), "central_weather", "jepx_csv"
    source: str
    published_at: datetime | None
    received_at: datetime
    live: bool  # received in this run (False: restored from the state file)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "source": self.source,
                "published_at": _iso(self.published_at) if self.published_at else None,
                "received_at": _iso(self.received_at)}


def tariff_label(spec: Any) -> str:
    """How a tariff is named in ``SlotPrices.source``."""
    if isinstance(spec, FlatTariffSpec):
        return f"tariff flat {spec.jpy_per_kwh:g} JPY/kWh"
    periods = ", ".join(f"{p.from_hour:g}h {p.jpy_per_kwh:g}" for p in spec.periods)
    return f"tariff time-of-use ({periods} JPY/kWh)"


class _CsvPrices:
    """JEPX spot CSV prices of one area from a file or a folder of ``*.csv`` files, watched by
    :class:`ems.jepx_files.JepxFiles` (parsed again when a file's mtime or size changes; a bad version is
    logged once and the file's last good prices stay)."""

    def __init__(self, path: Path, area: str):
        self.area = area
        self.files = JepxFiles(path, [area], what="JEPX CSV prices", suffix="(the last good prices stay in use)",
                               logger=log)
        self.changed = 0  # bumped whenever the prices read change

    @property
    def path(self) -> Path:
        return self.files.path

    @property
    def last_error(self) -> str | None:
        return self.files.last_error

    def refresh(self) -> None:
        if self.files.refresh():
            self.changed += 1

    def at(self, t: datetime) -> tuple[float, str] | None:
        """(spot [JPY/kWh], file name) of the half-hour holding ``t``, or None."""
        return self.files.merged(self.area).get(_floor(t, 30))


class MarketInputs:
    """Prices and weather for a gateway's plans (see the module docstring).

    prices, weather: the gateway file's sections; site_id: names the state
    file; jepx_area: the fleet's JEPX area (``prices.jepx_area`` wins);
    area_code: the site's JMA area code; cloud_factor [0..1]: the site's
    typical cloudiness (typical weather factor = 1 − it); state_dir: folder
    of ``market-<site_id>.json``; clock: now, aware UTC (simulated time in
    drills); base_dir: folder relative ``prices.jepx_csv`` paths are taken
    from (the gateway file's); seed: of the ``synthetic`` source.
    """

    def __init__(self, prices: PricesSection, weather: WeatherSection, *, site_id: str, jepx_area: str,
                 area_code: str, cloud_factor: float = 0.2, state_dir: str | Path,
                 clock: Callable[[], datetime] = _utcnow, base_dir: str | Path | None = None, seed: int = 0):
        self.prices_cfg, self.weather_cfg = prices, weather
        self.site_id = site_id
        self.jepx_area = prices.jepx_area or jepx_area
        self.area_code = area_code
        self.prices_topic = prices_topic(self.jepx_area)
        self.weather_topic = weather_topic(area_code)
        if not (math.isfinite(cloud_factor) and 0.0 <= cloud_factor <= 1.0):
            raise ValueError(f"cloud_factor: {cloud_factor!r} is not in 0..1")
        self.typical_factor = 1.0 - cloud_factor
        self.state_file = Path(state_dir) / f"market-{site_id}.json"
        self.clock = clock
        self.seed = seed
        t = prices.tariff
        self._tariff_sell = float(t.sell_jpy_per_kwh)
        self._tariff = (FlatTariff(t.jpy_per_kwh) if isinstance(t, FlatTariffSpec)
                        else TimeOfUseTariff(tuple((p.from_hour, p.jpy_per_kwh) for p in t.periods)))
        self.tariff_label = tariff_label(t)
        self._csv: _CsvPrices | None = None
        if prices.source == "jepx_csv" and prices.jepx_csv is not None:
            path = Path(prices.jepx_csv).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            self._csv = _CsvPrices(path, self.jepx_area)
        self._csv_seen = -1

        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._batches: dict[int, _Batch] = {}
        self._next_id = 1
        self._prices: dict[datetime, tuple[float, int, int]] = {}  # slot start -> (spot, minutes, batch id)
        self._minutes: set[int] = set()
        self._weather: dict[date, tuple[float, int]] = {}  # JST date -> (factor, batch id)
        self._current_prices: int | None = None  # the live central prices batch
        self._current_weather: int | None = None
        self._current_prices_msg: PricesMessage | None = None
        self._current_weather_msg: WeatherMessage | None = None
        self._last_central_at: datetime | None = None
        self._listeners: list[Listener] = []
        self._problems: set[str] = set()
        #: Messages refused and the latest reason (also logged, each distinct reason once).
        self.rejected = 0
        self.last_rejection: str | None = None
        #: The source of the latest ``prices`` / ``weather_factor`` answer.
        self.last_price_source: str | None = None
        self.last_weather_source: str | None = None
        self._load_state()

    @classmethod
    def for_site(cls, cfg: "GatewayConfig", fleet: "FleetConfig", site: "SiteConfig",
                 clock: Callable[[], datetime] = _utcnow) -> "MarketInputs":
        """The inputs of ``site`` as its gateway file configures them (state in ``cfg.state_path``)."""
        sim = site.simulator
        return cls(cfg.prices, cfg.weather, site_id=site.id, jepx_area=fleet.fleet.jepx_area,
                   area_code=site.area_code, cloud_factor=sim.cloud_factor if sim is not None else 0.2,
                   state_dir=cfg.state_path, clock=clock, base_dir=cfg.base_dir, seed=sim.seed if sim else 0)

    # -- MQTT ------------------------------------------------------------------------------------
    def topics(self) -> list[str]:
        """The topics to subscribe to (retained: the latest arrives on every subscribe)."""
        out = []
        if self.prices_cfg.source == "central":
            out.append(self.prices_topic)
        if self.weather_cfg.source == "central":
            out.append(self.weather_topic)
        return out

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(why)`` after new prices or weather arrived (in paho's thread; keep it quick)."""
        self._listeners.append(listener)

    def on_message(self, topic: str, payload: bytes) -> None:
        """Take one message of :meth:`topics`.  A bad one is logged (once per distinct problem, naming the
        topic and the field), counted in ``rejected`` and changes nothing."""
        now = self.clock()
        if not payload:
            self._reject(f"{topic}: empty message (the retained message was cleared); nothing changed")
            return
        try:
            if topic == self.prices_topic and self.prices_cfg.source == "central":
                why = self._take_prices(parse_prices(topic, payload), now)
            elif topic == self.weather_topic and self.weather_cfg.source == "central":
                why = self._take_weather(parse_weather(topic, payload), now)
            else:
                self._reject(f"{topic}: not a topic this gateway subscribed to")
                return
        except MarketMessageError as exc:
            self._reject(str(exc))
            return
        self._save()
        if why:
            for listener in list(self._listeners):
                try:
                    listener(why)
                except Exception:
                    log.exception("%s: market inputs listener failed", self.site_id)

    def _reject(self, text: str) -> None:
        with self._lock:
            self.rejected += 1
            self.last_rejection = text
            first = text not in self._problems and len(self._problems) < MAX_LOGGED_PROBLEMS
            if first:
                self._problems.add(text)
        if first:
            log.warning("%s: refused market message: %s", self.site_id, text)

    def _new_batch(self, kind: str, source: str, published_at: datetime | None, now: datetime) -> _Batch:
        b = _Batch(self._next_id, kind, source, published_at, now, live=True)
        self._next_id += 1
        self._batches[b.id] = b
        return b

    def _take_prices(self, msg: PricesMessage, now: datetime) -> str:
        with self._lock:
            self._last_central_at = now
            if msg == self._current_prices_msg and self._current_prices in self._batches:
                return ""  # the same message again (re-subscribed after a reconnect)
            slots = [(s.start, s.spot_jpy_per_kwh) for s in msg.slots]
            batch = self._new_batch("central", msg.source, msg.published_at, now)
            self._current_prices_msg = msg
            self._merge_prices(slots, msg.slot_minutes, batch.id, now)
            self._current_prices = batch.id
            self._prune(now)
        return f"prices from the central service ({msg.source or msg.area}, published {_iso(msg.published_at)})"

    def _take_weather(self, msg: WeatherMessage, now: datetime) -> str:
        with self._lock:
            self._last_central_at = now
            if msg == self._current_weather_msg and self._current_weather in self._batches:
                return ""
            batch = self._new_batch("central_weather", msg.source, msg.published_at, now)
            self._current_weather_msg = msg
            for d in msg.days:
                self._weather[d.date] = (d.factor, batch.id)
            self._current_weather = batch.id
            self._prune(now)
        return f"weather from the central service ({msg.source or msg.area_code}, published {_iso(msg.published_at)})"

    def _merge_prices(self, slots: Sequence[tuple[datetime, float]], minutes: int, batch_id: int,
                      now: datetime) -> bool:
        """Put slots into the known prices (within KEEP_PAST..KEEP_AHEAD of now); True if any changed."""
        lo, hi = now - KEEP_PAST, now + KEEP_AHEAD
        changed = False
        for t, v in slots:
            t = t.astimezone(timezone.utc)
            if t + timedelta(minutes=minutes) < lo or t > hi:
                continue
            old = self._prices.get(t)
            if old is None or old[0] != v or old[1] != minutes:
                changed = True
            self._prices[t] = (float(v), minutes, batch_id)
            self._minutes.add(minutes)
        return changed

    def _prune(self, now: datetime) -> None:
        lo = now - KEEP_PAST
        self._prices = {t: e for t, e in self._prices.items() if t + timedelta(minutes=e[1]) >= lo}
        self._minutes = {e[1] for e in self._prices.values()}
        lo_day = (now - KEEP_PAST).astimezone(JST).date()
        self._weather = {d: e for d, e in self._weather.items() if d >= lo_day}
        used = {e[2] for e in self._prices.values()} | {e[1] for e in self._weather.values()}
        used |= {i for i in (self._current_prices, self._current_weather) if i is not None}
        self._batches = {i: b for i, b in self._batches.items() if i in used}

    # -- PriceProvider ---------------------------------------------------------------------------
    def prices(self, times: Sequence[datetime]) -> SlotPrices:
        """Buy and sell [JPY/kWh] per slot start in ``times``, each from the first source that has it (the
        configured one, the last known prices, the tariff); ``source`` names them (see the module docstring)."""
        n = len(times)
        buy, sell = np.empty(n), np.empty(n)
        labels: list[str] = []
        src = self.prices_cfg.source
        tariff_buy = self._tariff.prices(times) if n else np.empty(0)
        spot = np.full(n, np.nan)
        if src == "synthetic" and n:
            spot[:] = synthetic_spot_prices(times, seed=self.seed)
            labels = [f"synthetic (seed {self.seed})"] * n
        elif src in ("central", "jepx_csv"):
            now = self.clock()
            csv_hits = self._read_csv(times, now) if src == "jepx_csv" else None
            with self._lock:
                for i, t in enumerate(times):
                    if csv_hits is not None and csv_hits[i] is not None:
                        spot[i], name = csv_hits[i]
                        labels.append(f"JEPX CSV ({name})")
                        continue
                    hit = self._known(t)
                    if hit is None:
                        labels.append("")
                        continue
                    spot[i], batch = hit
                    labels.append(self._label(batch))
        else:
            labels = [""] * n
        for i in range(n):
            if math.isnan(spot[i]):
                buy[i], sell[i] = tariff_buy[i], self._tariff_sell
                labels[i] = self.tariff_label
            else:
                buy[i] = spot[i] + self.prices_cfg.buy_adder_jpy_per_kwh
                sell[i] = spot[i] * self.prices_cfg.sell_factor
        source = self._combine(labels) if n else self.tariff_label
        self.last_price_source = source
        return SlotPrices(buy, sell, source)

    def _read_csv(self, times: Sequence[datetime], now: datetime) -> list[tuple[float, str] | None]:
        """The CSV's spot price per slot (None where it has none); what it has is kept as last known."""
        assert self._csv is not None
        self._csv.refresh()
        hits = [self._csv.at(t) for t in times]
        got = [(_floor(t, 30), h[0]) for t, h in zip(times, hits) if h is not None]
        if got:
            with self._lock:
                names = " + ".join(dict.fromkeys(h[1] for h in hits if h is not None))
                changed = any(self._prices.get(t, (None,))[0] != v for t, v in got)
                if changed:
                    batch = self._csv_batch(names, now)
                    self._merge_prices(got, 30, batch.id, now)
                    self._prune(now)
            if changed:
                self._save()
        return hits

    def _csv_batch(self, names: str, now: datetime) -> _Batch:
        """The batch for prices read from the CSV files ``names`` now: the latest one of the same files
        (its read time moved to now), else a new one; lock held."""
        latest = max((b for b in self._batches.values() if b.kind == "jepx_csv" and b.source == names),
                     key=lambda b: b.id, default=None)
        if latest is None:
            return self._new_batch("jepx_csv", names, None, now)
        batch = _Batch(latest.id, "jepx_csv", names, None, now, live=True)
        self._batches[batch.id] = batch
        return batch

    def _known(self, t: datetime) -> tuple[float, _Batch] | None:
        """The newest known spot price [JPY/kWh] whose slot holds ``t`` and its batch (lock held)."""
        best: tuple[float, _Batch] | None = None
        for m in self._minutes:
            e = self._prices.get(_floor(t, m))
            if e is not None and e[1] == m:
                b = self._batches[e[2]]
                if best is None or b.id > best[1].id:
                    best = (e[0], b)
        return best

    def _label(self, b: _Batch) -> str:
        if b.kind == "jepx_csv":
            return f"JEPX CSV, last known ({b.source}, read {_iso(b.received_at)})"
        what = f"{b.source}, " if b.source else ""
        if b.kind == "central" and b.live and b.id == self._current_prices:
            return f"central ({what}published {_iso(b.published_at or b.received_at)})"
        return f"central, last known ({what}received {_iso(b.received_at)})"

    @staticmethod
    def _combine(labels: list[str]) -> str:
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        if len(counts) == 1:
            return labels[0]
        return "; ".join(f"{label}: {n} slots" for label, n in counts.items())

    # -- WeatherProvider -------------------------------------------------------------------------
    def weather_factor(self, t: datetime) -> tuple[float, str]:
        """(PV weather factor [0..1], source) for the local (JST) day of ``t``: the central service's when
        known, else the typical factor."""
        if self.weather_cfg.source == "central":
            day = t.astimezone(JST).date()
            with self._lock:
                e = self._weather.get(day)
                if e is not None:
                    b = self._batches[e[1]]
                    what = f"{b.source}, " if b.source else ""
                    if b.live and b.id == self._current_weather:
                        label = f"central ({what}published {_iso(b.published_at or b.received_at)})"
                    else:
                        label = f"central, last known ({what}received {_iso(b.received_at)})"
                    self.last_weather_source = label
                    return e[0], label
            label = f"typical {self.typical_factor:.2f} (no weather from the central service for the day)"
        else:
            label = f"typical {self.typical_factor:.2f}"
        self.last_weather_source = label
        return self.typical_factor, label

    # -- status ----------------------------------------------------------------------------------
    @property
    def last_central_at(self) -> datetime | None:
        """When the latest valid message from the central service arrived (the clock's time), or None."""
        with self._lock:
            return self._last_central_at

    def state_fields(self, price_source: str | None = None, weather_source: str | None = None) -> dict[str, Any]:
        """The ``inputs`` field of the gateway's state message: the plan's price and weather sources
        (default: those of the latest answers) and when the central service was last heard from."""
        at = self.last_central_at
        return {"price_source": price_source if price_source is not None else self.last_price_source,
                "weather_source": weather_source if weather_source is not None else self.last_weather_source,
                "last_central_at": _iso(at) if at is not None else None}

    # -- the state file --------------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "site": self.site_id, "jepx_area": self.jepx_area,
                "area_code": self.area_code,
                "last_central_at": _iso(self._last_central_at) if self._last_central_at else None,
                "batches": [b.to_json() for b in self._batches.values()],
                "prices": [[_iso(t), v, m, b] for t, (v, m, b) in sorted(self._prices.items())],
                "weather": [[d.isoformat(), f, b] for d, (f, b) in sorted(self._weather.items())]}

    def _save(self) -> None:
        with self._save_lock:
            with self._lock:
                data = json.dumps(self._snapshot(), separators=(",", ":")).encode("utf-8")
            try:
                replace_atomically(self.state_file, data, durable=False)
            except OSError as exc:  # a full or read-only disk must not stop the inputs
                text = f"cannot write {self.state_file}: {exc.strerror}"
                if text not in self._problems:
                    self._problems.add(text)
                    log.warning("%s: %s (known prices live on in memory)", self.site_id, text)

    def _load_state(self) -> None:
        """Restore the last known prices and weather.  A bad file is logged (naming it and the problem),
        moved aside as ``market-<site>.json.corrupt-<UTC time>`` for a person to look at (the next save
        would overwrite it) and ignored: the gateway starts without last known prices."""
        path = self.state_file
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("%s: cannot read %s: %s; starting without last known prices", self.site_id, path,
                        exc.strerror)
            return
        try:
            self._restore(json.loads(raw))
        except Exception as exc:  # any content at all: a cache must never stop the gateway
            self._batches, self._prices, self._weather, self._minutes = {}, {}, {}, set()
            self._last_central_at = None
            log.warning("%s: %s: %s; %s; starting without last known prices", self.site_id, path,
                        str(exc)[:300] or type(exc).__name__, self._move_aside())

    def _move_aside(self) -> str:
        path = self.state_file
        stamp = self.clock().astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        moved = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while moved.exists():
            n += 1
            moved = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(path, moved)
        except OSError as exc:
            return f"could not be moved aside ({exc.strerror})"
        return f"kept as {moved.name}"

    def _restore(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("version: not a state file of this version")
        if data.get("jepx_area") != self.jepx_area:
            log.info("%s: %s holds prices of %s, not %s: not used", self.site_id, self.state_file,
                     data.get("jepx_area"), self.jepx_area)
            data = {**data, "prices": [], "batches": [b for b in data.get("batches", [])
                                                      if b.get("kind") == "central_weather"]}
        if data.get("area_code") != self.area_code:
            data = {**data, "weather": []}

        def when(value: Any, field: str) -> datetime:
            t = datetime.fromisoformat(value)
            if t.tzinfo is None:
                raise ValueError(f"{field}: time without a timezone")
            return t.astimezone(timezone.utc)

        for i, b in enumerate(data["batches"]):
            if b["kind"] not in ("central", "central_weather", "jepx_csv") or not isinstance(b["id"], int):
                raise ValueError(f"batches[{i}]: unknown kind or id")
            self._batches[b["id"]] = _Batch(b["id"], b["kind"], str(b["source"])[:300],
                                            when(b["published_at"], f"batches[{i}].published_at")
                                            if b["published_at"] else None,
                                            when(b["received_at"], f"batches[{i}].received_at"), live=False)
        for i, (t, v, m, b) in enumerate(data["prices"]):
            v = float(v)
            if not math.isfinite(v) or b not in self._batches or not isinstance(m, int) or not 5 <= m <= 60:
                raise ValueError(f"prices[{i}]: not a finite price of a known batch")
            self._prices[when(t, f"prices[{i}]")] = (v, m, b)
            self._minutes.add(m)
        for i, (d, f, b) in enumerate(data["weather"]):
            f = float(f)
            if not (0.0 <= f <= 1.0) or b not in self._batches:
                raise ValueError(f"weather[{i}]: not a factor in 0..1 of a known batch")
            self._weather[date.fromisoformat(d)] = (f, b)
        at = data.get("last_central_at")
        self._last_central_at = when(at, "last_central_at") if at else None
        self._next_id = max(self._batches, default=0) + 1
        self._prune(self.clock())
        log.info("%s: restored %d known price slot(s) and %d weather day(s) from %s", self.site_id,
                 len(self._prices), len(self._weather), self.state_file)
