"""The disaster panel shows the typhoon's forecast arrival per hall and the last JMA telegram of each kind
(real headless Chromium against the live service; JMA's delivered typhoon telegram of 2026-08-01)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from ems.central.jma.feed import AtomFeedReader
from ems.central.jma.trigger import WarningTrigger
from ems.central.service import JmaParts
from tests.browser import chromium, texts, wait
from tests.central.conftest import Api, LiveServer, feed_fleet, make_env

pytestmark = pytest.mark.slow
SAMPLES = Path(__file__).resolve().parent / "jma" / "samples"


def test_disaster_panel_shows_forecast_arrival(tmp_path, fleet):
    from selenium.webdriver.common.by import By

    # hall-06 placed on 南鳥島 (24.28N 153.98E), in the typhoon's path: the trigger forecasts its arrival.
    sites = [s.model_copy(update={"lat": 24.28, "lon": 153.98}) if s.id == "hall-06" else s for s in fleet.sites]
    env = make_env(tmp_path / "c", fleet)
    feed_fleet(env.store, fleet)
    folder = tmp_path / "jma"
    folder.mkdir()
    shutil.copy(SAMPLES / "real_vptw60_typhoon.xml", folder / "typhoon.xml")
    # JMA's sample VTSE41 with 鳥取県 (540, 境港 hall-06's tsunami area) made a 津波注意報: suggestions only.
    vtse = (SAMPLES / "jma_32-39_11_13_250206_VTSE41.xml").read_text(encoding="utf-8").replace(
        "<Area><Name>鳥取県</Name><Code>540</Code></Area>\n\t\t\t<Category>\n\t\t\t\t<Kind><Name>津波予報（若干の海面変動）</Name><Code>71</Code></Kind>",
        "<Area><Name>鳥取県</Name><Code>540</Code></Area>\n\t\t\t<Category>\n\t\t\t\t<Kind><Name>津波注意報</Name><Code>62</Code></Kind>")
    assert "<Name>津波注意報</Name><Code>62</Code></Kind>\n\t\t\t\t<LastKind><Name>津波予報（若干" in vtse
    (folder / "tsunami.xml").write_text(vtse, encoding="utf-8")
    trigger = WarningTrigger(sites)
    env.service.jma = JmaParts(AtomFeedReader(str(folder), tmp_path / "seen.sqlite"), trigger, poll_s=3600,
                               source=str(folder))
    env.service.jma_status.enabled = True
    assert asyncio.run(env.service.poll_jma_once()) == 1  # the typhoon switched hall-06; the advisory did not
    sugs = {s.site: s for s in env.service.open_suggestions()}
    assert set(sugs) == {"hall-03", "hall-04", "hall-06"}  # the coastal halls of 鳥取県 (540)
    sug = sugs["hall-06"]
    assert sug.kind == "disaster" and "津波注意報" in sug.reason
    arrival = trigger.typhoon_arrivals()["hall-06"]["arrival"]
    api = Api(env)
    try:
        with LiveServer(api.app) as server, chromium(60) as browser:
            browser.get(server.url + "/")
            wait(browser, lambda d: d.find_element(By.ID, "login-username").is_displayed(), "login form")
            browser.find_element(By.ID, "login-username").send_keys("mika")
            browser.find_element(By.ID, "login-password").send_keys(env.passwords["mika"])
            browser.find_element(By.ID, "login-submit").click()
            wait(browser, lambda d: d.find_element(By.ID, "nav").is_displayed(), "navigation after login")
            browser.find_element(By.CSS_SELECTOR, 'a[data-nav="disaster"]').click()
            wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#jma-forecast tr[data-site="hall-06"]'),
                 "the forecast row of hall-06")
            row = texts(browser, '#jma-forecast tr[data-site="hall-06"]')[0]
            # The arrival in JST as the page shows it, e.g. 2026/08/02 00:30.
            from datetime import datetime
            from zoneinfo import ZoneInfo

            local = datetime.fromisoformat(arrival).astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y/%m/%d %H:%M")
            assert "台風13号 DOLPHIN" in row and local in row and "暴風警戒域" in row, row
            kinds = texts(browser, "#jma-forecast li[data-kind]", "data-kind")
            assert sorted(kinds) == ["tsunami", "typhoon"]
            tsunami = texts(browser, '#jma-forecast li[data-kind="tsunami"]')[0]
            assert "上道公民館 Agarimichi: 災害モードを提案" in tsunami, tsunami
            assert "上道公民館 Agarimichi: 災害モードに切替" in texts(browser, '#jma-forecast li[data-kind="typhoon"]')[0]
            banner = texts(browser, f'#banners [data-suggestion="{sug.id}"]')[0]
            assert "気象庁: 災害モードの検討" in banner and "津波注意報" in banner and "警報解除" not in banner, banner
            browser.save_screenshot(str(tmp_path / "jma-page.png"))
            panel = browser.find_element(By.ID, "jma-forecast")
            browser.execute_script("arguments[0].scrollIntoView()", panel)
            panel.screenshot(str(tmp_path / "jma-panel.png"))
    finally:
        api.close()
