"""JMA disaster-information XML: parse the telegrams, read the Atom feeds, trigger disaster mode.

* :mod:`ems.central.jma.parser` — ``parse_report(xml) -> WarningReport`` for weather warnings (VPWW53/54
  and the 2026 per-hazard 気象警報・注意報（Ｒ０６）（…） telegrams VPWW55-61), typhoon analyses and
  forecasts (VPTW6x), and through :mod:`ems.central.jma.seismic` seismic intensities (VXSE51/53) and
  tsunami forecasts (VTSE41).  Other telegrams (地方海上警報, 集約通報, …) are "unsupported", not malformed.
* :mod:`ems.central.jma.feed` — ``AtomFeedReader``: a feed from a URL or a folder, never processing an
  entry twice; ``FeedReaders`` for several (extra + eqvol).
* :mod:`ems.central.jma.trigger` — ``WarningTrigger``: which halls go to disaster_reserve (or are
  suggested to), per hall and per hazard; :mod:`ems.central.jma.geo` the typhoon circles;
  :mod:`ems.central.jma.config_spec` its central.yaml settings.
"""

from ems.central.jma.models import (
    AreaWarning,
    JmaParseError,
    TyphoonInfo,
    TyphoonPosition,
    UnsupportedReportError,
    WarningKind,
    WarningReport,
)

#: The actor name mode switches caused by warnings are audited under.
JMA_ACTOR = "jma-warning-service"

__all__ = ["AreaWarning", "JmaParseError", "TyphoonInfo", "TyphoonPosition", "UnsupportedReportError",
           "WarningKind", "WarningReport", "JMA_ACTOR"]
