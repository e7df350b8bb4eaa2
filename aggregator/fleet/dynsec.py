"""Add, disable and remove edges on a running Mosquitto through its dynamic-security plugin.

The plugin takes JSON commands on ``$CONTROL/dynamic-security/v1`` from a client whose role may
publish there, and answers on ``…/v1/response`` with one entry per command (``error`` set when it
failed). It applies them at once and rewrites its configuration file, so an enrolled edge can
connect the moment enrollment returns, and still can after a broker restart: no reload, no
password file to regenerate.

One short MQTT session per call (enrollment is rare; a long-lived admin connection in every
gunicorn worker would be one more thing to keep alive). Commands carry ``correlationData`` so
a reply is matched to its request, never taken by arrival order::

    admin = DynsecClient("127.0.0.1", 1883, "dynsec-admin", password)
    admin.add_edge("edge-bj01", broker_password)
    admin.disable_edge("edge-bj01")      # refuses new connections and kicks the current one
    admin.remove_edge("edge-bj01")
"""
from __future__ import annotations

import json
import logging
import ssl
import time
import uuid
from typing import Any, Callable, Sequence

import paho.mqtt.client as mqtt

from aggregator.fleet.broker_acl import CONTROL_TOPIC, RESPONSE_TOPIC, edge_role, edge_role_name
from aggregator.fleet.errors import BrokerControlError

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
LOOP_STEP_S = 0.05
ALREADY_EXISTS = "Role already exists"
NOT_FOUND = ("Client not found", "Role not found")


