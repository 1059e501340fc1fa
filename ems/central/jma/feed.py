"""Read JMA reports from the Atom feed (URL) or from a folder, each entry once.

URL mode polls a JMA feed (the "extra" feed
``https://www.data.jma.go.jp/developer/xml/feed/extra.xml`` carries warnings and
typhoons, the "eqvol" feed ``…/eqvol.xml`` earthquakes and tsunamis: see
:class:`FeedReaders` for more than one), picks entries whose title is a report
we read, fetches each new entry's XML and
parses it.  Folder mode reads ``*.xml`` files: Atom feeds (their entries'
files are looked up in the same folder by name, else fetched) and single
reports (entry id = file name + content hash, so a rewritten file is new).

Entry ids are remembered in SQLite (``seen_db``), so a restart never
processes an entry again.  A failing fetch is logged once, not marked seen,
and retried at the next poll; a report that is fetched but cannot be parsed
is logged and marked seen (fetching it again would not help).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urljoin, urlparse

from ems.central.jma.models import JmaParseError, UnsupportedReportError, WarningReport
from ems.central.jma.parser import MAX_BYTES, is_read_title, parse_report, parse_xml
from ems.central.sqlite_recovery import OnRecovered, open_sqlite_or_recover

log = logging.getLogger(__name__)

ATOM_NS = "http://www.w3.org/2005/Atom"
USER_AGENT = "shelter-ems/0.1 (JMA warning reader)"

Fetch = Callable[[str], bytes]


@dataclass(frozen=True)
class FeedEntry:
    """One Atom entry: title, id, updated (UTC, None if missing), link to the report XML, author."""

    title: str
    id: str
    updated: datetime | None
    link: str
    author: str


def parse_feed(data: bytes, where: str) -> list[FeedEntry]:
    """Entries of an Atom feed; JmaParseError naming ``where`` when it is not one."""
    root = parse_xml(data, where)
    if root.tag != f"{{{ATOM_NS}}}feed":
        raise JmaParseError(f"{where}: root element is {root.tag!r}, expected an Atom <feed>")
    entries = []
    for index, e in enumerate(root.findall(f"{{{ATOM_NS}}}entry"), start=1):
        title = (e.findtext(f"{{{ATOM_NS}}}title") or "").strip()
        entry_id = (e.findtext(f"{{{ATOM_NS}}}id") or "").strip()
        if not entry_id:
            raise JmaParseError(f"{where}: feed/entry[{index}]/id: missing")
        links = e.findall(f"{{{ATOM_NS}}}link")
        href = next((l.get("href", "") for l in links if l.get("type") == "application/xml"), "") or \
            next((l.get("href", "") for l in links if l.get("href")), "")
        updated_text = (e.findtext(f"{{{ATOM_NS}}}updated") or "").strip()
        try:
            updated = datetime.fromisoformat(updated_text.replace("Z", "+00:00")) if updated_text else None
            if updated is not None and updated.tzinfo is None:
                updated = updated.replace(tzinfo=timezone.utc)
        except ValueError:
            raise JmaParseError(f"{where}: feed/entry[{index}]/updated: not an ISO 8601 time: {updated_text!r}") from None
        author = (e.findtext(f"{{{ATOM_NS}}}author/{{{ATOM_NS}}}name") or "").strip()
        entries.append(FeedEntry(title=title, id=entry_id, updated=updated, link=href or entry_id, author=author))
    return entries


class UrlFetcher:
    """``fetch(url) -> bytes`` with urllib: http(s) only, timeout [s], gzip, size cap, and
    If-Modified-Since for the URLs in ``conditional`` (the JMA feed asks clients to use it).

    Only those URLs are remembered (last body and Last-Modified): caching every entry's report
    would grow without end in a long-running service, and an entry is fetched once anyway."""

    def __init__(self, timeout_s: float = 20.0, conditional: Iterable[str] = ()) -> None:
        self.timeout_s = timeout_s
        self.conditional = frozenset(conditional)
        self._cache: dict[str, tuple[str, bytes]] = {}

    def __call__(self, url: str) -> bytes:
        if urlparse(url).scheme not in ("http", "https"):
            raise ValueError(f"refusing to fetch {url!r}: only http and https URLs")
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
        cached = self._cache.get(url)
        if cached:
            headers["If-Modified-Since"] = cached[0]
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=self.timeout_s) as resp:
                data = resp.read(MAX_BYTES + 1)
                if len(data) > MAX_BYTES:
                    raise ValueError(f"{url}: response larger than {MAX_BYTES} bytes")
                if resp.headers.get("Content-Encoding", "").lower() == "gzip":
                    data = gzip.decompress(data)
                last_modified = resp.headers.get("Last-Modified")
        except urllib.error.HTTPError as exc:
            if exc.code == 304 and cached:
                return cached[1]
            raise
        if last_modified and url in self.conditional:
            self._cache[url] = (last_modified, data)
        return data


class AtomFeedReader:
    """Polls ``source`` (feed URL or folder) for new warning/typhoon reports; ``seen_db`` [SQLite file]
    remembers processed entry ids for ``keep_days`` [days]; ``fetch(url) -> bytes`` is injectable
    (default: a :class:`UrlFetcher` that polls the feed URL with If-Modified-Since)."""

    def __init__(self, source: str, seen_db: str | Path, fetch: Fetch | None = None,
                 keep_days: float = 30.0, on_recovered: OnRecovered | None = None) -> None:
        self.source = str(source)
        self.is_url = urlparse(self.source).scheme in ("http", "https")
        if not self.is_url and not Path(self.source).is_dir():
            raise ValueError(f"JMA source {self.source!r} is neither an http(s) URL nor an existing folder")
        self.fetch: Fetch = fetch or UrlFetcher(conditional={self.source})
        self.keep = timedelta(days=keep_days)
        self._lock = threading.Lock()
        # A damaged seen set is moved aside and a fresh one started (ems.central.sqlite_recovery): the
        # reports still in the feed are then read again, as at a first start.
        self._db = open_sqlite_or_recover(
            seen_db, "CREATE TABLE IF NOT EXISTS jma_seen (entry_id TEXT PRIMARY KEY, seen_at TEXT NOT NULL, "
                     "outcome TEXT NOT NULL);", what="JMA seen set", on_recovered=on_recovered, pragmas=())
        self._failing: dict[str, str] = {}  # what is failing -> message, so each failure is logged once
        #: The last report that could not be parsed (it is not fetched again), for a status page.
        self.last_parse_error: str | None = None

    def close(self) -> None:
        """Close the seen-set database."""
        with self._lock:
            self._db.close()

    @property
    def last_error(self) -> str | None:
        """What is failing now (feed or entries), one line; None when the last polls went well."""
        if not self._failing:
            return None
        return "; ".join(f"{what}: {msg}" for what, msg in self._failing.items())

    # -- seen set --------------------------------------------------------------
    def seen(self, entry_id: str) -> bool:
        """True when ``entry_id`` was processed before (by this or an earlier process)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM jma_seen WHERE entry_id = ?", (entry_id,)).fetchone() is not None

    def _mark(self, entry_id: str, outcome: str) -> None:
        now = datetime.now(timezone.utc)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO jma_seen (entry_id, seen_at, outcome) VALUES (?, ?, ?)",
                             (entry_id, now.isoformat(), outcome))

    def _prune(self) -> None:
        cutoff = (datetime.now(timezone.utc) - self.keep).isoformat()
        with self._lock:
            self._db.execute("DELETE FROM jma_seen WHERE seen_at < ?", (cutoff,))

    # -- logging once ------------------------------------------------------------
    def _failed(self, what: str, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        if what not in self._failing:
            log.warning("JMA: cannot read %s (%s); retrying at the next poll", what, msg)
        self._failing[what] = msg

    def _ok(self, what: str) -> None:
        if self._failing.pop(what, None) is not None:
            log.info("JMA: %s readable again", what)

    # -- polling -------------------------------------------------------------------
    def poll(self) -> list[WarningReport]:
        """New reports since the last poll, oldest first; never raises for fetch or parse problems."""
        self._prune()
        return self._poll_url() if self.is_url else self._poll_folder()

    def _parse(self, data: bytes, entry_id: str, where: str) -> WarningReport | None:
        try:
            report = parse_report(data, entry_id=entry_id, source=where)
        except UnsupportedReportError as exc:
            log.debug("JMA: skipping %s", exc)
            self._mark(entry_id, "ignored")
            return None
        except JmaParseError as exc:
            log.error("JMA: %s", exc)
            self.last_parse_error = str(exc)
            self._mark(entry_id, "malformed")
            return None
        self._mark(entry_id, "parsed")
        return report

    def _entries(self, feed_data: bytes, where: str) -> list[FeedEntry]:
        try:
            entries = parse_feed(feed_data, where)
        except JmaParseError as exc:
            self._failed(where, exc)
            return []
        self._ok(where)
        wanted = [e for e in entries if is_read_title(e.title)]  # others (地方海上警報, 集約通報, …) not fetched
        oldest = datetime.min.replace(tzinfo=timezone.utc)
        return sorted(wanted, key=lambda e: e.updated or oldest)

    def _fetch_entry(self, entry: FeedEntry, url: str) -> WarningReport | None:
        try:
            data = self.fetch(url)
        except Exception as exc:  # network, HTTP, anything the fetcher raises: retry next poll
            self._failed(f"entry {entry.id}", exc)
            return None
        self._ok(f"entry {entry.id}")
        return self._parse(data, entry.id, url)

    def _poll_url(self) -> list[WarningReport]:
        try:
            feed_data = self.fetch(self.source)
        except Exception as exc:
            self._failed(f"feed {self.source}", exc)
            return []
        self._ok(f"feed {self.source}")
        reports = []
        for entry in self._entries(feed_data, self.source):
            if self.seen(entry.id):
                continue
            url = urljoin(self.source, entry.link)
            if urlparse(url).scheme not in ("http", "https"):
                log.error("JMA: entry %s links to %r, not http(s): skipped", entry.id, url)
                self._mark(entry.id, "bad-link")
                continue
            report = self._fetch_entry(entry, url)
            if report is not None:
                reports.append(report)
        return reports

    def _poll_folder(self) -> list[WarningReport]:
        folder = Path(self.source)
        files: list[tuple[Path, bytes]] = []
        for path in sorted(folder.glob("*.xml")):
            try:
                files.append((path, path.read_bytes()))
            except OSError as exc:
                self._failed(str(path), exc)
        feeds, singles = [], []
        for path, data in files:
            # A cheap look at the start tells an Atom feed from a report without parsing everything.
            (feeds if b"http://www.w3.org/2005/Atom" in data[:2048] and b"<feed" in data[:2048] else singles).append(
                (path, data))
        by_name = {p.name: d for p, d in files}
        referenced: set[str] = set()
        reports: list[WarningReport] = []
        for path, data in feeds:
            for entry in self._entries(data, str(path)):
                name = Path(urlparse(entry.link).path).name
                referenced.add(name)
                if self.seen(entry.id):
                    continue
                if name in by_name:
                    self._ok(f"entry {entry.id}")
                    report = self._parse(by_name[name], entry.id, str(folder / name))
                elif urlparse(entry.link).scheme in ("http", "https"):
                    report = self._fetch_entry(entry, entry.link)
                else:
                    self._failed(f"entry {entry.id}", FileNotFoundError(f"{name} not in {folder}"))
                    continue
                if report is not None:
                    reports.append(report)
        for path, data in singles:
            if path.name in referenced:
                continue
            entry_id = f"file:{path.name}#{hashlib.sha256(data).hexdigest()[:16]}"
            if self.seen(entry_id):
                continue
            report = self._parse(data, entry_id, str(path))
            if report is not None:
                reports.append(report)
        return reports


class FeedReaders:
    """Several :class:`AtomFeedReader` polled as one (e.g. the extra and eqvol feeds): reports of all, in
    order of the readers; ``last_error`` and ``last_parse_error`` of any; ``close`` closes all."""

    def __init__(self, readers: list[AtomFeedReader]) -> None:
        if not readers:
            raise ValueError("FeedReaders needs at least one reader")
        self.readers = readers
        self.source = readers[0].source

    def poll(self) -> list[WarningReport]:
        return [r for reader in self.readers for r in reader.poll()]

    @property
    def last_error(self) -> str | None:
        errors = [e for e in (r.last_error for r in self.readers) if e]
        return "; ".join(errors) or None

    @property
    def last_parse_error(self) -> str | None:
        return next((r.last_parse_error for r in self.readers if r.last_parse_error), None)

    def close(self) -> None:
        for reader in self.readers:
            reader.close()
