"""Users and departments: create, change, list. Writes take a transaction, reads an ``HqDb``.

The HTTP views, the CLI and the test helpers all go through here, so validation lives in one
place. Users are deactivated, never deleted: the audit log keeps pointing at them.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from aggregator.auth import passwords, sessions
from aggregator.auth.errors import Conflict, InvalidInput, NotFound
from aggregator.auth.model import ROLES, User, descendants, rows, scope_filter

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
MAX_NAME = 100
UNSET: Any = object()


def normalise_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME.match(username.strip().lower()):
        raise InvalidInput("username: 1-64 of a-z 0-9 _ . @ - (starting with a letter or digit)")
    return username.strip().lower()


def _name(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_NAME:
        raise InvalidInput(f"{field}: 1-{MAX_NAME} characters")
    return value.strip()


def _roles(value: object) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise InvalidInput(f"roles: a list of {sorted(ROLES)}")
    roles = frozenset(value)
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise InvalidInput(f"roles: unknown {sorted(map(str, unknown))}; roles are {sorted(ROLES)}")
    return roles


def _department_id(src: Any, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("department_id: an integer or null")
    if not rows(src, "SELECT 1 FROM departments WHERE id = ?", (value,)):
        raise NotFound(f"department {value} does not exist")
    return value


def _active(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput("active: true or false")
    return value


# --- departments ----------------------------------------------------------------------------

def create_department(tx: Any, name: object, parent_id: object = None, *, now: float) -> int:
    clean = _name("name", name)
    parent = _department_id(tx, parent_id)
    row = tx.execute("INSERT INTO departments (name, parent_id, created_at, updated_at)"
                     " VALUES (?, ?, ?, ?) RETURNING id", (clean, parent, now, now)).fetchone()
    return int(row[0])


def update_department(tx: Any, department_id: int, *, name: object = UNSET,
                      parent_id: object = UNSET, now: float) -> dict[str, Any]:
    """Rename or move a department; returns what changed. A move under itself is refused."""
    current = get_department(tx, department_id)
    changes: dict[str, Any] = {}
    if name is not UNSET:
        changes["name"] = _name("name", name)
    if parent_id is not UNSET:
        parent = _department_id(tx, parent_id)
        if parent is not None and parent in descendants(tx, department_id):
            raise Conflict(f"department {department_id} cannot move under {parent}: a cycle")
        changes["parent_id"] = parent
    changes = {k: v for k, v in changes.items() if current[k] != v}
    if changes:
        sets = ", ".join(f"{column} = ?" for column in changes)
        tx.execute(f"UPDATE departments SET {sets}, updated_at = ? WHERE id = ?",
                   (*changes.values(), now, department_id))
    return changes


def get_department(src: Any, department_id: int) -> dict[str, Any]:
    found = rows(src, "SELECT id, name, parent_id FROM departments WHERE id = ?", (department_id,))
    if not found:
        raise NotFound(f"department {department_id} does not exist")
    return _department(found[0])


def list_departments(src: Any, viewer: User) -> list[dict[str, Any]]:
    where, params = scope_filter(viewer, "id")
    return [_department(r) for r in rows(
        src, f"SELECT id, name, parent_id FROM departments WHERE {where} ORDER BY id", params)]


def _department(r: tuple) -> dict[str, Any]:
    return {"id": int(r[0]), "name": r[1], "parent_id": None if r[2] is None else int(r[2])}


# --- users ----------------------------------------------------------------------------------

def create_user(tx: Any, username: object, password: object, *, display_name: object = None,
                roles: Iterable[str] = (), department_id: object = None, active: bool = True,
                now: float) -> int:
    name = normalise_username(username)
    shown = _name("display_name", display_name if display_name is not None else name)
    role_set = _roles(list(roles))
    department = _department_id(tx, department_id)
    if rows(tx, "SELECT 1 FROM users WHERE username = ?", (name,)):
        raise Conflict(f"username {name!r} is taken")
    digest = passwords.hash_password(password)  # type: ignore[arg-type]
    row = tx.execute(
        "INSERT INTO users (username, display_name, password_hash, department_id, active,"
        " password_changed_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " RETURNING id", (name, shown, digest, department, int(_active(active)), now, now, now)
    ).fetchone()
    user_id = int(row[0])
    _set_roles(tx, user_id, role_set)
    return user_id


def update_user(tx: Any, user_id: int, changes: dict[str, Any], *, now: float) -> list[str]:
    """Apply ``display_name``, ``roles``, ``department_id``, ``active``, ``password``; returns the
    names of the fields that changed. A new password or a deactivation ends the user's sessions;
    the last active admin cannot lose the role or be deactivated."""
    allowed = {"display_name", "roles", "department_id", "active", "password"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    current = get_user(tx, user_id)
    columns: dict[str, Any] = {}
    changed: list[str] = []
    if "display_name" in changes:
        value = _name("display_name", changes["display_name"])
        if value != current["display_name"]:
            columns["display_name"] = value
    if "department_id" in changes:
        value = _department_id(tx, changes["department_id"])
        if value != current["department_id"]:
            columns["department_id"] = value
    if "active" in changes:
        value = _active(changes["active"])
        if value != current["active"]:
            columns["active"] = int(value)
    new_roles = _roles(changes["roles"]) if "roles" in changes else None
    losing_admin = ("admin" in current["roles"]
                    and ((new_roles is not None and "admin" not in new_roles)
                         or columns.get("active") == 0))
    if losing_admin and _active_admins(tx) <= 1:
        raise Conflict("the last active admin cannot lose the admin role or be deactivated")
    if "password" in changes:
        columns["password_hash"] = passwords.hash_password(changes["password"])
        columns["password_changed_at"] = now
        columns["failed_logins"] = 0
        columns["locked_until"] = None
    if columns:
        sets = ", ".join(f"{column} = ?" for column in columns)
        tx.execute(f"UPDATE users SET {sets}, updated_at = ? WHERE id = ?",
                   (*columns.values(), now, user_id))
        changed += ["password" if c == "password_hash" else c for c in columns
                    if c not in ("password_changed_at", "failed_logins", "locked_until")]
    if new_roles is not None and new_roles != frozenset(current["roles"]):
        _set_roles(tx, user_id, new_roles)
        changed.append("roles")
    if "password" in changed or columns.get("active") == 0:
        sessions.revoke_user(tx, user_id, now=now)
    return changed


def _set_roles(tx: Any, user_id: int, roles: frozenset[str]) -> None:
    tx.execute("DELETE FROM user_roles WHERE user_id = ?", (user_id,))
    for role in sorted(roles):
        tx.execute("INSERT INTO user_roles (user_id, role) VALUES (?, ?)", (user_id, role))


def _active_admins(tx: Any) -> int:
    found = rows(tx, "SELECT count(*) FROM users u JOIN user_roles r ON r.user_id = u.id"
                     " WHERE r.role = 'admin' AND u.active = 1")
    return int(found[0][0])


_USER_COLUMNS = "id, username, display_name, department_id, active, created_at, updated_at"


def get_user(src: Any, user_id: int) -> dict[str, Any]:
    found = rows(src, f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
    if not found:
        raise NotFound(f"user {user_id} does not exist")
    return _with_roles(src, [found[0]])[0]


def user_id_by_name(src: Any, username: str) -> int | None:
    found = rows(src, "SELECT id FROM users WHERE username = ?", (username.strip().lower(),))
    return int(found[0][0]) if found else None


def list_users(src: Any, viewer: User) -> list[dict[str, Any]]:
    """The users in the viewer's scope (admin: all, including those in no department)."""
    where, params = scope_filter(viewer, "department_id")
    return _with_roles(src, rows(
        src, f"SELECT {_USER_COLUMNS} FROM users WHERE {where} ORDER BY id", params))


def _with_roles(src: Any, found: list[tuple]) -> list[dict[str, Any]]:
    out = []
    for id_, username, display_name, department_id, active, created_at, updated_at in found:
        roles = sorted(r[0] for r in rows(src, "SELECT role FROM user_roles WHERE user_id = ?",
                                          (id_,)))
        out.append({"id": int(id_), "username": username, "display_name": display_name,
                    "department_id": None if department_id is None else int(department_id),
                    "active": bool(active), "roles": roles, "created_at": created_at,
                    "updated_at": updated_at})
    return out
