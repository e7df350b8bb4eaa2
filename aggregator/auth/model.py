"""Who a signed-in user is: roles and the departments whose data they may see.

Data scope (ADM-1): a user sees their own department and every department below it in the tree;
``admin`` sees everything, including rows that belong to no department. Other areas filter by it::

    from aggregator.auth.access import scope_filter
    where, params = scope_filter(g.user, "e.department_id")
    db.query(f"SELECT … FROM edges e WHERE {where}", params)

or test one row with ``g.user.can_see(row_department_id)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

ROLES: frozenset[str] = frozenset({"agent", "team_lead", "supervisor", "qa", "admin", "technician"})


@dataclass(frozen=True)
class User:
    """A signed-in user as the views see it (``g.user``)."""

    id: int
    username: str
    display_name: str
    roles: frozenset[str]
    department_id: int | None
    scope_department_ids: frozenset[int]   # own department and its descendants (admin: all)
    sees_all: bool = False                 # admin: also rows with no department

    def has_any(self, roles: Iterable[str]) -> bool:
        """``admin`` holds every role."""
        return "admin" in self.roles or any(role in self.roles for role in roles)

    def can_see(self, department_id: int | None) -> bool:
        if self.sees_all:
            return True
        return department_id is not None and department_id in self.scope_department_ids

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "display_name": self.display_name,
                "roles": sorted(self.roles), "department_id": self.department_id,
                "scope_department_ids": sorted(self.scope_department_ids),
                "sees_all": self.sees_all}


def rows(src: Any, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    """Read from an ``HqDb`` or from inside a transaction (``Tx``) alike."""
    if hasattr(src, "query"):
        return src.query(sql, params)
    return [tuple(r) for r in src.execute(sql, params).fetchall()]


def descendants(src: Any, department_id: int) -> frozenset[int]:
    """A department and everything under it (a recursive CTE: SQLite and PostgreSQL alike)."""
    found = rows(src, """
        WITH RECURSIVE tree (id) AS (
            SELECT id FROM departments WHERE id = ?
            UNION
            SELECT d.id FROM departments d JOIN tree t ON d.parent_id = t.id
        ) SELECT id FROM tree""", (department_id,))
    return frozenset(int(r[0]) for r in found)


def all_departments(src: Any) -> frozenset[int]:
    return frozenset(int(r[0]) for r in rows(src, "SELECT id FROM departments"))


def roles_of(src: Any, user_id: int) -> frozenset[str]:
    return frozenset(r[0] for r in rows(src, "SELECT role FROM user_roles WHERE user_id = ?",
                                        (user_id,)))


def load_user(src: Any, user_id: int) -> User | None:
    """The active user with this id, with roles and scope; None if missing or deactivated."""
    found = rows(src, "SELECT id, username, display_name, department_id FROM users"
                      " WHERE id = ? AND active = 1", (user_id,))
    if not found:
        return None
    uid, username, display_name, department_id = found[0]
    roles = roles_of(src, uid)
    admin = "admin" in roles
    if admin:
        scope = all_departments(src)
    elif department_id is not None:
        scope = descendants(src, int(department_id))
    else:
        scope = frozenset()
    return User(int(uid), username, display_name, roles,
                None if department_id is None else int(department_id), scope, admin)


def scope_filter(user: User, column: str) -> tuple[str, list[object]]:
    """A WHERE fragment limiting ``column`` (a department id) to what ``user`` may see.

    Admin: ``1 = 1``; a user with an empty scope: ``1 = 0``; else ``column IN (?, …)``."""
    if user.sees_all:
        return "1 = 1", []
    ids = sorted(user.scope_department_ids)
    if not ids:
        return "1 = 0", []
    return f"{column} IN ({', '.join('?' for _ in ids)})", list(ids)
