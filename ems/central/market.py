"""Day-ahead prices and PV weather for every gateway, published retained over MQTT by the central service.

Topics and payloads are :mod:`telemetry.market`'s: per JEPX area the spot
prices, per JMA area code the day's PV weather factor.  Each is published
retained (QoS 1) and again only when its content changes, so a gateway that
(re)subscribes gets the latest at once and ``published_at`` says when that
content was new.

Prices come from a :class:`JepxCsvFeed` (a JEPX spot CSV file or a folder
of them, read again when a file's mtime or size changes; a bad file is
logged with its name and line and its last good content stays in use) or a
:class:`SyntheticFeed` (seeded JEPX-like prices for today and tomorrow: the
demo and the drills).  Published per area: every slot from the start of
yesterday (JST, so including now − 1 day) to the end of the data, at most
:data:`MAX_SLOTS`.

Weather: a small CSV or YAML file of (date, area_code, factor) rows, and
:meth:`MarketPublisher.set_weather`, which the drills call (the simulated
weather reaches the gateways the way real weather would).  A factor set by
``set_weather`` holds from its day on until changed or cleared and wins over
the file's.

Wiring (``ems.central.cli.build_service`` does it from ``central.yaml``)::

    publisher = MarketPublisher(link.publish_retained, areas=["chugoku"],
                                area_codes=[s.area_code for s in fleet.sites],
                                prices=JepxCsvFeed(Path("/srv/jepx")), weather_file=None,
                                check_s=60, clock=clock)
    service = CentralService(..., market=publisher)   # runs publisher.run() as a task
    service.set_weather(["3120100"], 0.3, "drill: typhoon")
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import math
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import yaml

from ems.jepx_files import JepxFiles
from optimizer.prices import JST, synthetic_spot_prices
from telemetry.market import (AREA_CODE_RE, JEPX_AREA_RE, PriceSlot, PricesMessage, WeatherDay, WeatherMessage,
                              prices_topic, to_payload, weather_topic)

log = logging.getLogger(__name__)

#: Publishes one retained message: (topic, payload).  ``CentralMqtt.publish_retained`` in production.
Publish = Callable[[str, bytes], None]

#: Most slots in one prices message (the message's own limit).
MAX_SLOTS = 7 * 96
#: JEPX products are half hours.
JEPX_SLOT = timedelta(minutes=30)
#: Longest ``source`` text of a message.
MAX_SOURCE_CHARS = 200


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def local_day_start(t: datetime) -> datetime:
    """Start (aware UTC) of the JST day containing ``t``."""
    d = t.astimezone(JST).date()
    return datetime.combine(d, time(0), tzinfo=JST).astimezone(timezone.utc)


def _short(text: str) -> str:
    return text if len(text) <= MAX_SOURCE_CHARS else text[: MAX_SOURCE_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class PriceWindow:
    """Contiguous 30-minute spot prices [JPY/kWh] of one area and where they came from."""

    starts: tuple[datetime, ...]
    prices: tuple[float, ...]
    source: str


class PriceFeed(Protocol):
    """Where the central service's prices come from."""

    def refresh(self) -> None:
        """Look at the source again (cheap when nothing changed); never raises for bad data."""

    def window(self, area: str, now: datetime) -> PriceWindow | None:
        """The prices of ``area`` to publish at ``now`` (None: nothing to publish)."""


# -- JEPX CSV files --------------------------------------------------------------------------------

