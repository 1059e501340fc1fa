"""The dashboard in real headless Chromium (Debian chromium + chromium-driver), against the live service,
a real Mosquitto and fake halls: municipal staff switch every hall to disaster mode and watch the acks
arrive; a viewer finds no switch and the API refuses him; the public page shows hours left.

Screenshots go to ``var/screenshots/`` of the checkout (git-ignored; ``EMS_SCREENSHOTS=<dir>`` puts them
elsewhere): one per view in Japanese, named ``ja-<view>.png``."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from telemetry.central_mqtt import CentralMqtt
from tests.central.conftest import Api, LiveServer, make_env, mqtt_settings
from tests.browser import chromium, texts, wait
from tests.servers import wait_until

pytestmark = pytest.mark.slow

TIMEOUT_S = 60  # generous: a loaded 2-core CI machine runs Chromium, Mosquitto and 14 fake halls


@pytest.fixture(scope="module")
def browser():
    with chromium(TIMEOUT_S) as driver:
        yield driver


@pytest.fixture(scope="module")
def live(broker, halls, fleet, tmp_path_factory):
    env = make_env(tmp_path_factory.mktemp("central"), fleet,
                   link_factory=lambda store: CentralMqtt(mqtt_settings(broker, "central"), store, issued_by="central",
                                                          client_id="central-browser"))
    api = Api(env)
    with LiveServer(api.app) as server:
        assert env.link.wait_connected(30)
        wait_until(lambda: all(r["online"] and r["mode"] == "vpp" for r in env.service.fleet_rows()), 30,
                   what="every hall's state")
        yield env, server


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shots():
    folder = Path(os.environ.get("EMS_SCREENSHOTS") or ROOT / "var" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def acks_now(driver) -> dict:
    return dict(zip(texts(driver, "#disaster-op tr[data-site]", "data-site"),
                    texts(driver, "#disaster-op tr[data-site] .ack-status .status", "data-status")))


def login(driver, server, env, user):
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(server.url + "/")
    wait(driver, lambda d: d.find_element(By.ID, "login-username").is_displayed(), "login form")
    driver.find_element(By.ID, "login-username").send_keys(user)
    driver.find_element(By.ID, "login-password").send_keys(env.passwords[user])
    driver.find_element(By.ID, "login-submit").click()
    wait(driver, lambda d: d.find_element(By.ID, "nav").is_displayed(), "navigation after login")


def test_municipal_staff_switch_every_hall_and_see_every_ack(browser, live, halls, shots):
    from selenium.webdriver.common.by import By

    env, server = live
    login(browser, server, env, "mika")
    link = browser.find_element(By.CSS_SELECTOR, 'a[data-nav="disaster"]')
    assert link.is_displayed()
    link.click()
    wait(browser, lambda d: d.find_element(By.ID, "disaster-submit").is_displayed(), "disaster panel")
    # Without a reason and confirmation the server refuses and the form names the field.
    browser.find_element(By.ID, "disaster-submit").click()
    browser.find_element(By.ID, "modal-confirm").click()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, '.field-error[data-for="reason"]').text, "reason error")
    assert all(not h.commands for h in halls.values())
    browser.find_element(By.ID, "disaster-reason").send_keys("台風10号接近 typhoon No.10 approaching")
    browser.find_element(By.ID, "disaster-confirm").click()
    browser.find_element(By.ID, "disaster-submit").click()
    dialog = browser.find_element(By.CSS_SELECTOR, ".modal")
    assert "全 14 避難所" in dialog.text  # the browser prefers Japanese (--lang=ja-JP)
    browser.save_screenshot(str(shots / "disaster-confirm.png"))
    browser.find_element(By.ID, "modal-confirm").click()

    def acks(d):
        status = acks_now(d)
        return status if len(status) == 14 and set(status.values()) == {"ok"} else None

    try:
        status = wait(browser, acks, "an ok ack from every hall in the page")
    except Exception:
        browser.save_screenshot(str(shots / "disaster-acks-failed.png"))
        op = env.service.operations.recent(1)
        raise AssertionError(f"page shows {acks_now(browser)}; service has "
                             f"{[(c.site, c.status) for c in op[0].commands] if op else 'no operation'}") from None
    assert set(status) == set(halls)
    assert all(h.mode == "disaster_reserve" for h in halls.values())
    # The live table shows the new mode and the hours of power of every hall.
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#disaster-live .mode.disaster_reserve")) == 14,
         "every hall shown in disaster mode")
    row = texts(browser, '#disaster-live tr[data-site="hall-01"]')[0]
    assert "13.0" in row and "湖山公民館" in row
    browser.save_screenshot(str(shots / "disaster-acks.png"))
    recs = env.service.audit.records(action="mode_switch", limit=100)
    assert {r.target for r in recs} == set(halls) and {r.actor for r in recs} == {"mika"}


def test_viewer_finds_no_switch_and_is_refused_by_the_api(browser, live, shots):
    from selenium.webdriver.common.by import By

    env, server = live
    before = len(env.service.audit.records(action="mode_switch", limit=1000))
    login(browser, server, env, "vera")
    assert not browser.find_element(By.CSS_SELECTOR, 'a[data-nav="disaster"]').is_displayed()
    assert not browser.find_element(By.CSS_SELECTOR, 'a[data-nav="vpp"]').is_displayed()
    wait(browser, lambda d: len(texts(d, "#fleet-body tr")) == 14, "fleet table")
    browser.save_screenshot(str(shots / "viewer-fleet.png"))
    browser.get(server.url + "/#/disaster")
    wait(browser, lambda d: d.find_elements(By.ID, "disaster-live"), "disaster view (read-only)")
    assert browser.find_elements(By.ID, "disaster-submit") == []
    assert browser.find_elements(By.ID, "return-submit") == []
    # Even a hand-made request from the viewer's logged-in page is refused.
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/disaster/switch', {method: 'POST', credentials: 'same-origin',
              headers: {'Content-Type': 'application/json', 'X-CSRF-Token': S.csrf},
              body: JSON.stringify({scope: 'all', reason: 'viewer tries', confirm: true})})
          .then(r => done(r.status), e => done(String(e)));""")
    assert status == 403
    assert len(env.service.audit.records(action="mode_switch", limit=1000)) == before


