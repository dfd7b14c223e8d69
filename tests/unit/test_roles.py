"""Roles and permissions: the matrix every engine service relies on, and require() refusing with a clear message."""

from __future__ import annotations

import pytest

from engine.errors import PermissionDenied
from engine.security.roles import GRANTS, Permission, Principal, Role, agent, require, worker

P = Permission
EXPECTED = {
    Role.VIEWER: {P.VIEW},
    Role.OPERATOR: {P.VIEW, P.DECIDE, P.PROPOSE, P.INJECT},
    Role.ADMIN: set(Permission),
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_the_permission_matrix(role: Role, permission: Permission) -> None:
    principal = Principal("someone", role)
    allowed = permission in EXPECTED[role]
    assert principal.can(permission) is allowed
    if allowed:
        require(principal, permission)
    else:
        with pytest.raises(PermissionDenied):
            require(principal, permission)


def test_roles_only_add_permissions_going_up() -> None:
    assert GRANTS[Role.VIEWER] < GRANTS[Role.OPERATOR] < GRANTS[Role.ADMIN]


def test_a_viewer_cannot_decide_and_is_told_whom_to_ask() -> None:
    with pytest.raises(PermissionDenied, match="vic \\(viewer\\) may not decide; ask an operator"):
        require(Principal("vic", Role.VIEWER), Permission.DECIDE)


def test_an_operator_cannot_change_the_policy_or_users() -> None:
    op = Principal("olga", Role.OPERATOR)
    with pytest.raises(PermissionDenied, match="may not change policy; ask an admin"):
        require(op, Permission.CHANGE_POLICY)
    with pytest.raises(PermissionDenied, match="ask an admin"):
        require(op, Permission.MANAGE_USERS)


def test_machines_act_within_narrow_grants() -> None:
    bot, runner = agent("q-policy"), worker("w1")
    assert bot.can(P.PROPOSE) and not bot.can(P.DECIDE) and not bot.can(P.EXECUTE)
    assert runner.can(P.EXECUTE) and not runner.can(P.DECIDE) and not runner.can(P.PROPOSE)
    assert (bot.label, runner.label) == ("agent:q-policy", "worker:w1")
    with pytest.raises(PermissionDenied, match="agent:q-policy"):
        require(bot, P.DECIDE)
