"""AtomFeedReader: folder mode, URL mode against a local HTTP server, dedup across restarts, failures."""

import logging
import shutil
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ems.central.jma.feed import AtomFeedReader, UrlFetcher, parse_feed
from ems.central.jma.parser import is_read_title
from ems.central.jma.models import JmaParseError

from .helpers import SAMPLES, atom_feed, sample

WARN = "気象特別警報・警報・注意報"


# -- folder mode ------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "jma"
    d.mkdir()
    return d


def copy(folder, *names):
    for n in names:
        shutil.copy(SAMPLES / n, folder / n)


def test_folder_of_reports_each_read_once_even_after_restart(folder, tmp_path):
    copy(folder, "vpww53_tottori_issued.xml", "typhoon_approach.xml")
    seen = tmp_path / "seen.sqlite"
    reader = AtomFeedReader(str(folder), seen)
    first = reader.poll()
    assert sorted(r.title for r in first) == ["台風解析・予報情報（５日予報）（Ｈ３０）", WARN]
    assert all(r.entry_id.startswith("file:") for r in first)
    assert reader.poll() == []
    reader.close()
    again = AtomFeedReader(str(folder), seen)
    assert again.poll() == []
    copy(folder, "vpww53_tottori_lifted.xml")
    assert [r.items[0].kinds[1].status for r in again.poll()] == ["解除"]
    again.close()


def test_rewritten_file_is_a_new_entry(folder, tmp_path):
    (folder / "latest.xml").write_bytes(sample("vpww53_tottori_issued.xml"))
    reader = AtomFeedReader(str(folder), tmp_path / "seen.sqlite")
    assert len(reader.poll()) == 1
    (folder / "latest.xml").write_bytes(sample("vpww53_tottori_lifted.xml"))
    [r] = reader.poll()
    assert r.report_time.hour == 6


def test_bad_files_are_logged_and_skipped(folder, tmp_path, caplog):
    # A marine warning (地方海上警報, JMA's sample) is a report type we do not read: skipped, not malformed.
    copy(folder, "bad_truncated.xml", "bad_entity.xml", "jma_13_09_01_200630_VPCU51.xml", "vpww54_sakaiminato_storm_surge.xml")
    reader = AtomFeedReader(str(folder), tmp_path / "seen.sqlite")
    with caplog.at_level(logging.ERROR, logger="ems.central.jma.feed"):
        reports = reader.poll()
    assert [r.format for r in reports] == ["vpww54"]
    text = caplog.text
    assert "bad_truncated.xml" in text and "bad_entity.xml" in text and "VPCU51" not in text
    assert "bad_entity.xml" in reader.last_parse_error or "bad_truncated.xml" in reader.last_parse_error
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="ems.central.jma.feed"):
        assert reader.poll() == []
    assert caplog.text == ""  # logged once, not every poll
    # The truncated file completed later is a new entry and is read.
    (folder / "bad_truncated.xml").write_bytes(sample("vpww53_tottori_issued.xml"))
    assert len(reader.poll()) == 1


def test_folder_with_an_atom_feed(folder, tmp_path):
    copy(folder, "vpww53_tottori_issued.xml", "vpww53_tottori_lifted.xml", "jma_13_09_01_200630_VPCU51.xml")
    (folder / "extra.xml").write_bytes(atom_feed([
        (WARN, "urn:jma:lifted", "2026-09-15T06:12:40Z", "https://example.invalid/data/vpww53_tottori_lifted.xml"),
        (WARN, "urn:jma:issued", "2026-09-14T20:39:20Z", "vpww53_tottori_issued.xml"),
        ("地方海上警報（Ｈ２８）", "urn:jma:marine", "2026-09-15T02:10:00Z", "jma_13_09_01_200630_VPCU51.xml"),
        (WARN, "urn:jma:later", "2026-09-15T07:00:00Z", "not_here_yet.xml"),
    ]))
    fetched = []
    reader = AtomFeedReader(str(folder), tmp_path / "seen.sqlite", fetch=lambda url: fetched.append(url) or b"")
    reports = reader.poll()
    # Oldest first; files the feed names are not read a second time as loose files; the marine
    # warning's title is not wanted, so its file is read as a loose file and skipped as unsupported.
    assert [r.entry_id for r in reports] == ["urn:jma:issued", "urn:jma:lifted"]
    assert fetched == []  # the lifted report was found in the folder by name
    assert "not_here_yet.xml" in reader.last_error
    (folder / "not_here_yet.xml").write_bytes(sample("vpww53_tottori_continuing.xml"))
    assert [r.entry_id for r in reader.poll()] == ["urn:jma:later"]
    assert reader.last_error is None
    assert reader.poll() == []


