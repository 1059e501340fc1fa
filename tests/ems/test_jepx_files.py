"""The JEPX CSV file/folder watcher shared by the central service and the gateways: files merged (the later file
by name wins), parsed again only when they change, a bad version keeps the last good prices and is logged once
naming file and line, removed files drop their prices, a missing or empty folder is an error, several areas."""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

import ems.jepx_files
from ems.jepx_files import JepxFiles

JST = timezone(timedelta(hours=9))
HEADER = ("受渡日,時刻コード,売り入札量(kWh),買い入札量(kWh),約定総量(kWh),システムプライス(円/kWh),"
          "エリアプライス東京(円/kWh),エリアプライス中国(円/kWh)")
LOGGER = logging.getLogger("tests.jepx_files")
SUFFIX = "(the last good prices stay in use)"


def day_rows(day: date, base: float) -> list[str]:
    """48 rows of ``day``: chugoku base + code, tokyo base + 100 + code."""
    return [f"{day:%Y/%m/%d},{c},1,1,1,{base:.2f},{base + 100 + c:.2f},{base + c:.2f}" for c in range(1, 49)]


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode("cp932"))
    st = path.stat()  # a fresh mtime even within the file system's timestamp granularity
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    return path


def slot(day: date, code: int) -> datetime:
    """Start (aware UTC) of the JEPX time code ``code`` (1 = 00:00–00:30 JST) of ``day``."""
    return (datetime(day.year, day.month, day.day, tzinfo=JST) + timedelta(minutes=30 * (code - 1))) \
        .astimezone(timezone.utc)


def watcher(path: Path, areas=("chugoku",)) -> JepxFiles:
    return JepxFiles(path, list(areas), what="JEPX test", suffix=SUFFIX, logger=LOGGER)


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


D7, D8, D9 = date(2026, 12, 7), date(2026, 12, 8), date(2026, 12, 9)


def test_folder_of_two_files_the_later_file_wins_and_only_changes_are_parsed(tmp_path, monkeypatch):
    folder = tmp_path / "jepx"
    folder.mkdir()
    write_csv(folder / "spot_summary_2026.csv", day_rows(D7, 10.0) + day_rows(D8, 10.0))
    write_csv(folder / "spot_summary_2027.csv", day_rows(D8, 50.0))
    (folder / "notes.txt").write_text("not a CSV")
    (folder / ".spot_summary_2027.csv.tmp").write_text("half written")
    parsed: list[str] = []
    real = ems.jepx_files.parse_jepx_spot_csv
    monkeypatch.setattr(ems.jepx_files, "parse_jepx_spot_csv",
                        lambda raw, area, source: parsed.append(Path(source).name) or real(raw, area, source))
    files = watcher(folder)
    assert files.refresh() is True and files.last_error is None
    prices = files.merged("chugoku")
    assert len(prices) == 2 * 48 and min(prices) == slot(D7, 1) and all(t.tzinfo == timezone.utc for t in prices)
    assert prices[slot(D7, 3)] == (13.0, "spot_summary_2026.csv")
    assert prices[slot(D8, 3)] == (53.0, "spot_summary_2027.csv")  # the later file by name wins
    assert sorted(parsed) == ["spot_summary_2026.csv", "spot_summary_2027.csv"]
    # Nothing changed: nothing parsed, nothing new.
    assert files.refresh() is False and len(parsed) == 2 and files.merged("chugoku") == prices
    # One file changes: only it is parsed again.
    write_csv(folder / "spot_summary_2027.csv", day_rows(D8, 50.0) + day_rows(D9, 60.0))
    assert files.refresh() is True and parsed[2:] == ["spot_summary_2027.csv"]
    prices = files.merged("chugoku")
    assert len(prices) == 3 * 48 and prices[slot(D9, 1)] == (61.0, "spot_summary_2027.csv")
    # A new version with the same prices: parsed, but the merged prices did not change.
    write_csv(folder / "spot_summary_2027.csv", day_rows(D8, 50.0) + day_rows(D9, 60.0))
    assert files.refresh() is False and len(parsed) == 4


