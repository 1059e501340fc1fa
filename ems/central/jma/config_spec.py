"""The ``jma:`` settings of central.yaml for each trigger, validated (errors name the field).

Kept here, next to the triggers they configure; :mod:`ems.central.config` includes them in its JmaSpec.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from devices.configfile import StrictModel

Mode = Literal["switch", "suggest"]


class TyphoonTrigger(StrictModel):
    """Typhoon forecasts: act when a hall lies in the storm-warning area within ``lead_h`` [h]."""

    lead_h: float = Field(default=24.0, gt=0, le=120)
    action: Mode = "switch"


class EarthquakeTrigger(StrictModel):
    """Seismic intensity: act when ``min_intensity`` (1…7, 5弱/5強/6弱/6強 or 5-/5+/6-/6+) or more is observed
    in a hall's city or seismic area; optionally every hall within ``radius_km`` [km] of the epicentre when
    the magnitude is ``min_magnitude`` or more.  ``hold_h`` [h]: how long an earthquake keeps a hall from a
    "may return" suggestion after its warnings are lifted.  ``enabled: false`` turns earthquakes off."""

    enabled: bool = True
    min_intensity: str = "5弱"
    action: Mode = "switch"
    radius_km: float | None = Field(default=None, gt=0, le=1000)
    min_magnitude: float | None = Field(default=None, ge=0, le=10)
    hold_h: float = Field(default=24.0, ge=0, le=720)

    @field_validator("min_intensity", mode="before")
    @classmethod
    def _intensity(cls, value: object) -> str:
        from ems.central.jma.seismic import checked_intensity

        checked_intensity(value)
        return str(value)

    @model_validator(mode="after")
    def _radius(self) -> "EarthquakeTrigger":
        if (self.radius_km is None) != (self.min_magnitude is None):
            raise ValueError("radius_km and min_magnitude go together: give both or neither")
        return self


class TsunamiTrigger(StrictModel):
    """Tsunami forecasts for a hall's ``tsunami_area_code``: ``grades`` act with ``action``; a lower grade
    of 津波注意報 or more gets ``lower_action`` (suggest, or none)."""

    grades: list[Literal["advisory", "warning", "major_warning"]] = Field(
        default_factory=lambda: ["warning", "major_warning"], min_length=1)
    action: Mode = "switch"
    lower_action: Literal["suggest", "none"] = "suggest"


def trigger_kwargs(jma: object) -> dict:
    """WarningTrigger keyword arguments from a validated ``jma:`` section (ems.central.config.JmaSpec)."""
    quake: EarthquakeTrigger = jma.earthquake  # type: ignore[attr-defined]
    return dict(kinds=set(jma.kinds), min_level=jma.min_level,  # type: ignore[attr-defined]
                warning_action=jma.warning_action,  # type: ignore[attr-defined]
                typhoon_lead_h=jma.typhoon.lead_h, typhoon_action=jma.typhoon.action,  # type: ignore[attr-defined]
                quake_min_intensity=quake.min_intensity if quake.enabled else None, quake_action=quake.action,
                quake_radius_km=quake.radius_km, quake_min_magnitude=quake.min_magnitude, quake_hold_h=quake.hold_h,
                tsunami_grades=list(jma.tsunami.grades), tsunami_action=jma.tsunami.action,  # type: ignore[attr-defined]
                tsunami_lower_action=jma.tsunami.lower_action)  # type: ignore[attr-defined]
