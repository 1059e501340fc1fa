"""JMA disaster-information XML: parse warning and typhoon reports, read the Atom feed, trigger disaster mode.

* :mod:`ems.central.jma.parser` — ``parse_report(xml) -> WarningReport`` for the present
  warning formats (VPWW53/VPWW54), the 2026 level-based format and typhoon
  analysis/forecast reports (VPTW6x).
* :mod:`ems.central.jma.feed` — ``AtomFeedReader``: the "extra" Atom feed from a URL or
  a folder, never processing an entry twice.
* :mod:`ems.central.jma.trigger` — ``WarningTrigger``: which halls go to disaster_reserve.
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