@pytest.mark.parametrize("bad, where", [
    (["2026/12/08,49,1,1,1,10,10,10"], "line 50: column 時刻コード: 49 outside 1–48"),
    (["2026/12/08,1,1,1,1,10,10,abc"], "line 50: column エリアプライス中国(円/kWh): not a number"),
])
def test_a_bad_new_version_keeps_the_last_good_prices_and_is_reported_once(tmp_path, caplog, bad, where):
    f = write_csv(tmp_path / "spot.csv", day_rows(D7, 10.0))
    files = watcher(f)
    assert files.refresh() is True
    good = dict(files.merged("chugoku"))
    write_csv(f, day_rows(D7, 20.0) + bad)
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        assert files.refresh() is False
        assert files.refresh() is False  # the same version: not read again
        write_csv(f, day_rows(D7, 30.0) + bad)  # a new version with the same problem: not logged again
        assert files.refresh() is False
    assert files.merged("chugoku") == good  # the last good prices stay
    (error,) = errors(caplog)
    assert error.startswith(f"JEPX test: {f}: {where}") and error.endswith(f" {SUFFIX}"), error
    assert [r.name for r in caplog.records if r.levelno >= logging.ERROR] == [LOGGER.name]
    assert files.last_error is not None and files.last_error.startswith(f"{f}: {where}")
    # Another problem is logged; the fix clears the error and publishes the new prices.
    caplog.clear()
    f.write_bytes(b"")
    assert files.refresh() is False and errors(caplog) == [f"JEPX test: {f}: file is empty {SUFFIX}"]
    write_csv(f, day_rows(D7, 40.0))
    assert files.refresh() is True and files.last_error is None
    assert files.merged("chugoku")[slot(D7, 1)] == (41.0, "spot.csv")


def test_a_bad_file_of_a_folder_does_not_stop_the_others_and_stays_in_last_error(tmp_path, caplog):
    folder = tmp_path / "jepx"
    folder.mkdir()
    write_csv(folder / "a.csv", day_rows(D7, 10.0))
    write_csv(folder / "b.csv", ["2026/12/08,1,1,1,1,10,10,x"])
    files = watcher(folder)
    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        assert files.refresh() is True
        assert files.refresh() is False
    assert len(errors(caplog)) == 1 and "b.csv: line 2" in errors(caplog)[0]
    assert len(files.merged("chugoku")) == 48
    # It stays the latest problem while the file is bad, though it is logged only once.
    assert files.last_error is not None and "b.csv: line 2" in files.last_error


def test_a_removed_file_drops_its_prices(tmp_path, caplog):
    folder = tmp_path / "jepx"
    folder.mkdir()
    write_csv(folder / "spot_summary_2026.csv", day_rows(D7, 10.0) + day_rows(D8, 10.0))
    later = write_csv(folder / "spot_summary_2027.csv", day_rows(D8, 50.0))
    files = watcher(folder)
    files.refresh()
    later.unlink()
    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        assert files.refresh() is True
    assert f"{later} is gone" in caplog.text
    prices = files.merged("chugoku")
    assert len(prices) == 2 * 48 and {name for _, name in prices.values()} == {"spot_summary_2026.csv"}
    assert prices[slot(D8, 3)] == (13.0, "spot_summary_2026.csv")


def test_an_empty_folder_or_a_missing_path_is_an_error(tmp_path, caplog):
    folder = tmp_path / "jepx"
    folder.mkdir()
    (folder / "readme.txt").write_text("no CSV here")
    files = watcher(folder)
    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        assert files.refresh() is False
        assert files.refresh() is False
    assert files.last_error == f"{folder}: no JEPX CSV file" and files.merged("chugoku") == {}
    assert errors(caplog) == [f"JEPX test: {folder}: no JEPX CSV file {SUFFIX}"]
    missing = watcher(tmp_path / "nowhere.csv")
    assert missing.refresh() is False and missing.last_error == f"{tmp_path / 'nowhere.csv'}: no JEPX CSV file"
    # The last file of a folder goes away: its prices are dropped and that is an error.
    f = write_csv(folder / "spot.csv", day_rows(D7, 10.0))
    assert files.refresh() is True and files.last_error is None
    f.unlink()
    assert files.refresh() is True and files.merged("chugoku") == {} and "no JEPX CSV file" in files.last_error


def test_several_areas_from_the_same_files(tmp_path, caplog):
    f = write_csv(tmp_path / "spot.csv", day_rows(D7, 10.0))
    files = watcher(f, areas=["chugoku", "tokyo"])
    assert files.refresh() is True
    assert files.merged("chugoku")[slot(D7, 2)] == (12.0, "spot.csv")
    assert files.merged("tokyo")[slot(D7, 2)] == (112.0, "spot.csv")
    assert files.merged("kansai") == {}  # not asked for
    # A new version without the Tokyo column: Chugoku takes its new prices, Tokyo keeps its last good ones.
    header = HEADER.replace(",エリアプライス東京(円/kWh)", "")
    write_csv(f, [",".join(r.split(",")[:6] + r.split(",")[7:]) for r in day_rows(D7, 20.0)], header=header)
    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        assert files.refresh() is True
    assert files.merged("chugoku")[slot(D7, 2)] == (22.0, "spot.csv")
    assert files.merged("tokyo")[slot(D7, 2)] == (112.0, "spot.csv")
    assert len(errors(caplog)) == 1 and "column エリアプライス東京(円/kWh) is missing" in errors(caplog)[0]
    assert str(f) in files.last_error
