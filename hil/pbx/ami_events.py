"""AMI event header lists, in the header order real Asterisk 22 prints (the fixtures).

Pure functions: ``(headers, privilege class)`` out, no I/O. Where a fixture shows the event the
order is copied from it; the others are marked with the source file they come from.
"""
from __future__ import annotations

import datetime as _dt
import time

from hil.pbx.channels import UNKNOWN, Bridge, Channel, bridge_headers, cause_text, channel_headers

Headers = list[tuple[str, str]]


def _event(name: str, privilege: str, body: Headers) -> Headers:
    return [("Event", name), ("Privilege", privilege)] + body


def _tv() -> str:
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


class EventBuilder:
    """Builds events for one simulator; knows the configured ``channelvars``."""

    def __init__(self, chanvars: tuple[str, ...]) -> None:
        self.chanvars = chanvars

    def chan(self, ch: Channel, prefix: str = "") -> Headers:
        return channel_headers(ch, self.chanvars, prefix)

    # --- system and security (fixtures ami-01, ami-02c, ami-24) ---------------------------------
    @staticmethod
    def fully_booted(uptime_s: int) -> Headers:
        return _event("FullyBooted", "system,all", [
            ("Uptime", str(uptime_s)), ("LastReload", str(uptime_s)), ("Status", "Fully Booted")])

    @staticmethod
    def successful_auth(account: str, session_id: str, local: str, remote: str) -> Headers:
        tv = _tv()
        return _event("SuccessfulAuth", "security,all", [
            ("EventTV", tv), ("Severity", "Informational"), ("Service", "AMI"),
            ("EventVersion", "1"), ("AccountID", account), ("SessionID", session_id),
            ("LocalAddress", local), ("RemoteAddress", remote), ("UsingPassword", "0"),
            ("SessionTV", tv)])

    @staticmethod
    def failed_auth(known_user: bool, account: str, session_id: str, local: str, remote: str) -> Headers:
        name, version = ("InvalidPassword", "2") if known_user else ("InvalidAccountID", "1")
        return _event(name, "security,all", [
            ("EventTV", _tv()), ("Severity", "Error"), ("Service", "AMI"),
            ("EventVersion", version), ("AccountID", account), ("SessionID", session_id),
            ("LocalAddress", local), ("RemoteAddress", remote),
            ("SessionTV", "1970-01-01T00:00:00.000+0000")])

    @staticmethod
    def request_bad_format(action: str, account: str, session_id: str, local: str, remote: str) -> Headers:
        tv = _tv()
        return _event("RequestBadFormat", "security,all", [
            ("EventTV", tv), ("Severity", "Error"), ("Service", "AMI"), ("EventVersion", "1"),
            ("SessionID", session_id), ("LocalAddress", local), ("RemoteAddress", remote),
            ("RequestType", f"Action: {action}"), ("SessionTV", tv), ("AccountID", account)])

    # --- channel life (fixtures ami-04, ami-06, ami-08) -----------------------------------------
    def newchannel(self, ch: Channel) -> Headers:
        return _event("Newchannel", "call,all", self.chan(ch))

    def newstate(self, ch: Channel) -> Headers:
        return _event("Newstate", "call,all", self.chan(ch))

    def newexten(self, ch: Channel, application: str, app_data: str) -> Headers:
        return _event("Newexten", "dialplan,all", self.chan(ch) + [
            ("Extension", ch.exten), ("Application", application), ("AppData", app_data)])

    def new_callerid(self, ch: Channel) -> Headers:
        return _event("NewCallerid", "call,all", self.chan(ch) + [
            ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])

    def new_connected_line(self, ch: Channel) -> Headers:
        return _event("NewConnectedLine", "call,all", self.chan(ch))

    def local_bridge(self, one: Channel, two: Channel) -> Headers:
        return _event("LocalBridge", "call,all", self.chan(one, "LocalOne") + self.chan(two, "LocalTwo") + [
            ("Context", one.context), ("Exten", one.exten), ("LocalOptimization", "Yes")])

    def varset(self, ch: Channel | None, variable: str, value: str) -> Headers:
        where = self.chan(ch) if ch else [("Channel", "none"), ("Uniqueid", "none")]
        return _event("VarSet", "dialplan,all", where + [("Variable", variable), ("Value", value)])

    def hangup_request(self, ch: Channel, cause: int, soft: bool = False) -> Headers:
        name = "SoftHangupRequest" if soft else "HangupRequest"
        return _event(name, "call,all", self.chan(ch) + [("Cause", str(cause))])

    def hangup(self, ch: Channel) -> Headers:
        return _event("Hangup", "call,all", self.chan(ch) + [
            ("Cause", str(ch.cause)), ("Cause-txt", cause_text(ch.cause))])

    @staticmethod
    def device_state(device: str, state: str) -> Headers:
        return _event("DeviceStateChange", "call,all", [("Device", device), ("State", state)])

    # --- dialling (fixtures ami-04 DialBegin/DialEnd Dest-only, agi-03.ami with a caller) --------
    def _dial(self, name: str, caller: Channel | None, dest: Channel, tail: Headers) -> Headers:
        body = (self.chan(caller) if caller else []) + self.chan(dest, "Dest") + tail
        return _event(name, "call,all", body)

    def dial_begin(self, caller: Channel | None, dest: Channel, dialstring: str) -> Headers:
        return self._dial("DialBegin", caller, dest, [("DialString", dialstring)])

    def dial_state(self, caller: Channel | None, dest: Channel, status: str) -> Headers:
        return self._dial("DialState", caller, dest, [("DialStatus", status)])

    def dial_end(self, caller: Channel | None, dest: Channel, status: str) -> Headers:
        return self._dial("DialEnd", caller, dest, [("DialStatus", status)])

    def originate_response(self, action_id: str, success: bool, channel: str, target: Headers,
                           reason: int, ch: Channel | None, cid_num: str, cid_name: str) -> Headers:
        """Success names the real channel; failure the dial string and ``<unknown>`` (README #3)."""
        body: Headers = [("ActionID", action_id)] if action_id else []
        body += [("Response", "Success" if success else "Failure"), ("Channel", channel)] + target
        body += [("Reason", str(reason)), ("Uniqueid", ch.uniqueid if success and ch else UNKNOWN),
                 ("CallerIDNum", cid_num), ("CallerIDName", cid_name)]
        if success and ch is not None:
            # fixture ami-04: the odd ChanVariable(<channel>) form only on this event
            body += [(f"ChanVariable({ch.name})", f"{var}={ch.variables.get(var, '')}")
                     for var in self.chanvars]
        return _event("OriginateResponse", "call,all", body)

    # --- bridges (fixture agi-03-exec-dial.ami.txt) ---------------------------------------------
    @staticmethod
    def bridge_create(bridge: Bridge) -> Headers:
        return _event("BridgeCreate", "call,all", bridge_headers(bridge))

    def bridge_enter(self, bridge: Bridge, ch: Channel) -> Headers:
        return _event("BridgeEnter", "call,all", bridge_headers(bridge) + self.chan(ch))

    def bridge_leave(self, bridge: Bridge, ch: Channel) -> Headers:
        return _event("BridgeLeave", "call,all", bridge_headers(bridge) + self.chan(ch))

    @staticmethod
    def bridge_destroy(bridge: Bridge) -> Headers:
        return _event("BridgeDestroy", "call,all", bridge_headers(bridge))

    # --- media (fixtures ami-10 DTMF, ami-12 MOH, ami-23 ChanSpy) ---------------------------------
    def dtmf_begin(self, ch: Channel, digit: str, direction: str) -> Headers:
        return _event("DTMFBegin", "dtmf,all", self.chan(ch) + [("Digit", digit), ("Direction", direction)])

    def dtmf_end(self, ch: Channel, digit: str, direction: str, duration_ms: int = 100) -> Headers:
        return _event("DTMFEnd", "dtmf,all", self.chan(ch) + [
            ("Digit", digit), ("DurationMs", str(duration_ms)), ("Direction", direction)])

    def moh_start(self, ch: Channel, moh_class: str) -> Headers:
        return _event("MusicOnHoldStart", "call,all", self.chan(ch) + [("Class", moh_class)])

    def moh_stop(self, ch: Channel) -> Headers:
        return _event("MusicOnHoldStop", "call,all", self.chan(ch))

    def hold(self, ch: Channel, moh_class: str | None = None) -> Headers:
        """derived from source: main/manager_channels.c channel_hold_cb (``MusicClass`` only when
        the hold suggested one: chan_pjsip's ``moh_suggest``, none from a transfer's hold)."""
        return _event("Hold", "call,all", self.chan(ch) + ([("MusicClass", moh_class)] if moh_class else []))

    def unhold(self, ch: Channel) -> Headers:
        """derived from source: main/manager_channels.c channel_unhold_cb."""
        return _event("Unhold", "call,all", self.chan(ch))

    def chanspy(self, start: bool, spyer: Channel, spyee: Channel) -> Headers:
        name = "ChanSpyStart" if start else "ChanSpyStop"
        return _event(name, "call,all", self.chan(spyer, "Spyer") + self.chan(spyee, "Spyee"))

    # --- transfers (derived from source: main/stasis_bridges.c attended_transfer_to_ami) ---------
    def attended_transfer(self, result: str, transferer: Channel, orig: Bridge | None,
                          second_transferer: Channel, second: Bridge | None,
                          transferee: Channel | None, target: Channel | None,
                          dest_bridge: str | None) -> Headers:
        """``Result`` (``Success``/``Fail``), both transferer legs each with its bridge (absent when
        none), ``Transferee*`` / ``TransferTarget*`` when known, ``IsExternal: No`` for a DTMF
        transfer, then ``DestType: Bridge`` + ``DestBridgeUniqueid`` or ``DestType: Fail``.
        Snapshots are taken now, as Asterisk takes them when it publishes."""
        body: Headers = [("Result", result)] + self.chan(transferer, "OrigTransferer")
        body += _prefixed(bridge_headers(orig), "Orig") if orig else []
        body += self.chan(second_transferer, "SecondTransferer")
        body += _prefixed(bridge_headers(second), "Second") if second else []
        body += self.chan(transferee, "Transferee") if transferee else []
        body += self.chan(target, "TransferTarget") if target else []
        body += [("IsExternal", "No")]
        body += ([("DestType", "Bridge"), ("DestBridgeUniqueid", dest_bridge)] if dest_bridge
                 else [("DestType", "Fail")])
        return _event("AttendedTransfer", "call,all", body)

    # --- AGI (fixture agi-01-env-and-basic-commands.ami.txt) ------------------------------------
    def agi_exec_start(self, ch: Channel, command_id: int, command: str) -> Headers:
        return _event("AGIExecStart", "agi,all", self.chan(ch) + [
            ("CommandId", str(command_id)), ("Command", command)])

    def agi_exec_end(self, ch: Channel, command_id: int, command: str, code: int, result: str) -> Headers:
        return _event("AGIExecEnd", "agi,all", self.chan(ch) + [
            ("CommandId", str(command_id)), ("Command", command), ("ResultCode", str(code)),
            ("Result", result)])

    # --- list items (fixtures ami-19 CoreShowChannel, ami-30 Status) -----------------------------
    def core_show_channel(self, ch: Channel, action_id: str) -> Headers:
        hh, rest = divmod(ch.duration_s(), 3600)
        mm, ss = divmod(rest, 60)
        body: Headers = [("Event", "CoreShowChannel")]
        body += [("ActionID", action_id)] if action_id else []
        return body + self.chan(ch) + [
            ("Application", ch.application), ("ApplicationData", ch.app_data),
            ("Duration", f"{hh:02d}:{mm:02d}:{ss:02d}"),
            ("BridgeId", ch.bridge.uniqueid if ch.bridge else "")]

    def status(self, ch: Channel, action_id: str) -> Headers:
        body: Headers = [("Event", "Status"), ("Privilege", "Call")] + self.chan(ch) + [
            ("Type", ch.tech), ("DNID", ch.variables.get("__DNID", "")),
            ("EffectiveConnectedLineNum", ch.connected_num),
            ("EffectiveConnectedLineName", ch.connected_name), ("TimeToHangup", "0"),
            ("BridgeID", ch.bridge.uniqueid if ch.bridge else ""),
            ("Application", ch.application), ("Data", ch.app_data),
            ("Nativeformats", "(alaw)" if ch.tech == "DAHDI" else "(ulaw)"),
            ("Readformat", "slin"), ("Readtrans", ""), ("Writeformat", "slin"), ("Writetrans", ""),
            ("Callgroup", "0"), ("Pickupgroup", "0"), ("Seconds", str(ch.duration_s()))]
        return body + ([("ActionID", action_id)] if action_id else [])


def _prefixed(headers: Headers, prefix: str) -> Headers:
    return [(prefix + key, value) for key, value in headers]


def ping_timestamp() -> str:
    return f"{time.time():.6f}"