def test_public_page_shows_hours_left_without_login(browser, live, halls, shots):
    from selenium.webdriver.common.by import By

    env, server = live
    browser.delete_all_cookies()
    browser.get(server.url + "/public")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".shelter .hours-big")) == 14, "14 shelters with hours")
    card = browser.find_element(By.CSS_SELECTOR, '.shelter[data-name="湖山公民館 Koyama"]')
    assert "鳥取市" in card.text
    hours = card.find_element(By.CSS_SELECTOR, ".hours-big").text
    expected = env.service.fleet_rows()[0]["hours_left"]
    assert hours == f"{expected:.1f} 時間"
    assert "電気あり" in card.text  # grid is up in the fake halls
    assert "hall-01" not in browser.page_source and "typhoon" not in browser.page_source
    browser.save_screenshot(str(shots / "public.png"))


def test_fleet_table_and_hall_detail_show_the_plans_inputs(browser, live, halls, shots):
    env, server = live
    hall = halls["hall-01"]
    state = hall.state()
    state["inputs"] = {"price_source": "central: spot_2026.csv (published 2026-12-07T05:00:00+00:00)",
                       "weather_source": "central (drill: typhoon, published 2026-12-07T05:00:00+00:00)",
                       "last_central_at": "2026-12-07T05:00:10+00:00"}
    hall.edge.publish_state(state)  # through the real broker, as the gateway does
    wait_until(lambda: (env.service.fleet_rows()[0]["inputs"] or {}).get("price_source"), 30, what="inputs in the service")
    login(browser, server, env, "vera")
    row = '#fleet-body tr[data-site="hall-01"]'
    wait(browser, lambda d: "spot_2026.csv" in "".join(texts(d, row)), "the price source in the fleet table")
    text = texts(browser, row)[0]
    assert "価格: central: spot_2026.csv (published 2026-12-07T05:00:00+00:00)" in text
    assert "中央との最終通信: " in text and "14:00:10" in text and "JST" in text  # 05:00:10 UTC in Asia/Tokyo
    other = texts(browser, '#fleet-body tr[data-site="hall-02"] td.inputs')[0]
    assert "価格: —" in other and "中央との最終通信: —" in other  # a hall that reports no inputs
    browser.save_screenshot(str(shots / "fleet-inputs.png"))
    browser.get(server.url + "/#/site/hall-01")
    wait(browser, lambda d: "drill: typhoon" in "".join(texts(d, "#site-inputs")), "inputs in the hall detail")
    detail = texts(browser, "#site-inputs")[0]
    assert "価格: central: spot_2026.csv" in detail and "天気: central (drill: typhoon" in detail
    assert "中央との最終通信: " in detail and "14:00:10" in detail
    browser.save_screenshot(str(shots / "hall-inputs.png"))