def test_source_must_be_url_or_folder(tmp_path):
    with pytest.raises(ValueError, match="neither"):
        AtomFeedReader(str(tmp_path / "missing"), tmp_path / "seen.sqlite")
    with pytest.raises(ValueError, match="neither"):
        AtomFeedReader("ftp://example.invalid/feed.xml", tmp_path / "seen.sqlite")


def test_titles():
    assert is_read_title(WARN) and is_read_title("気象警報・注意報（Ｈ２７）")
    assert is_read_title("台風解析・予報情報（５日予報）（Ｈ３０）")
    # The 2026 per-hazard telegrams (VPWW55-61), as titled in JMA's feed since 2026-05-29.
    for hazard in ("大雨", "土砂", "高潮", "暴風", "波浪", "大雪", "その他注意報"):
        assert is_read_title(f"気象警報・注意報（Ｒ０６）（{hazard}）"), hazard
    assert is_read_title("震度速報") and is_read_title("震源・震度に関する情報")
    assert is_read_title("津波警報・注意報・予報a")
    for other in ("府県天気予報", "地方海上警報（Ｈ２８）", "気象警報・注意報（Ｒ０６）（集約通報）",
                  "気象警報・注意報時系列情報（Ｒ０６）", "土砂災害警戒情報", "震源に関する情報", "気象特別警報報知"):
        assert not is_read_title(other), other


def test_parse_feed_errors():
    with pytest.raises(JmaParseError, match="expected an Atom"):
        parse_feed(sample("vpww53_tottori_issued.xml"), "x.xml")
    with pytest.raises(JmaParseError, match=r"entry\[1\]/id: missing"):
        parse_feed(atom_feed([(WARN, "", "2026-09-15T00:00:00Z", "a.xml")]), "x.xml")
    with pytest.raises(JmaParseError, match="updated"):
        parse_feed(atom_feed([(WARN, "urn:a", "soon", "a.xml")]), "x.xml")


