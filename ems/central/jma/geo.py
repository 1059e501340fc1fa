"""Earth geometry for the JMA triggers: distances, JMA's direction names, typhoon circles.

Spherical earth (radius 6371 km): good to well under 1 % at the few hundred km that matter here.
"""

from __future__ import annotations

import math

from ems.central.jma.models import Circle

EARTH_RADIUS_KM = 6371.0

#: JMA's 8/16-point direction names (８方位漢字, １６方位漢字) → bearing [° from north, clockwise].
BEARINGS = {
    "北": 0.0, "北北東": 22.5, "北東": 45.0, "東北東": 67.5, "東": 90.0, "東南東": 112.5, "南東": 135.0,
    "南南東": 157.5, "南": 180.0, "南南西": 202.5, "南西": 225.0, "西南西": 247.5, "西": 270.0,
    "西北西": 292.5, "北西": 315.0, "北北西": 337.5,
}


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance [km] between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def destination(lat: float, lon: float, bearing_deg: float, dist_km: float) -> tuple[float, float]:
    """The point ``dist_km`` [km] from (lat, lon) [°] toward ``bearing_deg`` [° from north]."""
    d = dist_km / EARTH_RADIUS_KM
    b = math.radians(bearing_deg)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


def circle_from_axes(lat: float, lon: float, axes: list[tuple[str, float]]) -> Circle | None:
    """The circle JMA describes by radii per direction around the centre (lat, lon) [°].

    ``axes``: (direction name or "" for 全域, radius [km]).  One radius for 全域: a plain circle.  Two
    opposite directions ("北東" 500, "南西" 330): the circle through both ends, radius (500 + 330) / 2,
    centre moved (500 - 330) / 2 toward 北東.  Anything else (JMA does not send it, but a telegram may
    surprise us): a plain circle of the largest radius, which errs on the side of switching.
    """
    if not axes:
        return None
    if len(axes) == 2 and all(d in BEARINGS for d, _ in axes):
        (d1, r1), (d2, r2) = axes
        if abs((BEARINGS[d1] - BEARINGS[d2]) % 360.0 - 180.0) < 1e-6:
            if r1 < r2:
                d1, r1, d2, r2 = d2, r2, d1, r1
            c_lat, c_lon = destination(lat, lon, BEARINGS[d1], (r1 - r2) / 2)
            return Circle(c_lat, c_lon, (r1 + r2) / 2)
    return Circle(lat, lon, max(r for _, r in axes))


def inside(circle: Circle, lat: float, lon: float) -> bool:
    """True when (lat, lon) [°] is inside or on ``circle``."""
    return distance_km(circle.lat, circle.lon, lat, lon) <= circle.radius_km


def interpolate(a: Circle, b: Circle, f: float) -> Circle:
    """The circle a fraction ``f`` (0…1) of the way from ``a`` to ``b`` (centre and radius linearly): JMA's
    storm-warning area between two forecast times is the hull of the circles, which this samples."""
    return Circle(a.lat + (b.lat - a.lat) * f, a.lon + (b.lon - a.lon) * f,
                  a.radius_km + (b.radius_km - a.radius_km) * f)