class DynsecClient:
    """Runs dynamic-security commands as the broker's admin client and checks every reply."""

    def __init__(self, host: str, port: int, username: str, password: str, *,
                 timeout_s: float = TIMEOUT_S, ca_file: str | None = None) -> None:
        if not username:
            raise BrokerControlError("no dynamic-security admin is configured "
                                     "(CC_HQ_BROKER_ADMIN_USER / CC_HQ_BROKER_ADMIN_PASSWORD)")
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.timeout_s = timeout_s
        self.ca_file = ca_file

    # --- edges ---------------------------------------------------------------------------------

    def add_edge(self, edge_id: str, password: str) -> None:
        """Create the edge's role and its client with ``password``. A role left behind by an
        earlier, failed attempt is reused (its ACLs come from ``edge_role`` alone); a client of
        that name already existing is an error, and the role this call created is taken back."""
        role = edge_role(edge_id)
        replies = self.execute([
            {"command": "createRole", **role},
            {"command": "createClient", "username": edge_id, "password": password,
             "roles": [{"rolename": role["rolename"]}]},
        ])
        role_error, client_error = (reply.get("error") for reply in replies)
        if role_error and role_error != ALREADY_EXISTS:
            raise BrokerControlError(f"broker refused role {role['rolename']}: {role_error}")
        if client_error:
            if not role_error:
                self.execute([{"command": "deleteRole", "rolename": role["rolename"]}])
            raise BrokerControlError(f"broker refused client {edge_id}: {client_error}")
        log.info("broker: added edge %s", edge_id)

    def disable_edge(self, edge_id: str) -> None:
        self.check([{"command": "disableClient", "username": edge_id}])

    def enable_edge(self, edge_id: str) -> None:
        self.check([{"command": "enableClient", "username": edge_id}])

    def set_edge_password(self, edge_id: str, password: str) -> None:
        self.check([{"command": "setClientPassword", "username": edge_id, "password": password}])

    def remove_edge(self, edge_id: str) -> None:
        """Delete the client (the broker drops its connection) and its role; either one being
        gone already is fine, so a retried removal succeeds."""
        replies = self.execute([{"command": "deleteClient", "username": edge_id},
                                {"command": "deleteRole", "rolename": edge_role_name(edge_id)}])
        errors = [r["error"] for r in replies if r.get("error") and r["error"] not in NOT_FOUND]
        if errors:
            raise BrokerControlError(f"broker could not remove edge {edge_id}: {'; '.join(errors)}")
        log.info("broker: removed edge %s", edge_id)

    def client_info(self, username: str) -> dict[str, Any]:
        """The plugin's view of one client (``getClient``): roles, ``disabled``."""
        return self.check([{"command": "getClient", "username": username}])[0]["data"]["client"]

    # --- commands ------------------------------------------------------------------------------

    def check(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """``execute``, raising ``BrokerControlError`` if any command failed."""
        replies = self.execute(commands)
        failed = [f"{r.get('command')}: {r['error']}" for r in replies if r.get("error")]
        if failed:
            raise BrokerControlError(f"broker refused: {'; '.join(failed)}")
        return replies

    def execute(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``commands`` in one message; the replies in the same order. Raises
        ``BrokerControlError`` when the broker cannot be reached, refuses the admin, or does not
        answer every command within the timeout."""
        tagged = [{**command, "correlationData": uuid.uuid4().hex} for command in commands]
        wanted = [command["correlationData"] for command in tagged]
        session = _Session(self)
        try:
            session.open()
            session.publish(json.dumps({"commands": tagged}, ensure_ascii=False))
            session.wait(lambda: all(c in session.replies for c in wanted),
                         f"no reply to {[c['command'] for c in commands]}")
        finally:
            session.close()
        return [session.replies[c] for c in wanted]


class _Session:
    """One admin connection, driven from the calling thread (``loop()``), no network thread."""

    def __init__(self, owner: DynsecClient) -> None:
        self.owner = owner
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"fleet-admin-{uuid.uuid4().hex[:12]}",
                                  clean_session=True, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(owner.username, owner.password)
        if owner.ca_file:
            self.client.tls_set(ca_certs=owner.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.connack: Any = None
        self.suback: list[Any] | None = None
        self.deadline = time.monotonic() + owner.timeout_s
        self.replies: dict[str, dict[str, Any]] = {}   # by correlationData

    @property
    def where(self) -> str:
        return f"broker {self.owner.host}:{self.owner.port}"

    def open(self) -> None:
        self.client.on_connect = lambda _c, _u, _f, reason, _p: setattr(self, "connack", reason)
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: setattr(self, "suback", codes)
        self.client.on_message = self._on_message
        try:
            self.client.connect(self.owner.host, self.owner.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerControlError(f"{self.where} unreachable: {exc}") from exc
        self.wait(lambda: self.connack is not None, "no CONNACK")
        if self.connack.is_failure:
            raise BrokerControlError(f"{self.where} refused the dynamic-security admin "
                                     f"{self.owner.username!r}: {self.connack}")
        self.client.subscribe(RESPONSE_TOPIC, qos=1)
        self.wait(lambda: self.suback is not None, "no SUBACK")
        if any(code.is_failure for code in self.suback or ()):
            raise BrokerControlError(f"{self.where}: {self.owner.username!r} may not read "
                                     f"{RESPONSE_TOPIC}; is the dynamic-security plugin loaded?")

    def publish(self, payload: str) -> None:
        info = self.client.publish(CONTROL_TOPIC, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerControlError(f"{self.where}: publish failed: {mqtt.error_string(info.rc)}")

    def wait(self, done: Callable[[], bool], what: str) -> None:
        while not done():
            if time.monotonic() > self.deadline:
                hint = (" (is the dynamic-security plugin loaded?)"
                        if what.startswith("no reply") else "")
                raise BrokerControlError(
                    f"{self.where}: {what} within {self.owner.timeout_s:g} s{hint}")
            rc = self.client.loop(LOOP_STEP_S)
            if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN) and not done():
                # a broker without the plugin drops a client that publishes to $CONTROL
                raise BrokerControlError(
                    f"{self.where}: connection lost ({mqtt.error_string(rc)}) waiting: {what};"
                    f" is the dynamic-security plugin loaded, with {self.owner.username!r} as"
                    " its admin?")

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("dynsec: unreadable reply on %s: %s", message.topic, exc)
            return
        for response in responses if isinstance(responses, list) else ():
            if isinstance(response, dict):
                self.replies[str(response.get("correlationData"))] = response

    def close(self) -> None:
        try:
            if self.client.is_connected():
                self.client.disconnect()
                self.client.loop(LOOP_STEP_S)
        except OSError:
            pass
