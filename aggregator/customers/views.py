"""HTTP views of the customers area (``/api/v1/customers``).

Customers and accounts (read: agents and up; change: supervisors):

- ``GET /?edge=&member_no=&number=&after=&limit=`` → ``{"customers": […], "next": id|null}``
- ``POST /`` ``{"name", "member_no", "owner_agent", "region", "type", "vip", "edge",
  "numbers": [...], "accounts": [{"balance": "1234.50", "amount_due": "300.00",
  "due_date": "2026-12-01"}]}`` → 201 ``{"customer"}``
- ``GET|PATCH|DELETE /<id>`` (``if_version`` in the body or query refuses a stale write: 409)
- ``POST /<id>/accounts``, ``PATCH|DELETE /<id>/accounts/<account_id>``

Reference data (admin):

- ``GET /prefixes?after=&limit=``; ``POST /prefixes`` with the CSV as the body or as multipart
  field ``file``; ``?encoding=utf-8|gbk``, ``?mode=replace|merge``, ``?partial=1`` to store the
  good rows even when some are bad (otherwise a bad row stores nothing: 422 with the report)
- ``GET /calendars``; ``GET /calendars/<name>/days?year=``; ``PUT /calendars/<name>/years/<y>``
  ``{"days": [{"date", "kind", "name"}]}``; ``POST /calendars/<name>/years/<y>/seed`` (from
  chinese-calendar); ``POST /calendars/<name>/days`` (add or change days);
  ``DELETE /calendars/<name>/days/<date>``
- ``POST /push`` ``{"edges": [...], "prefixes": true, "calendars": true | [names],
  "snapshot": true}`` (every key optional: all edges, everything) → messages queued per edge

A change to a customer queues its branch edge's delta by itself; reference data waits for
``/push`` so an admin can upload, check and then send.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, g, jsonify, request

from aggregator.auth.access import audit, login_required
from aggregator.customers import calendar_days, model, prefixes, push, queries, validate
from aggregator.customers.errors import Conflict, InvalidInput, NotFound
from aggregator.web.app import get_db, now
from aggregator.web.json_api import answer_errors, json_body

log = logging.getLogger(__name__)

bp = Blueprint("customers", __name__, url_prefix="/api/v1/customers")

READ = ("agent", "team_lead", "supervisor", "qa")
WRITE = ("supervisor",)
REFERENCE = ("admin",)


answer_errors(bp, {InvalidInput: 400, NotFound: 404, Conflict: 409})


_body = json_body


def _by() -> str:
    return g.user.username


def _limit() -> int:
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= queries.MAX_PAGE:
        raise InvalidInput(f"limit: 1 to {queries.MAX_PAGE}, got {raw!r}")
    return int(raw)


def _found(customer_id: str) -> dict[str, Any]:
    record = queries.get_customer(get_db(), customer_id)
    if record is None:
        raise NotFound(f"customer {customer_id} not found")
    return record


# --- customers ----------------------------------------------------------------------------------

@bp.get("")
@login_required(*READ)
def list_customers():  # type: ignore[no-untyped-def]
    args = request.args
    number = args.get("number")
    limit = _limit()
    found = queries.list_customers(
        get_db(), edge=args.get("edge"), member_no=args.get("member_no"),
        number=validate.phone_number(number, "number") if number else None,
        after=args.get("after", ""), limit=limit)
    return jsonify({"customers": found, "next": found[-1]["id"] if len(found) == limit else None})


@bp.post("")
@login_required(*WRITE)
def create_customer():  # type: ignore[no-untyped-def]
    fields = validate.customer_fields(_body())
    with get_db().transaction() as tx:
        customer_id = model.create_customer(tx, fields, now(), by=_by())
        record = queries.get_customer(tx, customer_id)
        audit("customer.create", target=customer_id, detail={"edge": record["edge"]}, tx=tx)
    return jsonify({"customer": record}), 201


@bp.get("/<customer_id>")
@login_required(*READ)
def get_customer(customer_id: str):  # type: ignore[no-untyped-def]
    return jsonify({"customer": _found(customer_id)})


@bp.patch("/<customer_id>")
@login_required(*WRITE)
def update_customer(customer_id: str):  # type: ignore[no-untyped-def]
    fields = validate.customer_fields(_body(), partial=True)
    with get_db().transaction() as tx:
        model.update_customer(tx, customer_id, fields, now(), by=_by())
        record = queries.get_customer(tx, customer_id)
        audit("customer.update", target=customer_id,
              detail={"fields": sorted(k for k in fields if k != "if_version")}, tx=tx)
    return jsonify({"customer": record})


@bp.delete("/<customer_id>")
@login_required(*WRITE)
def delete_customer(customer_id: str):  # type: ignore[no-untyped-def]
    raw = _body(optional=True).get("if_version", request.args.get("if_version"))
    if_version = None if raw is None else validate.version(
        int(raw) if isinstance(raw, str) and raw.isdigit() else raw, "if_version")
    with get_db().transaction() as tx:
        model.delete_customer(tx, customer_id, now(), if_version, by=_by())
        audit("customer.delete", target=customer_id, tx=tx)
    return jsonify({"deleted": customer_id})


# --- accounts -----------------------------------------------------------------------------------

@bp.post("/<customer_id>/accounts")
@login_required(*WRITE)
def add_account(customer_id: str):  # type: ignore[no-untyped-def]
    fields = validate.account_fields(_body())
    with get_db().transaction() as tx:
        account_id = model.add_account(tx, customer_id, fields, now(), by=_by())
        record = queries.get_customer(tx, customer_id)
        audit("account.create", target=f"{customer_id}/{account_id}", tx=tx)
    return jsonify({"account": queries.account_row(get_db(), customer_id, account_id),
                    "customer": record}), 201


@bp.patch("/<customer_id>/accounts/<account_id>")
@login_required(*WRITE)
def update_account(customer_id: str, account_id: str):  # type: ignore[no-untyped-def]
    fields = validate.account_fields(_body(), partial=True)
    with get_db().transaction() as tx:
        model.update_account(tx, customer_id, account_id, fields, now(), by=_by())
        record = queries.get_customer(tx, customer_id)
        audit("account.update", target=f"{customer_id}/{account_id}",
              detail={"fields": sorted(k for k in fields if k != "if_version")}, tx=tx)
    return jsonify({"account": queries.account_row(get_db(), customer_id, account_id),
                    "customer": record})


@bp.delete("/<customer_id>/accounts/<account_id>")
@login_required(*WRITE)
def delete_account(customer_id: str, account_id: str):  # type: ignore[no-untyped-def]
    with get_db().transaction() as tx:
        model.delete_account(tx, customer_id, account_id, now(), by=_by())
        audit("account.delete", target=f"{customer_id}/{account_id}", tx=tx)
    return jsonify({"deleted": account_id, "customer": _found(customer_id)})


# --- the 号段 table -----------------------------------------------------------------------------

@bp.get("/prefixes")
@login_required(*REFERENCE)
def list_prefixes():  # type: ignore[no-untyped-def]
    db = get_db()
    found = db.query("SELECT prefix, region, carrier FROM number_prefixes WHERE prefix > ?"
                     " ORDER BY prefix LIMIT ?", (request.args.get("after", ""), _limit()))
    return jsonify({"prefixes": [{"prefix": p, "region": r, "carrier": c} for p, r, c in found],
                    "total": db.scalar("SELECT count(*) FROM number_prefixes")})


@bp.post("/prefixes")
@login_required(*REFERENCE)
def upload_prefixes():  # type: ignore[no-untyped-def]
    upload = request.files.get("file")
    data = upload.read() if upload is not None else request.get_data()
    if not data:
        raise InvalidInput("file: send the CSV as the body or as multipart field 'file'")
    mode = request.args.get("mode", "replace")
    if mode not in ("replace", "merge"):
        raise InvalidInput(f"mode: replace or merge, got {mode!r}")
    parsed = prefixes.parse(data, request.args.get("encoding"))
    report = parsed.report()
    if parsed.bad and request.args.get("partial") != "1":
        log.info("号段 upload refused: %s bad rows of %s", len(parsed.bad),
                 len(parsed.bad) + len(parsed.rows))
        return jsonify({"error": f"{len(parsed.bad)} bad rows; nothing stored (fix them, or "
                                 "send ?partial=1 to store the good rows)", **report}), 422
    with get_db().transaction() as tx:
        total = prefixes.store(tx, parsed.rows, now(), replace=mode == "replace")
        audit("reference.prefixes.upload", target=mode,
              detail={"good": len(parsed.rows), "bad": len(parsed.bad), "total": total,
                      "encoding": parsed.encoding}, tx=tx)
    return jsonify({**report, "stored": len(parsed.rows), "total": total, "mode": mode})


# --- calendars ----------------------------------------------------------------------------------

@bp.get("/calendars")
@login_required(*REFERENCE)
def list_calendars():  # type: ignore[no-untyped-def]
    return jsonify({"calendars": calendar_days.summary(get_db())})


@bp.get("/calendars/<name>/days")
@login_required(*REFERENCE)
def calendar_days_of(name: str):  # type: ignore[no-untyped-def]
    year = request.args.get("year")
    return jsonify({"calendar": name, "days": calendar_days.days_of(
        get_db(), calendar_days.calendar_name(name),
        calendar_days.year_of(year) if year else None)})


@bp.put("/calendars/<name>/years/<year>")
@login_required(*REFERENCE)
def set_calendar_year(name: str, year: str):  # type: ignore[no-untyped-def]
    name, number = calendar_days.calendar_name(name), calendar_days.year_of(year)
    days = calendar_days.check_days(_body().get("days"))
    with get_db().transaction() as tx:
        count = calendar_days.set_year(tx, name, number, days, now())
        audit("reference.calendar.set_year", target=f"{name}/{number}", detail={"days": count},
              tx=tx)
    return jsonify({"calendar": name, "year": number, "days": days})


@bp.post("/calendars/<name>/years/<year>/seed")
@login_required(*REFERENCE)
def seed_calendar_year(name: str, year: str):  # type: ignore[no-untyped-def]
    name, number = calendar_days.calendar_name(name), calendar_days.year_of(year)
    names = _body(optional=True).get("names", "zh")
    if names not in ("zh", "en"):
        raise InvalidInput(f"names: zh or en, got {names!r}")
    with get_db().transaction() as tx:
        count = calendar_days.seed_year(tx, name, number, now(), names)
        audit("reference.calendar.seed", target=f"{name}/{number}", detail={"days": count}, tx=tx)
    return jsonify({"calendar": name, "year": number,
                    "days": calendar_days.days_of(get_db(), name, number)})


@bp.post("/calendars/<name>/days")
@login_required(*REFERENCE)
def set_calendar_days(name: str):  # type: ignore[no-untyped-def]
    name = calendar_days.calendar_name(name)
    days = calendar_days.check_days(_body().get("days"))
    with get_db().transaction() as tx:
        calendar_days.upsert_days(tx, name, days, now())
        audit("reference.calendar.set_days", target=name,
              detail={"dates": [d["date"] for d in days]}, tx=tx)
    return jsonify({"calendar": name, "days": days})


@bp.delete("/calendars/<name>/days/<day>")
@login_required(*REFERENCE)
def delete_calendar_day(name: str, day: str):  # type: ignore[no-untyped-def]
    name, date = calendar_days.calendar_name(name), validate.iso_date(day, "date")
    with get_db().transaction() as tx:
        calendar_days.delete_day(tx, name, date)
        audit("reference.calendar.delete_day", target=f"{name}/{date}", tx=tx)
    return jsonify({"deleted": date, "calendar": name})


# --- push ---------------------------------------------------------------------------------------

@bp.post("/push")
@login_required(*REFERENCE)
def push_now():  # type: ignore[no-untyped-def]
    request_ = push.PushRequest.from_body(_body(optional=True))
    with get_db().transaction() as tx:
        queued = push.push(tx, request_, created_by=_by(), now=now())
        audit("reference.push", target=",".join(queued["edges"])[:200],
              detail={k: v for k, v in queued.items() if k != "edges"}, tx=tx)
    return jsonify(queued)
