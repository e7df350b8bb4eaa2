"""HQ administration from a shell: ``python -m aggregator.cli --db hq.sqlite3 <command>``.

    python -m aggregator.cli init-db
    python -m aggregator.cli create-department 华东区
    python -m aggregator.cli create-department 上海分行 --parent 华东区
    python -m aggregator.cli create-user ops --roles admin --display-name 运维 --department 华东区
    echo "$PASS" | python -m aggregator.cli create-user ops --roles admin --password-stdin

The database comes from ``--db`` or ``CC_HQ_DB``. Every change is audited as the system actor
``cli``. Exit status 0 on success, 1 with a one-line message on bad input.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import click

from aggregator import AggregatorError
from aggregator.auth import directory
from aggregator.auth.audit_log import Actor, record
from aggregator.auth.model import ROLES
from aggregator.db import HqDb

CLI = Actor.system("cli")


def _open(ctx: click.Context) -> HqDb:
    try:
        return HqDb.open(ctx.obj["db"])
    except AggregatorError as exc:
        raise click.ClickException(str(exc)) from exc


def _department(db: HqDb, value: str | None) -> int | None:
    """An id, or a department name (it must be unique)."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    found = db.query("SELECT id FROM departments WHERE name = ?", (value,))
    if len(found) != 1:
        raise click.ClickException(f"department {value!r}: {'no' if not found else 'several'} "
                                   "departments of that name; give its id")
    return int(found[0][0])


@click.group()
@click.option("--db", envvar="CC_HQ_DB", default="hq.sqlite3", show_default=True,
              help="SQLite path, sqlite:///path or postgresql://… (env CC_HQ_DB)")
@click.pass_context
def main(ctx: click.Context, db: str) -> None:
    """HQ aggregator administration."""
    ctx.obj = {"db": db}


@main.command("init-db")
@click.pass_context
def init_db(ctx: click.Context) -> None:
    """Create or upgrade the database schema."""
    with _open(ctx) as db:
        click.echo(f"database {ctx.obj['db']}: schema version {db.version}")


@main.command("create-department")
@click.argument("name")
@click.option("--parent", help="parent department: id or unique name")
@click.pass_context
def create_department(ctx: click.Context, name: str, parent: str | None) -> None:
    """Create a department (under --parent)."""
    with _open(ctx) as db:
        parent_id = _department(db, parent)
        try:
            with db.transaction() as tx:
                dept_id = directory.create_department(tx, name, parent_id, now=time.time())
                record(tx, CLI, "department.create", str(dept_id),
                       {"name": name, "parent_id": parent_id})
        except AggregatorError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"department {dept_id}: {name}")


def _roles(value: str) -> list[str]:
    roles = [r.strip() for r in value.split(",") if r.strip()]
    unknown = sorted(set(roles) - ROLES)
    if unknown or not roles:
        raise click.BadParameter(f"{', '.join(unknown) or 'none given'}; roles are "
                                 f"{', '.join(sorted(ROLES))}")
    return roles


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@main.command("create-user")
@click.argument("username")
@click.option("--roles", required=True, help=f"comma-separated: {', '.join(sorted(ROLES))}")
@click.option("--display-name", help="shown name, e.g. 张伟 (default: the username)")
@click.option("--department", help="department id or unique name")
@click.option("--password-stdin", is_flag=True, help="read the password from stdin's first line")
@click.pass_context
def create_user(ctx: click.Context, username: str, roles: str, display_name: str | None,
                department: str | None, password_stdin: bool) -> None:
    """Create a user; the password is prompted for (or read with --password-stdin)."""
    role_list = _roles(roles)
    with _open(ctx) as db:
        department_id = _department(db, department)
        password = _password(password_stdin)
        try:
            with db.transaction() as tx:
                user_id = directory.create_user(tx, username, password, display_name=display_name,
                                                roles=role_list, department_id=department_id,
                                                now=time.time())
                created: dict[str, Any] = directory.get_user(tx, user_id)
                record(tx, CLI, "user.create", created["username"],
                       {k: created[k] for k in ("display_name", "roles", "department_id")})
        except AggregatorError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"user {user_id}: {created['username']} ({', '.join(created['roles'])})")


if __name__ == "__main__":
    main(prog_name="python -m aggregator.cli")
