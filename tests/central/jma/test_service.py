"""One poll end to end: a folder of sample files -> reader -> trigger -> handler."""

import shutil
from pathlib import Path

from ems.config import load_fleet
from ems.central.jma.feed import AtomFeedReader
from ems.central.jma.service import poll_once
from ems.central.jma.trigger import SuggestReturn, SwitchToDisaster, WarningTrigger

from .helpers import SAMPLES

ROOT = Path(__file__).resolve().parents[3]


def setup(tmp_path, *names):
    folder = tmp_path / "jma"
    folder.mkdir(exist_ok=True)
    for n in names:
        shutil.copy(SAMPLES / n, folder / n)
    sites = load_fleet(ROOT / "config" / "fleet.yaml").sites
    return folder, AtomFeedReader(str(folder), tmp_path / "seen.sqlite"), WarningTrigger(sites)


async def test_poll_once_hands_reports_and_actions_over_in_order(tmp_path):
    folder, reader, trigger = setup(tmp_path, "vpww53_tottori_issued.xml")
    got = []

    async def handle(report, actions):
        got.append((report.entry_id, actions))

    assert await poll_once(reader, trigger, handle) == 1
    [(entry, actions)] = got
    assert {a.site_id for a in actions if isinstance(a, SwitchToDisaster)} == {"hall-01", "hall-02", "hall-07"}
    shutil.copy(SAMPLES / "vpww53_tottori_lifted.xml", folder / "z_lifted.xml")
    assert await poll_once(reader, trigger, lambda r, a: got.append((r.entry_id, a))) == 1
    assert all(isinstance(a, SuggestReturn) for a in got[1][1]) and len(got[1][1]) == 3
    assert await poll_once(reader, trigger, handle) == 0


async def test_a_failing_handler_does_not_stop_the_loop(tmp_path, caplog):
    _, reader, trigger = setup(tmp_path, "vpww53_tottori_issued.xml", "vpww54_sakaiminato_storm_surge.xml")
    calls = []

    def handle(report, actions):
        calls.append(report.format)
        raise RuntimeError("broker down")

    assert await poll_once(reader, trigger, handle) == 2
    assert sorted(calls) == ["vpww53", "vpww54"] and "broker down" in caplog.text


async def test_a_failing_report_is_logged_with_its_entry_and_the_next_is_still_handled(tmp_path, caplog):
    _, reader, trigger = setup(tmp_path, "vpww53_tottori_issued.xml", "vpww54_sakaiminato_storm_surge.xml")
    real_evaluate = trigger.evaluate
    handled, errors = [], []

    def evaluate(report):  # the first report breaks the trigger itself
        if report.format == "vpww53":
            raise ValueError("odd area")
        return real_evaluate(report)

    trigger.evaluate = evaluate
    assert await poll_once(reader, trigger, lambda r, a: handled.append((r.format, a)),
                           on_error=lambda r, exc: errors.append((r.entry_id, str(exc)))) == 2
    assert [(f, {x.site_id for x in a}) for f, a in handled] == [("vpww54", {"hall-06"})]
    [(entry, message)] = errors
    assert "vpww53_tottori_issued.xml" in entry and message == "odd area"
    assert entry in caplog.text
