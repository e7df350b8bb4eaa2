"""Who may do what on the broker, as Mosquitto dynamic-security roles. Pure data, no I/O.

The rules of ARCHITECTURE.md "Sync over MQTT", written for the dynamic-security plugin of
Mosquitto 2.0 (checked against 2.0.11 in ``tests/sync/test_dynsec_broker.py``):

* Mosquitto 2.0's plugin has no ``%u`` substitution in its ACLs (2.1 adds it), so each edge gets
  a role of its own, ``edge:<id>``: publish only ``cc/v1/<id>/up/#``, subscribe to and receive
  only ``cc/v1/<id>/down/#``. Enrollment creates it together with the client
  (``aggregator.fleet.dynsec``); ``edge_role`` is the one place that says what it holds.
* A shared subscription is checked as written: ``subscribePattern cc/v1/+/up/#`` does not allow
  ``$share/ingest/cc/v1/+/up/#``, so the HQ role names ``$share/+/cc/v1/+/up/#`` too. Receiving
  is checked on the message's real topic.
* The defaults deny everything not granted, receiving included (the plugin's own default lets a
  client receive whatever it managed to subscribe to).

The broker stores passwords as PBKDF2-SHA512 with a base64 salt; ``hashed_password`` writes them
the same way, so a configuration file can be generated without ``mosquitto_ctrl``.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Any, Mapping

from aggregator.fleet.errors import InvalidInput

TOPIC_ROOT = "cc/v1"
HQ_ROLE = "hq"
ADMIN_ROLE = "dynsec-admin"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
PBKDF2_ITERATIONS = 1000

EDGE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
"""A safe MQTT topic level and broker user name: no ``/``, ``+``, ``#``, ``$``, spaces, or
capitals (a user name differing only in case would be another user)."""

DEFAULT_ACL_ACCESS = {"publishClientSend": False, "publishClientReceive": False,
                      "subscribe": False, "unsubscribe": True}


def check_edge_id(edge_id: object) -> str:
    """The edge id itself, or ``InvalidInput``: it becomes a topic level and a user name."""
    if not isinstance(edge_id, str) or not EDGE_ID.fullmatch(edge_id):
        raise InvalidInput(f"edge id {edge_id!r:.80}: expected 1-64 characters a-z, 0-9, '-', '_'")
    return edge_id


def acl(acltype: str, topic: str, allow: bool = True) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": allow}


def edge_role_name(edge_id: str) -> str:
    return f"edge:{check_edge_id(edge_id)}"


def edge_role(edge_id: str) -> dict[str, Any]:
    """One edge's role: its own up topics to write, its own down topics to read, nothing else."""
    up, down = f"{TOPIC_ROOT}/{check_edge_id(edge_id)}/up/#", f"{TOPIC_ROOT}/{edge_id}/down/#"
    return {"rolename": edge_role_name(edge_id), "acls": [
        acl("publishClientSend", up),
        acl("subscribePattern", down),
        acl("publishClientReceive", down),
        acl("unsubscribePattern", down),
    ]}


def hq_role() -> dict[str, Any]:
    """HQ's ingest reads every edge's up topics (plainly or shared); its dispatcher and acks write
    every edge's down topics. HQ cannot publish as an edge."""
    up, down = f"{TOPIC_ROOT}/+/up/#", f"{TOPIC_ROOT}/+/down/#"
    shared = f"$share/+/{up}"
    return {"rolename": HQ_ROLE, "acls": [
        acl("subscribePattern", up),
        acl("subscribePattern", shared),
        acl("unsubscribePattern", up),
        acl("unsubscribePattern", shared),
        acl("publishClientReceive", up),
        acl("publishClientSend", down),
    ]}


def admin_role() -> dict[str, Any]:
    """The control API only: the admin that enrolls edges cannot read or write their traffic."""
    return {"rolename": ADMIN_ROLE, "acls": [
        acl("publishClientSend", f"{CONTROL_TOPIC}"),
        acl("subscribePattern", RESPONSE_TOPIC),
        acl("publishClientReceive", RESPONSE_TOPIC),
        acl("unsubscribePattern", RESPONSE_TOPIC),
    ]}


def hashed_password(password: str, *, iterations: int = PBKDF2_ITERATIONS,
                    salt: bytes | None = None) -> dict[str, Any]:
    """The ``password``/``salt``/``iterations`` fields of a dynamic-security client."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return {"password": base64.b64encode(digest).decode("ascii"),
            "salt": base64.b64encode(salt).decode("ascii"), "iterations": iterations}


def client(username: str, password: str, role: str) -> dict[str, Any]:
    return {"username": username, **hashed_password(password), "roles": [{"rolename": role}]}


def initial_config(*, admin_user: str, admin_password: str, hq_user: str, hq_password: str,
                   edges: Mapping[str, str] = {}) -> dict[str, Any]:
    """A complete plugin configuration: the admin, HQ, and ``edges`` (id -> password) known from
    the start. Edges enrolled later are added through the control API, which rewrites the file."""
    if admin_user == hq_user:
        raise InvalidInput("the dynamic-security admin and the HQ user must be different users")
    clients = [client(admin_user, admin_password, ADMIN_ROLE),
               client(hq_user, hq_password, HQ_ROLE)]
    roles = [admin_role(), hq_role()]
    for edge_id, password in edges.items():
        if edge_id in (admin_user, hq_user):
            raise InvalidInput(f"edge id {edge_id!r} is taken by the broker's admin or HQ user")
        clients.append(client(check_edge_id(edge_id), password, edge_role_name(edge_id)))
        roles.append(edge_role(edge_id))
    return {"clients": clients, "groups": [], "roles": roles,
            "defaultACLAccess": dict(DEFAULT_ACL_ACCESS)}
