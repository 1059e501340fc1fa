"""SunSpec model files and register images (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices import codec
from devices.configfile import ConfigError
from devices.readings import Nature
from devices.sunspec import (
    SUNS_MARKER,
    ModelBlock,
    build_image,
    build_register_map,
    encode_model,
    load_model,
)

# Lengths and a few offsets straight from the official sunspec/models JSON.
OFFICIAL = {
    1: (66, {"Mn": 0, "Md": 16, "SN": 48, "DA": 64}),
    103: (50, {"W": 12, "W_SF": 13, "Hz": 14, "WH": 22, "WH_SF": 24, "St": 36, "Evt1": 38, "EvtVnd4": 48}),
    120: (26, {"WRtg": 1, "WRtg_SF": 2, "WHRtg": 17, "MaxChaRte": 21, "MaxDisChaRte_SF": 24}),
    124: (24, {"WChaMax": 0, "StorCtl_Mod": 3, "ChaState": 6, "OutWRte": 10, "InWRte": 11,
               "InOutWRte_RvrtTms": 13, "WChaMax_SF": 16, "InOutWRte_SF": 23}),
    713: (7, {"WHRtg": 0, "SoC": 2, "SoH": 3, "WH_SF": 5, "Pct_SF": 6}),
    802: (62, {"WHRtg": 1, "WChaRteMax": 2, "SoC": 9, "SoH": 11, "NCyc": 12, "CtrlHb": 17,
               "State": 20, "Evt1": 24, "W": 45, "SetInvState": 49, "SoC_SF": 54, "W_SF": 61}),
}


@pytest.mark.parametrize("model_id", sorted(OFFICIAL))
def test_model_files_match_official_layout(model_id):
    model = load_model(model_id)
    length, offsets = OFFICIAL[model_id]
    assert model.length == length
    for name, offset in offsets.items():
        assert model.point(name).offset == offset, name


def test_image_layout_and_values():
    img = build_image(
        [
            (1, {"Mn": "ShelterSim", "Md": "PV-3", "SN": "hall-01-pv"}),
            (103, {"W": 5234, "WH": 123_456_789, "WH_SF": 0, "Hz": 50.02, "W_SF": 0}),
            (120, {"WRtg": 10000}),
        ]
    )
    assert (img[40000], img[40001]) == SUNS_MARKER
    assert (img[40002], img[40003]) == (1, 66)
    m103 = 40002 + 2 + 66
    assert (img[m103], img[m103 + 1]) == (103, 50)
    data = m103 + 2
    assert img[data + 12] == 5234 and img[data + 13] == 0  # W, W_SF
    assert img[data + 14] == 5002 and img[data + 15] == 0xFFFE  # Hz 50.02 with auto SF -2
    assert (img[data + 22] << 16 | img[data + 23]) == 123_456_789
    assert img[data + 0] == 0xFFFF  # A not given: uint16 "not implemented"
    assert img[data + 4] == 0x8000  # A_SF: no user, not implemented
    m120 = data + 50
    assert (img[m120], img[m120 + 1]) == (120, 26)
    end = m120 + 2 + 26
    assert (img[end], img[end + 1]) == (0xFFFF, 0)
    assert max(img) == end + 1 and len(img) == end + 2 - 40000
    model1 = load_model(1)
    mn = [img[40004 + i] for i in range(16)]
    assert codec.decode_raw(model1.point("Mn"), mn) == "ShelterSim"


def test_image_other_base_and_negative_values():
    img = build_image([(1, {}), (802, {"W": -2500, "W_SF": 0, "SoC": 55.5, "SoC_SF": -1})], base=0)
    assert (img[0], img[1]) == SUNS_MARKER
    data = 2 + 2 + 66 + 2
    assert img[data + 45] == (-2500) & 0xFFFF
    assert img[data + 9] == 555


@pytest.mark.parametrize(
    "models, match",
    [
        ([(9999, {})], "no definition for SunSpec model 9999"),
        ([(103, {"Watts": 1})], "no point"),
        ([(103, {"W": 40000, "W_SF": 0})], "does not fit"),
        ([(103, {"St": -1})], "does not fit"),
    ],
)
def test_image_rejects_bad_input(models, match):
    with pytest.raises(ValueError, match=match):
        build_image(models)


def test_auto_scale_factor_keeps_large_values():
    regs = encode_model(load_model(103), {"W": 150_000})  # beyond int16 at SF 0
    assert regs[13] == 1  # W_SF = 1 -> 15000 * 10
    assert regs[12] == 15000


def test_concrete_map_bindings_follow_nature_and_precedence():
    blocks = [
        ModelBlock(1, 40004, 66, "m1"),
        ModelBlock(103, 40072, 50, "m103"),
        ModelBlock(120, 40124, 26, "m120"),
        ModelBlock(124, 40152, 24, "m124"),
        ModelBlock(802, 40178, 62, "m802"),
    ]
    battery = build_register_map(blocks, Nature.BATTERY)
    f = battery.by_field
    assert f["power_w"].name == "m802.W" and f["power_w"].address == 40178 + 45
    assert f["soc_pct"].name == "m802.SoC"  # 802 wins over 124 ChaState
    assert f["capacity_wh"].name == "m802.WHRtg"
    assert f["max_charge_w"].name == "m802.WChaRteMax"
    assert f["heartbeat"].name == "m802.CtrlHb" and battery.heartbeat.point == "m802.CtrlHb"
    assert battery.by_name["m802.W"].scale_factor == "m802.W_SF"
    assert "m1.Mn" not in battery.by_name  # identity is read once at discovery, not polled
    assert battery.sentinels
    pv = build_register_map(blocks[:3], Nature.PV)
    assert pv.by_field["power_w"].name == "m103.W"
    assert pv.by_field["rated_w"].name == "m120.WRtg"
    assert "capacity_wh" not in pv.by_field


def test_concrete_map_without_power_for_nature_fails():
    with pytest.raises(ValueError, match="power_w"):
        build_register_map([ModelBlock(120, 40004, 26, "m120")], Nature.PV)


BAD_MODELS = {
    "address instead of offset": ("points:\n  - {name: W, address: 3, type: int16}\n", "points[0] (W)"),
    "beyond length": ("points:\n  - {name: W, offset: 4, type: int32}\n", "beyond length"),
    "unknown key": ("points:\n  - {name: W, offset: 0, type: int16, colour: red}\n", "points.0.colour: unknown key"),
    "bad scale factor": (
        "points:\n  - {name: W, offset: 0, type: int16, scale_factor: X}\n  - {name: X, offset: 1, type: int16}\n",
        "is not a sunssf point",
    ),
    "overlap": ("points:\n  - {name: W, offset: 0, type: int32}\n  - {name: X, offset: 1, type: int16}\n", "overlap"),
    "wrong type": ("points:\n  - {name: W, offset: zero, type: int16}\n", "points.0.offset"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_files_name_file_and_field(tmp_path: Path, case):
    body, expected = BAD_MODELS[case]
    path = tmp_path / "model_64999.yaml"
    path.write_text("sunspec_model: 64999\nname: test\nlength: 4\n" + body)
    load_model.cache_clear()
    with pytest.raises(ConfigError) as info:
        load_model(64999, tmp_path)
    assert str(path) in str(info.value)
    assert expected.replace("points.0", "points[0]") in str(info.value)


def test_shorter_model_revision_drops_missing_points_and_their_users():
    blocks = [ModelBlock(802, 40004, 62, "m802"), ModelBlock(713, 40068, 6, "m713")]  # 713 draft: no Pct_SF
    m = build_register_map(blocks, Nature.BATTERY)
    assert "m713.Pct_SF" not in m.by_name and "m713.SoC" not in m.by_name
    assert "m713.WHAvail" in m.by_name and m.by_name["m713.WHAvail"].scale_factor == "m713.WH_SF"