JP = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"


def axe_problems(driver, what: str) -> list[str]:
    """Serious and critical accessibility violations axe-core (vendored, tests only) finds in the page."""
    if not driver.execute_script("return !!window.axe"):
        driver.execute_script(AXE.read_text(encoding="utf-8"))
    # The dashboard re-renders its tables every 2.5 s: hold the polling while axe walks the page (a slow,
    # loaded machine would otherwise have nodes replaced under it).
    result = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const dashboard = typeof stopPolling === 'function' && typeof S === 'object' && S.me;
        if (dashboard) stopPolling();
        axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v =>
            [v.impact, v.id, v.help, v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')]),
          e => [['error', 'axe', String(e), '']])
          .then(out => { if (dashboard) startPolling(); done(out); });""")
    return [f"{what}: {impact} {rule}: {help_} ({nodes})" for impact, rule, help_, nodes in result
            if impact in ("serious", "critical", "error")]


def japanese_share(text: str) -> float:
    """Share of Japanese among the letters of ``text`` (digits, punctuation and spaces not counted)."""
    letters = [c for c in text if c.isalpha()]
    return sum(bool(JP.match(c)) for c in letters) / max(1, len(letters))


def labels(driver) -> str:
    """The interface's own words in the view (headings, column heads, buttons, labels, tabs), not the data."""
    return " ".join(texts(driver, "#view h1, #view h2, #view h3, #view th, #view button, #view label, "
                                  "#view .legend, #view .tile .k, #nav a"))


