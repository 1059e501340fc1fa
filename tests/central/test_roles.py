"""Roles grant exactly the permissions of the table; several roles add up."""

import pytest

from ems.central.roles import ROLE_PERMISSIONS, Permission, Role, has_permission, parse_roles, permissions_of, roles_text

P = Permission


def test_every_role_has_an_entry():
    assert set(ROLE_PERMISSIONS) == set(Role)


def test_viewer_only_views():
    assert permissions_of([Role.VIEWER]) == {P.VIEW_FLEET, P.VIEW_HISTORY}
    assert not has_permission(["viewer"], P.DISPATCH)


def test_operator_dispatches_but_cannot_switch_disaster_mode():
    perms = permissions_of([Role.OPERATOR])
    assert perms == {P.VIEW_FLEET, P.VIEW_HISTORY, P.ACK_ALARM, P.DISPATCH, P.MANUAL_SETPOINT}
    assert P.SWITCH_DISASTER not in perms and P.RETURN_TO_VPP not in perms


def test_municipal_switches_but_does_not_trade():
    perms = permissions_of([Role.MUNICIPAL])
    assert perms == {P.VIEW_FLEET, P.VIEW_HISTORY, P.SWITCH_DISASTER, P.RETURN_TO_VPP}
    assert P.DISPATCH not in perms and P.ACK_ALARM not in perms and P.MANAGE_USERS not in perms


def test_operator_plus_municipal_may_switch_disaster_mode():
    perms = permissions_of(["operator", "municipal"])
    assert {P.SWITCH_DISASTER, P.DISPATCH, P.RETURN_TO_VPP} <= perms
    assert P.VIEW_AUDIT not in perms


def test_admin_has_everything_and_only_admin_sees_audit_and_users():
    assert permissions_of([Role.ADMIN]) == set(Permission)
    for role in (Role.VIEWER, Role.OPERATOR, Role.MUNICIPAL):
        assert not {P.VIEW_AUDIT, P.EXPORT_AUDIT, P.MANAGE_USERS} & permissions_of([role])


def test_no_roles_no_permissions():
    assert permissions_of([]) == frozenset()


def test_unknown_role_name_is_refused():
    with pytest.raises(ValueError):
        permissions_of(["superuser"])


@pytest.mark.parametrize("text, expected", [
    ("operator,municipal", {Role.OPERATOR, Role.MUNICIPAL}),
    (" Admin ", {Role.ADMIN}),
    (["viewer", "viewer"], {Role.VIEWER}),
])
def test_parse_roles(text, expected):
    assert parse_roles(text) == expected


@pytest.mark.parametrize("text, words", [("", "at least one"), (",", "at least one"), ("operator,root", "root")])
def test_parse_roles_errors_name_the_problem(text, words):
    with pytest.raises(ValueError, match=words):
        parse_roles(text)


def test_roles_text_is_stable():
    assert roles_text({Role.OPERATOR, Role.MUNICIPAL}) == "municipal,operator"
