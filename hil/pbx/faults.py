"""Fault injection: the misbehaviours a real box shows, as data, plus the bytes they put on the wire.

``at_ms`` counts from the world's start (``PbxSimulator.start_world``).

=====================  =========================================================================
kind                   effect
=====================  =========================================================================
``ami_disconnect``     the server drops every AMI connection at ``at_ms``; calls go on, and the
                       edge may log in again at once
``ami_malformed``      at ``at_ms`` every logged-in AMI session gets a broken message:
                       ``variant`` ``garbage`` | ``no_colon`` | ``chanvariable`` | ``non_utf8`` |
                       ``split`` (a good event written in small pieces with pauses)
``ami_slow``           every AMI response is delayed by ``delay_ms`` (from ``at_ms`` on)
``agi_reset``          the FastAGI socket of ``call`` (every call if none) is reset (RST,
                       SO_LINGER 0) after ``after_commands`` commands, or at ``at_ms``
``agi_slow``           every AGI reply (of ``call``, or of every call) is delayed by ``delay_ms``
``mixmonitor_crash``   at ``at_ms`` every open recording stops as if Asterisk died: the audio
                       written so far stays, the WAV header's sizes stay 0 (never fixed); calls
                       go on
=====================  =========================================================================
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

from hil.pbx.errors import ScriptError

KINDS = ("ami_disconnect", "ami_malformed", "ami_slow", "agi_reset", "agi_slow", "mixmonitor_crash")
MALFORMED_VARIANTS = ("garbage", "no_colon", "chanvariable", "non_utf8", "split")


@dataclass
class Fault:
    kind: str
    at_ms: int | None = None
    call: str | None = None
    variant: str = "garbage"
    delay_ms: int = 0
    after_commands: int | None = None


def parse_faults(items: list[Any]) -> list[Fault]:
    faults = []
    for i, item in enumerate(items):
        path = f"faults[{i}]"
        if not isinstance(item, dict):
            raise ScriptError(f"{path}: expected a mapping")
        unknown = set(item) - set(Fault.__dataclass_fields__)
        if unknown:
            raise ScriptError(f"{path}.{sorted(unknown)[0]}: unknown key")
        fault = Fault(**item)
        if fault.kind not in KINDS:
            raise ScriptError(f"{path}.kind: expected one of {', '.join(KINDS)}, got {fault.kind!r}")
        if fault.kind == "ami_malformed" and fault.variant not in MALFORMED_VARIANTS:
            raise ScriptError(f"{path}.variant: expected one of {', '.join(MALFORMED_VARIANTS)}")
        if fault.kind == "agi_reset" and fault.after_commands is None and fault.at_ms is None:
            raise ScriptError(f"{path}: agi_reset needs after_commands or at_ms")
        faults.append(fault)
    return faults


def reset_socket(sock: socket.socket) -> None:
    """Close with RST instead of FIN: SO_LINGER on with a zero timeout."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def malformed_ami(variant: str, channel: str = "PJSIP/8001-00000001", uniqueid: str = "1795392103.1") -> list[bytes]:
    """The byte chunks of one broken AMI message (``split`` returns several chunks)."""
    if variant == "garbage":
        return [b"\x16\x03\x01garbage \xff\xfe that is no AMI at all\r\n\r\n"]
    if variant == "no_colon":
        return [b"Event: Newstate\r\nPrivilege: call,all\r\nThis line has no colon\r\n"
                + f"Channel: {channel}\r\n".encode() + b"\r\n"]
    if variant == "chanvariable":
        return [b"Event: VarSet\r\nPrivilege: dialplan,all\r\n"
                + f"Channel: {channel}\r\nUniqueid: {uniqueid}\r\n".encode()
                + f"ChanVariable({channel}): ACC_TAG=a=b\r\n".encode()
                + b"ChanVariable: CUSTOMER_ID\r\nChanVariable: =\r\nChanVariable(: x\r\n"
                + b"Variable: ACC_TAG\r\nValue: a=b\r\n\r\n"]
    if variant == "non_utf8":
        # a GBK caller name (\u5f20\u4e09) as a Chinese PBX admin would type it, then Latin-1
        return [b"Event: NewCallerid\r\nPrivilege: call,all\r\n"
                + f"Channel: {channel}\r\n".encode()
                + b"CallerIDNum: 13800138000\r\nCallerIDName: \xd5\xc5\xc8\xfd\r\n"
                + b"ConnectedLineName: Jos\xe9\r\n"
                + f"Uniqueid: {uniqueid}\r\n".encode()
                + b"CID-CallingPres: 0 (Presentation Allowed, Not Screened)\r\n\r\n"]
    if variant == "split":
        whole = (b"Event: Newexten\r\nPrivilege: dialplan,all\r\n"
                 + f"Channel: {channel}\r\nUniqueid: {uniqueid}\r\n".encode()
                 + b"Extension: s\r\nApplication: NoOp\r\nAppData: split across writes\r\n\r\n")
        return [whole[i:i + 7] for i in range(0, len(whole), 7)]
    raise ValueError(f"unknown malformed variant {variant!r}")