class JepxCsvFeed:
    """JEPX spot CSV prices from a file or a folder of ``*.csv`` files (yearly ``spot_summary_<FY>.csv``).

    The files are watched by :class:`ems.jepx_files.JepxFiles`: each is parsed
    again when its mtime or size changes; a file that cannot be read or parsed
    is logged once per distinct problem (the message names the file, the line
    and the column) and its last good prices stay published; a file that
    disappears is dropped.  Where files overlap, the later file by name wins.
    """

    def __init__(self, path: Path, areas: Sequence[str]):
        self.files = JepxFiles(path, areas, what="JEPX prices", suffix="(the last good prices stay published)",
                               logger=log)
        self._gaps_reported: set[tuple[str, datetime]] = set()

    @property
    def path(self) -> Path:
        return self.files.path

    @property
    def areas(self) -> list[str]:
        return self.files.areas

    @property
    def last_error(self) -> str | None:
        """The latest problem with the files (None when the last look found none)."""
        return self.files.last_error

    def refresh(self) -> None:
        """Parse new and changed files; forget removed ones."""
        self.files.refresh()

    def window(self, area: str, now: datetime) -> PriceWindow | None:
        """Prices of ``area`` from the start of yesterday (JST) to the end of the data, one contiguous run
        (the run holding now, else the first one after now), at most :data:`MAX_SLOTS`."""
        start = local_day_start(now) - timedelta(days=1)
        merged = {t: e for t, e in self.files.merged(area).items() if t >= start}
        if not merged:
            return None
        times = sorted(merged)
        runs: list[list[datetime]] = [[times[0]]]
        for t in times[1:]:
            if t - runs[-1][-1] == JEPX_SLOT:
                runs[-1].append(t)
            else:
                key = (area, runs[-1][-1])
                if key not in self._gaps_reported:
                    self._gaps_reported.add(key)
                    log.warning("JEPX prices: %s has no prices from %s to %s JST", area,
                                (runs[-1][-1] + JEPX_SLOT).astimezone(JST).isoformat(), t.astimezone(JST).isoformat())
                runs.append([t])
        current = now.astimezone(timezone.utc)
        run = next((r for r in runs if r[0] <= current < r[-1] + JEPX_SLOT), None)
        if run is None:
            run = next((r for r in runs if r[0] > current), None)
        if run is None:
            return None
        run = run[:MAX_SLOTS]
        names = list(dict.fromkeys(merged[t][1] for t in run))
        return PriceWindow(tuple(run), tuple(merged[t][0] for t in run), _short(" + ".join(names)))


class SyntheticFeed:
    """Seeded JEPX-like prices (:func:`optimizer.prices.synthetic_spot_prices`) for today and tomorrow (JST),
    the same for every area; for the demo and drills that have no JEPX file."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.last_error: str | None = None

    def refresh(self) -> None:
        pass

    def window(self, area: str, now: datetime) -> PriceWindow:
        start = local_day_start(now)
        times = [start + k * JEPX_SLOT for k in range(96)]
        prices = synthetic_spot_prices(times, seed=self.seed)
        return PriceWindow(tuple(times), tuple(float(p) for p in prices), f"synthetic (seed {self.seed})")


# -- weather file ----------------------------------------------------------------------------------

class WeatherFileError(ValueError):
    """A weather file that cannot be used; the text names the file, the line and the field."""


WEATHER_COLUMNS = ("date", "area_code", "factor")


def _weather_row(where: str, day: Any, code: Any, factor: Any) -> tuple[str, date, float]:
    if isinstance(day, datetime):
        raise WeatherFileError(f"{where}: date: a day is wanted (YYYY-MM-DD), not a time")
    if isinstance(day, date):
        d = day
    else:
        try:
            d = date.fromisoformat(str(day).strip())
        except ValueError:
            raise WeatherFileError(f"{where}: date: not a date (YYYY-MM-DD): {str(day)[:40]!r}") from None
    if isinstance(code, int) and not isinstance(code, bool):
        raise WeatherFileError(f"{where}: area_code: write it in quotes (e.g. '3120100'): a number loses leading zeros")
    if not isinstance(code, str) or not AREA_CODE_RE.match(code.strip()):
        raise WeatherFileError(f"{where}: area_code: {str(code)[:40]!r} is not a JMA area code (6 or 7 digits)")
    if isinstance(factor, bool):
        raise WeatherFileError(f"{where}: factor: not a number: {factor!r}")
    try:
        f = float(factor.strip() if isinstance(factor, str) else factor)
    except (TypeError, ValueError):
        raise WeatherFileError(f"{where}: factor: not a number: {str(factor)[:40]!r}") from None
    if not math.isfinite(f) or not 0.0 <= f <= 1.0:
        raise WeatherFileError(f"{where}: factor: {f!r} is outside 0..1 (1 = clear sky)")
    return code.strip(), d, f


def parse_weather_file(raw: bytes, name: str) -> dict[tuple[str, date], float]:
    """Weather factors from a CSV (header ``date,area_code,factor``) or YAML (a list of mappings with those
    keys) file; ``{(area_code, date): factor}``.  WeatherFileError naming ``name``, the line and the field."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WeatherFileError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    rows: list[tuple[int, str, date, float]] = []
    if name.lower().endswith((".yaml", ".yml")):
        rows = _yaml_rows(text, name)
    else:
        rows = _csv_rows(text, name)
    out: dict[tuple[str, date], float] = {}
    first_line: dict[tuple[str, date], int] = {}
    for line, code, d, f in rows:
        key = (code, d)
        if key in out:
            raise WeatherFileError(f"{name}: line {line}: {code} {d.isoformat()} is already on line {first_line[key]}")
        out[key], first_line[key] = f, line
    return out


