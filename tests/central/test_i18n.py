"""The dashboard's message catalogues: every key in both languages, every key the pages use exists,
placeholders match, and the Japanese catalogue is Japanese."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ems.central.roles import Role

STATIC = Path(__file__).resolve().parents[2] / "ems" / "central" / "static"
CATS = {lang: json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8")) for lang in ("ja", "en")}
SOURCES = ("app.js", "public.js", "charts.js", "i18n.js", "index.html", "public.html")
#: Every alarm code a gateway or the central service raises: each has a title and a help text in both languages.
ALARM_CODES = ["stale_data", "implausible_data", "missing_data", "device_fault", "safe_mode", "grid_lost",
               "corrupt_state_file", "safety_rule_unmet", "setpoint_refused", "battery_not_following",
               "reserve_short_disaster", "reserve_short_vpp", "telemetry_dropped", "store_recovered",
               "telemetry_store_recovered", "command_store_recovered", "command_store_failed"]


def test_alarm_codes_list_every_code_the_gateway_and_central_raise():
    from ems.central import sqlite_recovery
    from ems.gateway import alarms, link
    from telemetry import edge_mqtt, outbox
    defined = {v for k, v in vars(alarms).items() if k.isupper() and isinstance(v, str)}
    defined |= {edge_mqtt.COMMAND_STORE_RECOVERED, edge_mqtt.COMMAND_STORE_FAILED, outbox.STORE_RECOVERED,
                link.TELEMETRY_DROPPED, sqlite_recovery.STORE_RECOVERED}
    assert sorted(defined - set(ALARM_CODES)) == []


#: Keys built at run time from a prefix and a value the API sends: every such value must be translated.
DYNAMIC = {
    "mode.": ["vpp", "disaster_reserve", "islanded", "manual", "safe", "unknown"],
    "status.": ["sent", "ok", "refused", "failed", "timeout"],
    "severity.": ["info", "warning", "critical"],
    "role.": [r.value for r in Role],
    "action.": ["login", "login_failed", "logout", "mode_switch", "dispatch", "alarm_ack", "jma_warning",
                "jma_cancelled", "mode", "ack_timeout", "command_resent"],
    "public.power.": ["grid", "battery", "none", "unknown"],
    "lang.switch_to_": ["ja", "en"],
    "range.": ["1h", "6h", "24h", "7d", "30d"],
    "alarm.": ALARM_CODES,
    "alarm_help.": ALARM_CODES,
}


def used_keys() -> set[str]:
    keys = set()
    for name in SOURCES:
        text = (STATIC / name).read_text(encoding="utf-8")
        keys |= set(re.findall(r'\bt\(\s*"([a-z_0-9]+\.[a-z_0-9.]+)"\s*[,)]', text))  # not t("prefix." + x)
        keys |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', text))
        # keys named in lists and maps (columns, tabs, error codes): "prefix.name" string literals
        keys |= {k for k in re.findall(r'"([a-z]+\.[a-z_0-9]+(?:\.[a-z_0-9]+)?)"(?!\s*\+)', text)
                 if k.split(".")[0] in {p.split(".")[0] for p in CATS["ja"]}}
    return keys


def placeholders(s: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", s))


def test_both_catalogues_have_the_same_keys_and_placeholders():
    ja, en = CATS["ja"], CATS["en"]
    assert sorted(set(ja) - set(en)) == [] and sorted(set(en) - set(ja)) == []
    assert [k for k in ja if not ja[k].strip() or not en[k].strip()] == []
    assert [k for k in ja if placeholders(ja[k]) != placeholders(en[k])] == []


def test_every_key_the_pages_use_exists():
    missing = sorted(k for k in used_keys() if k not in CATS["ja"])
    assert missing == [], f"keys used in static/ but missing from the catalogues: {missing}"
    for prefix, values in DYNAMIC.items():
        assert [prefix + v for v in values if prefix + v not in CATS["ja"]] == []


def test_japanese_catalogue_is_japanese():
    jp = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
    english_only = [k for k, v in CATS["ja"].items() if not jp.search(v)]
    # Only names that are the same in both languages (units, "API", "VPP", "OK", the language names)
    # may stay without Japanese letters.
    assert len(english_only) <= 12, english_only


@pytest.mark.parametrize("name", ["app.js", "public.js"])
def test_no_user_visible_english_literals_left_in_the_scripts(name):
    """A crude guard: string literals of two or more English words in h(...) calls are untranslated text."""
    text = (STATIC / name).read_text(encoding="utf-8")
    suspects = re.findall(r'h\("[a-z0-9]+", \{[^}]*\}, "([A-Z][a-z]+ [a-z]+[^"]*)"\)', text)
    assert suspects == []
