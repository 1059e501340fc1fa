"""Roles and the permissions they grant.

A user may hold several roles; what they may do is the union of the roles'
permissions.  Every endpoint of the central service asks for one
:class:`Permission`, never for a role, so that "an operator cannot switch
disaster mode unless also municipal" follows from this table alone.
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable


class Role(str, Enum):
    """Who a user is for the service: viewer, operator (energy company), municipal (disaster staff), admin."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    MUNICIPAL = "municipal"
    ADMIN = "admin"


class Permission(str, Enum):
    """One thing an endpoint allows."""

    VIEW_FLEET = "view_fleet"
    VIEW_HISTORY = "view_history"
    ACK_ALARM = "ack_alarm"
    DISPATCH = "dispatch"
    SWITCH_DISASTER = "switch_disaster"
    RETURN_TO_VPP = "return_to_vpp"
    MANUAL_SETPOINT = "manual_setpoint"
    VIEW_AUDIT = "view_audit"
    EXPORT_AUDIT = "export_audit"
    MANAGE_USERS = "manage_users"


_VIEW = frozenset({Permission.VIEW_FLEET, Permission.VIEW_HISTORY})

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEW,
    Role.OPERATOR: _VIEW | {Permission.ACK_ALARM, Permission.DISPATCH, Permission.MANUAL_SETPOINT},
    # Municipal staff decide on disaster mode and its end; they do not trade energy.
    Role.MUNICIPAL: _VIEW | {Permission.SWITCH_DISASTER, Permission.RETURN_TO_VPP},
    Role.ADMIN: frozenset(Permission),
}


def permissions_of(roles: Iterable[Role | str]) -> frozenset[Permission]:
    """Union of the permissions of ``roles`` (role names are accepted; unknown names raise ValueError)."""
    result: frozenset[Permission] = frozenset()
    for role in roles:
        result |= ROLE_PERMISSIONS[Role(role)]
    return result


def has_permission(roles: Iterable[Role | str], permission: Permission | str) -> bool:
    """True when any of ``roles`` grants ``permission``."""
    return Permission(permission) in permissions_of(roles)


def parse_roles(text: str | Iterable[str]) -> frozenset[Role]:
    """Roles from ``"operator,municipal"`` or a list of names; ValueError naming an unknown role or none given."""
    names = text.split(",") if isinstance(text, str) else list(text)
    roles: set[Role] = set()
    for raw in names:
        name = str(raw).strip().lower()
        if not name:
            continue
        try:
            roles.add(Role(name))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ValueError(f"unknown role {raw!r} (known: {known})") from None
    if not roles:
        raise ValueError("at least one role is required")
    return frozenset(roles)


def roles_text(roles: Iterable[Role]) -> str:
    """Roles as a stable comma-separated text, e.g. ``"municipal,operator"``."""
    return ",".join(sorted(Role(r).value for r in roles))