# -- URL mode against a local server ---------------------------------------------------
class Site:
    """A tiny JMA look-alike on 127.0.0.1: path -> (status, body); counts requests."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.hits: Counter = Counter()
        self.conditional: Counter = Counter()
        self.version = 0  # bumped by publish(): the feed's Last-Modified second
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                site.hits[self.path] += 1
                status, body = site.routes.get(self.path, (404, b"not found"))
                if status == 200 and self.headers.get("If-Modified-Since") == site.last_modified:
                    site.conditional[self.path] += 1
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                if status == 200:  # JMA sends it for the feed and for entries
                    self.send_header("Last-Modified", site.last_modified)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def last_modified(self) -> str:
        return f"Tue, 15 Sep 2026 06:20:{self.version:02d} GMT"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    s = Site()
    yield s
    s.close()


def publish(site, entries):
    site.version += 1
    site.routes["/feed/extra.xml"] = (200, atom_feed([(t, i, u, f"{site.base}/data/{n}") for t, i, u, n in entries]))
    for _, _, _, n in entries:
        site.routes.setdefault(f"/data/{n}", (200, sample(n)))


def test_url_mode_fetches_each_entry_once_across_restarts(site, tmp_path):
    publish(site, [(WARN, "urn:1", "2026-09-14T20:39:20Z", "vpww53_tottori_issued.xml"),
                   ("府県天気予報", "urn:forecast", "2026-09-14T20:00:00Z", "jma_13_09_01_200630_VPCU51.xml")])
    seen = tmp_path / "seen.sqlite"
    reader = AtomFeedReader(f"{site.base}/feed/extra.xml", seen, fetch=UrlFetcher(timeout_s=10))
    [r] = reader.poll()
    assert r.entry_id == "urn:1" and r.publishing_office == "鳥取地方気象台"
    publish(site, [(WARN, "urn:1", "2026-09-14T20:39:20Z", "vpww53_tottori_issued.xml"),
                   (WARN, "urn:2", "2026-09-15T06:12:40Z", "vpww53_tottori_lifted.xml")])
    assert [r.entry_id for r in reader.poll()] == ["urn:2"]
    reader.close()
    restarted = AtomFeedReader(f"{site.base}/feed/extra.xml", seen, fetch=UrlFetcher(timeout_s=10))
    assert restarted.poll() == []
    assert site.hits["/data/vpww53_tottori_issued.xml"] == 1
    assert site.hits["/data/vpww53_tottori_lifted.xml"] == 1
    assert site.hits["/data/jma_13_09_01_200630_VPCU51.xml"] == 0  # title not wanted: never fetched


def test_feed_is_polled_with_if_modified_since(site, tmp_path):
    publish(site, [(WARN, "urn:1", "2026-09-14T20:39:20Z", "vpww53_tottori_issued.xml")])
    reader = AtomFeedReader(f"{site.base}/feed/extra.xml", tmp_path / "seen.sqlite")
    assert len(reader.poll()) == 1
    assert reader.poll() == [] and reader.poll() == []
    assert site.conditional["/feed/extra.xml"] == 2 and reader.last_error is None


def test_only_the_feed_is_cached_for_conditional_gets(site, tmp_path):
    publish(site, [(WARN, "urn:1", "2026-09-14T20:39:20Z", "vpww53_tottori_issued.xml")])
    reader = AtomFeedReader(f"{site.base}/feed/extra.xml", tmp_path / "seen.sqlite")
    assert len(reader.poll()) == 1 and reader.poll() == []
    assert site.conditional["/feed/extra.xml"] == 1
    # An entry's report is not remembered: fetched again, it is fetched in full, never asked conditionally.
    entry = f"{site.base}/data/vpww53_tottori_issued.xml"
    assert reader.fetch(entry) == sample("vpww53_tottori_issued.xml")
    assert site.hits["/data/vpww53_tottori_issued.xml"] == 2 and site.conditional["/data/vpww53_tottori_issued.xml"] == 0
    assert list(reader.fetch._cache) == [f"{site.base}/feed/extra.xml"]  # memory stays one feed, however long it runs
    # A fetcher told of no conditional URL remembers nothing.
    plain = UrlFetcher(timeout_s=10)
    plain(f"{site.base}/feed/extra.xml")
    plain(f"{site.base}/feed/extra.xml")
    assert site.conditional["/feed/extra.xml"] == 1 and plain._cache == {}


def test_failing_entry_is_retried_and_logged_once(site, tmp_path, caplog):
    publish(site, [(WARN, "urn:1", "2026-09-14T20:39:20Z", "vpww53_tottori_issued.xml")])
    site.routes["/data/vpww53_tottori_issued.xml"] = (500, b"oops")
    reader = AtomFeedReader(f"{site.base}/feed/extra.xml", tmp_path / "seen.sqlite")
    with caplog.at_level(logging.WARNING, logger="ems.central.jma.feed"):
        assert reader.poll() == [] and reader.poll() == []
    assert caplog.text.count("cannot read entry urn:1") == 1
    assert "urn:1" in reader.last_error
    site.routes["/data/vpww53_tottori_issued.xml"] = (200, sample("vpww53_tottori_issued.xml"))
    with caplog.at_level(logging.INFO, logger="ems.central.jma.feed"):
        assert [r.entry_id for r in reader.poll()] == ["urn:1"]
    assert "readable again" in caplog.text and reader.last_error is None


def test_feed_down_is_logged_once_and_recovers(site, tmp_path, caplog):
    site.routes["/feed/extra.xml"] = (503, b"busy")
    reader = AtomFeedReader(f"{site.base}/feed/extra.xml", tmp_path / "seen.sqlite")
    with caplog.at_level(logging.WARNING, logger="ems.central.jma.feed"):
        for _ in range(3):
            assert reader.poll() == []
    assert caplog.text.count("cannot read feed") == 1 and "503" in reader.last_error
    publish(site, [(WARN, "urn:1", "2026-09-14T20:39:20Z", "vpww53_tottori_issued.xml")])
    assert len(reader.poll()) == 1


def test_unreachable_server(tmp_path):
    from tests.netutil import free_port

    reader = AtomFeedReader(f"http://127.0.0.1:{free_port()}/extra.xml", tmp_path / "seen.sqlite",
                            fetch=UrlFetcher(timeout_s=5))
    assert reader.poll() == [] and "feed" in reader.last_error


def test_malformed_entry_is_not_fetched_again(site, tmp_path):
    publish(site, [(WARN, "urn:bad", "2026-09-14T20:39:20Z", "bad_truncated.xml")])
    reader = AtomFeedReader(f"{site.base}/feed/extra.xml", tmp_path / "seen.sqlite")
    assert reader.poll() == [] and reader.poll() == []
    assert site.hits["/data/bad_truncated.xml"] == 1
    assert "not well-formed" in reader.last_parse_error


def test_entry_links_must_be_http(tmp_path):
    feed = atom_feed([(WARN, "urn:1", "2026-09-14T20:39:20Z", "file:///etc/passwd")])
    fetched = []

    def fetch(url):
        fetched.append(url)
        return feed

    reader = AtomFeedReader("https://feed.example.invalid/extra.xml", tmp_path / "seen.sqlite", fetch=fetch)
    assert reader.poll() == [] and fetched == ["https://feed.example.invalid/extra.xml"]
    assert reader.seen("urn:1")


def test_fetcher_refuses_other_schemes():
    with pytest.raises(ValueError, match="only http"):
        UrlFetcher()("file:///etc/passwd")


def test_relative_links_resolve_against_the_feed(tmp_path):
    pages = {"https://jma.example.invalid/feed/extra.xml":
             atom_feed([(WARN, "urn:1", "2026-09-14T20:39:20Z", "../data/a.xml")]),
             "https://jma.example.invalid/data/a.xml": sample("vpww53_tottori_issued.xml")}
    reader = AtomFeedReader("https://jma.example.invalid/feed/extra.xml", tmp_path / "s.sqlite", fetch=pages.__getitem__)
    assert [r.entry_id for r in reader.poll()] == ["urn:1"]


def test_several_feeds_read_as_one(tmp_path):
    """The extra feed (warnings) and the eqvol feed (earthquakes, tsunamis) polled together."""
    from ems.central.jma.feed import FeedReaders

    extra, eqvol = tmp_path / "extra", tmp_path / "eqvol"
    extra.mkdir()
    eqvol.mkdir()
    (extra / "w.xml").write_bytes(sample("vpww53_tottori_issued.xml"))
    (eqvol / "q.xml").write_bytes(sample("real_20210219091451_0_VXSE53_010000.xml"))
    (eqvol / "bad.xml").write_bytes(sample("bad_truncated.xml"))
    both = FeedReaders([AtomFeedReader(str(extra), tmp_path / "s1.sqlite"), AtomFeedReader(str(eqvol), tmp_path / "s2.sqlite")])
    assert [r.kind for r in both.poll()] == ["warning", "earthquake"]
    assert "bad.xml" in both.last_parse_error and both.poll() == []
    both.close()
    with pytest.raises(ValueError):
        FeedReaders([])
