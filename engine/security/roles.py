"""Roles, principals and permissions. Every engine service that changes something takes a `Principal` and calls
`require` first, so a viewer's approve is refused by the engine whatever the UI shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.errors import PermissionDenied


class Role(StrEnum):
    VIEWER = "viewer"  # reads everything, changes nothing
    OPERATOR = "operator"  # approves, rejects and edits proposals; injects faults in the staging twin
    ADMIN = "admin"  # all of the above, and changes the policy and users


class Permission(StrEnum):
    VIEW = "view"
    DECIDE = "decide"  # approve / reject / edit a proposal
    PROPOSE = "propose"  # queue a proposal (the chat, an operator)
    INJECT = "inject"  # inject a fault into the staging twin
    EXECUTE = "execute"  # run approved actions (workers)
    CHANGE_POLICY = "change_policy"
    MANAGE_USERS = "manage_users"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.OPERATOR: frozenset({Permission.VIEW, Permission.DECIDE, Permission.PROPOSE, Permission.INJECT}),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone (or something) acting: a signed-in user, the policy engine, a worker."""

    name: str
    role: Role
    kind: str = "user"  # user | agent | worker | system

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role] or (self.kind in ("agent", "worker")
                                                     and permission in _MACHINE_GRANTS[self.kind])

    @property
    def label(self) -> str:
        """How the audit log names this principal."""
        return self.name if self.kind == "user" else f"{self.kind}:{self.name}"


# Machines act within narrow grants whatever role they carry: the agent proposes, workers execute.
_MACHINE_GRANTS: dict[str, frozenset[Permission]] = {
    "agent": frozenset({Permission.VIEW, Permission.PROPOSE}),
    "worker": frozenset({Permission.VIEW, Permission.EXECUTE}),
}


def require(principal: Principal, permission: Permission) -> None:
    """Raise PermissionDenied unless `principal` holds `permission`."""
    if not principal.can(permission):
        who = "an admin" if permission not in GRANTS[Role.OPERATOR] else "an operator"
        raise PermissionDenied(f"{principal.label} ({principal.role.value}) may not "
                               f"{permission.value.replace('_', ' ')}; ask {who}")


def agent(name: str) -> Principal:
    return Principal(name, Role.VIEWER, "agent")


def worker(name: str) -> Principal:
    return Principal(name, Role.VIEWER, "worker")