def _csv_rows(text: str, name: str) -> list[tuple[int, str, date, float]]:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise WeatherFileError(f"{name}: no header (date,area_code,factor)")
    header_no, header_line = lines[0]
    header = [h.strip().lower() for h in next(csv.reader([header_line]))]
    if sorted(header) != sorted(WEATHER_COLUMNS):
        raise WeatherFileError(f"{name}: line {header_no}: columns must be date, area_code, factor "
                               f"(found: {', '.join(header)})")
    rows = []
    for n, line in lines[1:]:
        cells = next(csv.reader(io.StringIO(line)))
        if len(cells) != len(header):
            raise WeatherFileError(f"{name}: line {n}: {len(cells)} fields, expected {len(header)}")
        v = dict(zip(header, cells))
        rows.append((n, *_weather_row(f"{name}: line {n}", v["date"], v["area_code"], v["factor"])))
    return rows


def _yaml_rows(text: str, name: str) -> list[tuple[int, str, date, float]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise WeatherFileError(f"{name}: {where}not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return []
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        raise WeatherFileError(f"{name}: line 1: must be a list of {{date, area_code, factor}} entries")
    rows = []
    for i, (item, item_node) in enumerate(zip(data, node.value)):
        line = item_node.start_mark.line + 1
        where = f"{name}: line {line}: [{i}]"
        if not isinstance(item, dict):
            raise WeatherFileError(f"{where}: must be a mapping with date, area_code, factor")
        keys = set(item)
        if keys != set(WEATHER_COLUMNS):
            extra, missing = keys - set(WEATHER_COLUMNS), set(WEATHER_COLUMNS) - keys
            what = f"unknown field {sorted(map(str, extra))[0]}" if extra else f"{sorted(missing)[0]} is missing"
            raise WeatherFileError(f"{where}: {what}")
        rows.append((line, *_weather_row(where, item["date"], item["area_code"], item["factor"])))
    return rows


class WeatherFile:
    """A weather file read again when its mtime or size changes; a bad version is logged once and the
    last good content stays in use."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.factors: dict[tuple[str, date], float] = {}
        self._version: tuple[int, int] | None = None
        self.last_error: str | None = None

    def refresh(self) -> None:
        try:
            st = self.path.stat()
        except OSError as exc:
            self._fail(f"{self.path}: cannot read: {exc.strerror}", (-1, -1))
            return
        version = (st.st_mtime_ns, st.st_size)
        if version == self._version:
            return
        try:
            factors = parse_weather_file(self.path.read_bytes(), str(self.path))
        except OSError as exc:
            self._fail(f"{self.path}: cannot read: {exc.strerror}", version)
            return
        except WeatherFileError as exc:
            self._fail(str(exc), version)
            return
        self._version, self.factors, self.last_error = version, factors, None
        log.info("weather: read %s (%d day(s) of %d area(s))", self.path, len(factors),
                 len({c for c, _ in factors}))

    def _fail(self, text: str, version: tuple[int, int]) -> None:
        if self._version != version or self.last_error != text:
            log.error("weather: %s (the last good factors stay published)", text)
        self._version, self.last_error = version, text


# -- the publisher ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WeatherOverride:
    """A factor set through the API: from ``since`` (a JST date) on, until changed."""

    since: date
    factor: float
    source: str


class MarketPublisher:
    """Publishes prices per JEPX area and weather per area code, retained, whenever they change.

    publish: ``(topic, payload bytes) -> None``, publishing retained with QoS 1
    (``CentralMqtt.publish_retained``); areas: JEPX areas (e.g. the fleet
    file's ``jepx_area``); area_codes: the JMA area codes to publish weather
    for (the fleet's sites' ``area_code``); prices: a :class:`PriceFeed`
    (:class:`JepxCsvFeed`, :class:`SyntheticFeed`) or None; weather_file: a
    CSV/YAML file of (date, area_code, factor) or None; check_s [s of wall
    time]: how often :meth:`run` looks again; clock: now (aware UTC;
    simulated time in drills); weather_days_ahead: days after today in each
    weather message.

    Thread-safe: :meth:`set_weather` may be called from any thread while
    :meth:`run` runs in the service's event loop.
    """

    def __init__(self, publish: Publish, *, areas: Sequence[str], area_codes: Iterable[str],
                 prices: PriceFeed | None = None, weather_file: Path | None = None, check_s: float = 60.0,
                 clock: Callable[[], datetime] = _utcnow, weather_days_ahead: int = 2):
        for a in areas:
            if not JEPX_AREA_RE.match(a):
                raise ValueError(f"areas: {a!r} is not a JEPX area name")
        self.publish = publish
        self.areas = list(dict.fromkeys(areas))
        self.area_codes = list(dict.fromkeys(area_codes))
        for c in self.area_codes:
            weather_topic(c)  # ValueError naming a bad code
        self.prices = prices
        self.weather_file = WeatherFile(weather_file) if weather_file is not None else None
        self.check_s = check_s
        self.clock = clock
        self.weather_days_ahead = weather_days_ahead
        self._lock = threading.RLock()
        self._overrides: dict[str, WeatherOverride] = {}
        self._published: dict[str, tuple[Any, PricesMessage | WeatherMessage]] = {}
        self._unknown_reported: set[str] = set()
        self.last_check_at: datetime | None = None
        self.publish_errors = 0
        self.last_publish_error: str | None = None

    # -- running ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Check and publish now and every ``check_s`` seconds until cancelled; a failure is logged and the
        loop goes on."""
        while True:
            try:
                await asyncio.to_thread(self.check_once)
            except Exception:
                log.exception("market publisher: check failed")
            await asyncio.sleep(self.check_s)

    def check_once(self) -> list[str]:
        """Look at the sources again and publish what changed; returns the topics published."""
        with self._lock:
            now = self.clock()
            self.last_check_at = now
            sent = []
            if self.prices is not None:
                self.prices.refresh()
                for area in self.areas:
                    if self._publish_prices(area, now):
                        sent.append(prices_topic(area))
            if self.weather_file is not None:
                self.weather_file.refresh()
                self._report_unknown_codes()
            sent += self._publish_weather(self.area_codes, now)
            return sent

    # -- weather through the API -----------------------------------------------------------------
    def set_weather(self, area_codes: Iterable[str], factor: float, source: str,
                    since: date | None = None) -> list[str]:
        """Set the PV weather factor [0..1] (1 = clear sky) of ``area_codes`` from ``since`` (default: today,
        JST) on and publish it now; returns the topics published.  ValueError naming the argument for an
        unknown area code, a factor outside 0..1 or an empty source."""
        codes = list(dict.fromkeys(area_codes))
        if not codes:
            raise ValueError("area_codes: name at least one area code")
        unknown = [c for c in codes if c not in self.area_codes]
        if unknown:
            raise ValueError(f"area_codes: not an area code of the fleet: {', '.join(map(str, unknown))}")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) \
                or not 0.0 <= factor <= 1.0:
            raise ValueError(f"factor: {factor!r} is not a number in 0..1 (1 = clear sky)")
        source = (source or "").strip()
        if not source:
            raise ValueError("source: say where the factor comes from (e.g. 'drill: typhoon')")
        with self._lock:
            now = self.clock()
            day = since or now.astimezone(JST).date()
            for c in codes:
                self._overrides[c] = WeatherOverride(day, float(factor), _short(source))
            log.info("weather: factor %.2f for %s from %s on (%s)", factor, ", ".join(codes), day, source)
            return self._publish_weather(codes, now)

    def clear_weather(self, area_codes: Iterable[str] | None = None) -> list[str]:
        """Forget the factors set with :meth:`set_weather` (of ``area_codes``, default all); the file's
        (if any) are published again.  Returns the topics published."""
        with self._lock:
            codes = list(self._overrides) if area_codes is None else [c for c in area_codes if c in self._overrides]
            for c in codes:
                del self._overrides[c]
            return self._publish_weather(codes, self.clock())

    # -- status ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What was published last per topic and the latest problems (for the API)."""
        with self._lock:
            topics = []
            for topic, (_, msg) in sorted(self._published.items()):
                entry: dict[str, Any] = {"topic": topic, "source": msg.source,
                                         "published_at": msg.published_at.isoformat()}
                if isinstance(msg, PricesMessage):
                    entry.update(slots=len(msg.slots), first=msg.slots[0].start.isoformat(),
                                 until=(msg.slots[-1].start + timedelta(minutes=msg.slot_minutes)).isoformat())
                else:
                    entry.update(days=[d.date.isoformat() for d in msg.days])
                topics.append(entry)
            errors = [e for e in (getattr(self.prices, "last_error", None),
                                  self.weather_file.last_error if self.weather_file else None,
                                  self.last_publish_error) if e]
            return {"areas": self.areas, "price_source": type(self.prices).__name__ if self.prices else None,
                    "weather_file": str(self.weather_file.path) if self.weather_file else None,
                    "last_check_at": self.last_check_at.isoformat() if self.last_check_at else None,
                    "topics": topics, "last_error": "; ".join(errors) or None,
                    "weather_overrides": {c: {"since": o.since.isoformat(), "factor": o.factor, "source": o.source}
                                          for c, o in self._overrides.items()}}

    # -- internals -------------------------------------------------------------------------------
    def _send(self, topic: str, key: Any, msg: PricesMessage | WeatherMessage) -> bool:
        try:
            self.publish(topic, to_payload(msg))
        except Exception as exc:  # the link refused; try again at the next check
            self.publish_errors += 1
            self.last_publish_error = f"{topic}: {type(exc).__name__}: {exc}"
            log.exception("market publisher: cannot publish %s", topic)
            return False
        self._published[topic] = (key, msg)
        self.last_publish_error = None
        return True

    def _publish_prices(self, area: str, now: datetime) -> bool:
        assert self.prices is not None
        window = self.prices.window(area, now)
        if window is None or not window.starts:
            return False
        topic = prices_topic(area)
        key = (window.source, window.starts, window.prices)
        old = self._published.get(topic)
        if old is not None and old[0] == key:
            return False
        msg = PricesMessage(area=area, source=window.source, published_at=now, slot_minutes=30,
                            slots=[PriceSlot(start=t, spot_jpy_per_kwh=p) for t, p in zip(window.starts, window.prices)])
        return self._send(topic, key, msg)

    def _days(self, code: str, today: date) -> tuple[list[tuple[date, float]], str]:
        file_factors = self.weather_file.factors if self.weather_file is not None else {}
        override = self._overrides.get(code)
        days, sources = [], []
        for k in range(self.weather_days_ahead + 1):
            d = today + timedelta(days=k)
            if override is not None and d >= override.since:
                days.append((d, override.factor))
                sources.append(override.source)
            elif (code, d) in file_factors:
                days.append((d, file_factors[(code, d)]))
                sources.append(self.weather_file.path.name)  # type: ignore[union-attr]
        return days, _short(" + ".join(dict.fromkeys(sources)))

    def _publish_weather(self, codes: Iterable[str], now: datetime) -> list[str]:
        today = now.astimezone(JST).date()
        sent = []
        for code in codes:
            days, source = self._days(code, today)
            if not days:
                continue
            topic = weather_topic(code)
            key = (source, tuple(days))
            old = self._published.get(topic)
            if old is not None and old[0] == key:
                continue
            msg = WeatherMessage(area_code=code, source=source, published_at=now,
                                 days=[WeatherDay(date=d, factor=f) for d, f in days])
            if self._send(topic, key, msg):
                sent.append(topic)
        return sent

    def _report_unknown_codes(self) -> None:
        assert self.weather_file is not None
        for code in sorted({c for c, _ in self.weather_file.factors} - set(self.area_codes)):
            if code not in self._unknown_reported:
                self._unknown_reported.add(code)
                log.warning("weather: %s names area code %s, which no hall of the fleet has (not published)",
                            self.weather_file.path, code)