def test_main_views_in_japanese_then_english(browser, live, halls, shots):
    """An admin walks every view in Japanese (a screenshot of each), sees Japanese dates, a translated
    error, switches to English (remembered after a reload) and back."""
    from datetime import datetime, timedelta, timezone

    from selenium.webdriver.common.by import By

    env, server = live
    # hall-01 publishes a plan with the prices it used, as a gateway does; its states go on as before.
    hall = halls["hall-01"]
    slot0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    hall.edge.publish_plan({"slots": [{"time": (slot0 + timedelta(minutes=30 * k)).isoformat(), "charge_w": 500.0,
                                       "discharge_w": 0.0, "soc_pct": 60.0, "price_jpy_per_kwh": 24.5,
                                       "price_sell_jpy_per_kwh": 9.5} for k in range(6)]})
    # hall-01's battery data are stale: the alarm's meaning is shown in the reader's language, the gateway's
    # English detail below it.
    stale = {"id": "a-stale", "site": "hall-01", "severity": "warning", "code": "stale_data",
             "message": "battery data: last reading 42 s old", "raised_at": slot0.isoformat(), "cleared_at": None}
    for _ in range(2):  # two states a moment apart: measured energy under a priced slot
        hall.edge.publish_state({**hall.state(), "alarms": [stale]})
        time.sleep(1.2)
    browser.set_window_size(1280, 800)
    login(browser, server, env, "ada")
    assert browser.find_element(By.ID, "lang-switch").text == "English"
    assert browser.execute_script("return document.documentElement.lang") == "ja"
    # Fleet: map with every hall, spread of hours, fleet charts, table; JST clock in Japanese style.
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#hall-map a.map-hall")) == 14, "14 halls on the map")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-fleet-power canvas"), "fleet power chart (uPlot)")
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} JST", browser.find_element(By.ID, "clock").text)
    assert sum(int(b) for b in texts(browser, "#hours-spread .spread-row b")) == 14
    views = {}
    views["fleet"] = labels(browser)
    browser.save_screenshot(str(shots / "ja-fleet.png"))
    problems = axe_problems(browser, "fleet")
    # A hall on the map opens its detail page.
    browser.find_element(By.CSS_SELECTOR, '#hall-map a.map-hall[data-site="hall-01"]').click()
    wait(browser, lambda d: "湖山公民館" in d.find_element(By.ID, "site-head").text, "hall detail from the map")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".chart h3")) == 4, "hall charts")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-soc canvas"), "the SoC chart drawn")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-price canvas"), "the price chart drawn")
    wait(browser, lambda d: "円" in d.find_element(By.CSS_SELECTOR, '#site-money .chip[data-period="day"]').text,
         "the hall's earnings today")
    views["site"] = labels(browser)
    browser.save_screenshot(str(shots / "ja-site.png"))
    problems += axe_problems(browser, "site")
    for name, ready in (("money", '#money-halls-table tr[data-site="hall-01"]'), ("alarms", "#view .panel h1"),
                        ("disaster", "#disaster-live tr td.outlook"), ("audit", "#audit-body tr"),
                        ("vpp", "#vpp-form")):
        browser.execute_script("location.hash = arguments[0]", "#/" + name)
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ready), f"the {name} view")
        views[name] = labels(browser)
        browser.save_screenshot(str(shots / f"ja-{name}.png"))
        problems += axe_problems(browser, name)
        if name == "alarms":
            wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#alarm-table tr[data-alarm*="a-stale"]'),
                 "hall-01's alarm")
            cell = texts(browser, '#alarm-table tr[data-alarm*="a-stale"] td:nth-child(4)')[0]
            assert "データが更新されていません" in cell and "42 s old" in cell, cell
        if name == "money":
            money = texts(browser, '#money-halls-table tr[data-site="hall-01"]')[0]
            priced_share = texts(browser, "#money-fleet-table tbody tr td:last-child")[-1]
    # hall-01's energy is priced (1 hall of 14: about 7 % of the fleet's measured time), yen as 円
    assert "湖山公民館" in money and "円" in money and "-0 円" not in money, money
    assert re.fullmatch(r"\d+ %", priced_share) and priced_share != "0 %", priced_share
    # A time typed the US way is refused by the page in Japanese, never sent as garbage.
    start = browser.find_element(By.ID, "vpp-start")
    start.clear()
    start.send_keys("12/07/2026 13:30")
    browser.find_element(By.ID, "vpp-reason").send_keys("テスト")
    browser.find_element(By.ID, "vpp-preview-btn").click()
    err = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, '.field-error[data-for="start"]').text, "start error")
    assert "2026/12/07 13:30" in err and JP.search(err)
    browser.save_screenshot(str(shots / "ja-vpp-error.png"))
    for name, text in views.items():
        assert japanese_share(text) > 0.5, (name, japanese_share(text), text[:300])
    assert problems == [], "\n".join(problems)
    # An API error (unknown hall) is a translated message, not a raw status.
    browser.execute_script("location.hash = '#/site/no-such-hall'")
    wait(browser, lambda d: "no-such-hall" in d.find_element(By.ID, "hist-note").text, "history error")
    assert "見つかりません" in browser.find_element(By.ID, "hist-note").text
    # English on request, remembered with the account (not only in this browser); then back to Japanese.
    browser.find_element(By.ID, "lang-switch").click()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'a[data-nav="fleet"]').text == "Fleet", "English nav")
    wait(browser, lambda d: env.service.security.users.language("ada") == "en", "language kept with the account")
    browser.execute_script("localStorage.clear()")  # another browser: the account remembers
    browser.refresh()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'a[data-nav="alarms"]').text.startswith("Alarms"), "English after reload")
    assert browser.find_element(By.ID, "lang-switch").text == "日本語"
    browser.find_element(By.ID, "lang-switch").click()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'a[data-nav="fleet"]').text == "全体", "Japanese again")
    wait(browser, lambda d: env.service.security.users.language("ada") == "ja", "Japanese kept with the account")


def test_public_page_at_phone_width(browser, live, shots):
    from selenium.webdriver.common.by import By

    env, server = live
    browser.set_window_size(390, 844)
    try:
        browser.get(server.url + "/public")
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".shelter .hours-big")) == 14, "14 shelters")
        width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"page wider than the phone: {width}"
        assert japanese_share(browser.find_element(By.TAG_NAME, "body").text) > 0.5
        browser.save_screenshot(str(shots / "ja-public-phone.png"))
        problems = axe_problems(browser, "public (390 px)")
        browser.delete_all_cookies()
        browser.set_window_size(1280, 800)
        browser.get(server.url + "/")
        wait(browser, lambda d: d.find_element(By.ID, "login-username").is_displayed(), "login form")
        browser.save_screenshot(str(shots / "ja-login.png"))
        problems += axe_problems(browser, "login")
        assert problems == [], "\n".join(problems)
    finally:
        browser.set_window_size(1440, 1200)
