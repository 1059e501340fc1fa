"""The central JMA poll: a report whose handling fails does not lose the reports after it."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from ems.central.service import JmaParts
from ems.central.jma import JMA_ACTOR
from ems.central.jma.feed import AtomFeedReader
from ems.central.jma.trigger import WarningTrigger
from tests.central.conftest import RecordingLink, feed_fleet, make_env

SAMPLES = Path(__file__).resolve().parent / "jma" / "samples"


class FailingFirstPublish(RecordingLink):
    """A link whose first publish raises (a broker hiccup while the first report is handled)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def publish_raw(self, topic: str, payload, qos: int = 1) -> None:
        if self.failures == 0:
            self.failures += 1
            raise ConnectionError("broker went away")
        super().publish_raw(topic, payload, qos)


def test_a_report_whose_handling_fails_does_not_lose_the_next(tmp_path, fleet, caplog):
    env = make_env(tmp_path / "c", fleet, users={}, link_factory=lambda store: FailingFirstPublish())
    feed_fleet(env.store, fleet)
    folder = tmp_path / "jma"
    folder.mkdir()
    # Read in file name order: the Tottori warning (hall-01, -02, -07) first, then Sakaiminato (hall-06).
    shutil.copy(SAMPLES / "vpww53_tottori_issued.xml", folder / "a_tottori.xml")
    shutil.copy(SAMPLES / "vpww54_sakaiminato_storm_surge.xml", folder / "b_sakaiminato.xml")
    env.service.jma = JmaParts(AtomFeedReader(str(folder), tmp_path / "seen.sqlite"), WarningTrigger(fleet.sites),
                               poll_s=3600, source=str(folder))
    switched = asyncio.run(env.service.poll_jma_once())
    assert env.link.failures == 1
    sent = env.link.commands("mode")
    assert [e["site"] for e in sent] == ["hall-06"] and switched == 1
    assert sent[0]["issued_by"] == JMA_ACTOR and sent[0]["payload"]["mode"] == "disaster_reserve"
    status = env.service.jma_status
    assert status.reports_seen == 2 and status.switches == 1
    assert "a_tottori.xml" in (status.last_error or "") and "broker went away" in status.last_error
    assert "a_tottori.xml" in caplog.text and "failed" in caplog.text
    # Nothing is read twice; the next clean poll clears the problem.
    assert asyncio.run(env.service.poll_jma_once()) == 0
    assert env.service.jma_status.last_error is None
