"""JEPX spot CSV files watched for changes: the one reader of the central service and of a gateway.

A :class:`JepxFiles` looks at a JEPX spot CSV file, or a folder of
``*.csv`` files (yearly ``spot_summary_<FY>.csv``; hidden files such as a
half-written ``.spot.csv.tmp`` are skipped), whenever :meth:`JepxFiles.refresh`
is called:

- a file is parsed again (:func:`optimizer.prices.parse_jepx_spot_csv`, for
  every area) only when its (mtime_ns, size) changed, so a look is a
  ``stat`` per file when nothing did;
- a version that cannot be read or parsed is logged once per distinct
  problem (the message names the file, the line and the column) and the
  file's last good prices stay in use; an area that parses still takes
  its new prices;
- a file that disappears is dropped, with its prices;
- the files are merged per area, the later file by name winning where they
  overlap: slot start (aware UTC) → (spot [JPY/kWh], file name).

Used by :class:`ems.central.market.JepxCsvFeed` (every area the central
service publishes) and the gateway's ``jepx_csv`` price source (its area)::

    files = JepxFiles(Path("/srv/jepx"), ["chugoku"], what="JEPX prices",
                      suffix="(the last good prices stay published)", logger=log)
    if files.refresh():
        prices = files.merged("chugoku")
    files.last_error  # "…/spot_2027.csv: line 50: column …" while a file is bad, else None

Problems are logged as ``<what>: <problem> <suffix>`` on ``logger`` (the
caller's, so the lines keep their module's name).  Not thread-safe: one
caller at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence

from optimizer.prices import JST, PriceDataError, PriceSeries, parse_jepx_spot_csv

log = logging.getLogger(__name__)

#: One area's merged prices: slot start (aware UTC) -> (spot [JPY/kWh], name of the file it came from).
Merged = dict[datetime, tuple[float, str]]


@dataclass
class _File:
    version: tuple[int, int]  # (mtime_ns, size) of the content parsed (or found bad) last
    series: dict[str, PriceSeries]  # area -> last good prices
    problem: str | None = None  # what is wrong with that version (None: every area parsed)


class JepxFiles:
    """JEPX spot prices of ``areas`` from the CSV file or folder ``path`` (see the module docstring).

    what: how log lines start (e.g. ``"JEPX prices"``); suffix: what a
    problem line ends with, saying what happens meanwhile (e.g. ``"(the
    last good prices stay in use)"``); logger: where to log (default this
    module's).
    """

    def __init__(self, path: Path, areas: Sequence[str], *, what: str,
                 suffix: str = "(the last good prices stay in use)", logger: logging.Logger | None = None):
        self.path = Path(path)
        self.areas = list(dict.fromkeys(areas))
        self.what = what
        self.suffix = suffix
        self.log = logger or log
        self._files: dict[Path, _File] = {}
        self._merged: dict[str, Merged] = {a: {} for a in self.areas}
        #: The problems of the latest look, joined with "; " (None when it found none).
        self.last_error: str | None = None

    def _paths(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(p for p in self.path.iterdir()
                          if p.suffix.lower() == ".csv" and not p.name.startswith(".") and p.is_file())
        return [self.path] if self.path.is_file() else []

    def refresh(self) -> bool:
        """Parse new and changed files, forget removed ones; True when the merged prices changed.  Never
        raises for bad or missing files (see :attr:`last_error`)."""
        try:
            paths = self._paths()
        except OSError as exc:
            self._path_problem(f"{self.path}: cannot list: {exc.strerror}")
            return False
        dirty = False
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue  # removed between listing and stat
            version = (st.st_mtime_ns, st.st_size)
            known = self._files.get(p)
            if known is None or known.version != version:
                dirty |= self._load(p, version, known)
        for gone in sorted(set(self._files) - set(paths)):
            self.log.warning("%s: %s is gone; its prices are no longer used", self.what, gone)
            del self._files[gone]
            dirty = True
        if not paths:
            self._path_problem(f"{self.path}: no JEPX CSV file")
        else:
            self.last_error = "; ".join(f.problem for _, f in sorted(self._files.items()) if f.problem) or None
        return dirty and self._merge()

    def merged(self, area: str) -> Mapping[datetime, tuple[float, str]]:
        """The prices of ``area`` from every file, the later file by name winning: slot start (aware UTC) →
        (spot [JPY/kWh], file name).  Empty for an area not asked for.  Read only; replaced, not changed, by
        :meth:`refresh`."""
        return self._merged.get(area, {})

    def _path_problem(self, text: str) -> None:
        if text != self.last_error:
            self.log.error("%s: %s %s", self.what, text, self.suffix)
        self.last_error = text

    def _load(self, p: Path, version: tuple[int, int], known: _File | None) -> bool:
        """Parse ``p`` for every area (each area that parses replaces its last good prices); True when any
        did.  The version is remembered either way: a bad file is read again only when it changes."""
        entry = _File(version, dict(known.series) if known is not None else {})
        self._files[p] = entry
        parsed = False
        try:
            raw = p.read_bytes()
        except OSError as exc:
            entry.problem = f"{p}: cannot read: {exc.strerror}"
        else:
            for area in self.areas:
                try:
                    entry.series[area] = parse_jepx_spot_csv(raw, area=area, source=str(p))
                    parsed = True
                except (PriceDataError, ValueError) as exc:
                    entry.problem = entry.problem or str(exc)
        if entry.problem is None:
            self.log.info("%s: read %s (%s)", self.what, p, ", ".join(
                f"{a}: {len(s.times)} slots to {s.times[-1].astimezone(JST):%Y-%m-%d %H:%M} JST" if s.times
                else f"{a}: no slots" for a, s in entry.series.items()))
        elif known is None or entry.problem != known.problem:
            self.log.error("%s: %s %s", self.what, entry.problem, self.suffix)
        return parsed

    def _merge(self) -> bool:
        """Merge the files' last good prices per area; True when that changed anything."""
        merged: dict[str, Merged] = {a: {} for a in self.areas}
        for p in sorted(self._files):
            for area, s in self._files[p].series.items():
                merged[area].update((t, (float(v), p.name)) for t, v in zip(s.times, s.price))
        if merged == self._merged:
            return False
        self._merged = merged
        return True
