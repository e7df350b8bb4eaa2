"""AMI and FastAGI framing: bytes <-> messages. Pure, no I/O; the HIL simulator reuses it.

Ground truth is the Asterisk 22 recordings in ``tests/fixtures/asterisk-22``. The parser never
raises on bad input: a line it cannot read becomes an ``AmiMalformed`` item with the reason, so a
reader loop can log it and carry on (pyst2's reader died on ``ChanVariable`` headers).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

EOL = b"\r\n"
BANNER_PREFIX = "Asterisk Call Manager/"
Headers = Sequence[tuple[str, str]]


# --- AMI -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AmiMessage:
    """One AMI message. The first header decides its kind (events may carry ``Response:`` too)."""
    headers: tuple[tuple[str, str], ...]

    @property
    def kind(self) -> str:
        first = self.headers[0][0].lower() if self.headers else ""
        return {"response": "response", "event": "event", "action": "action"}.get(first, "unknown")

    @property
    def name(self) -> str:
        """Event name, response status (``Success``/``Error``/``Goodbye``) or action name."""
        return self.headers[0][1] if self.headers else ""

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def get(self, key: str, default: str | None = None) -> str | None:
        wanted = key.lower()
        for k, v in self.headers:
            if k.lower() == wanted:
                return v
        return default

    def get_all(self, key: str) -> list[str]:
        wanted = key.lower()
        return [v for k, v in self.headers if k.lower() == wanted]

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    @property
    def chan_variables(self) -> dict[str, str]:
        """``ChanVariable: NAME=value`` headers (one per configured variable, empty when unset).

        OriginateResponse spells them ``ChanVariable(<channel>): NAME=value``; both count.
        """
        out: dict[str, str] = {}
        for key, raw in self.headers:
            lowered = key.lower()
            if lowered == "chanvariable" or (lowered.startswith("chanvariable(") and lowered.endswith(")")):
                name, _, value = raw.partition("=")
                out[name] = value
        return out

    @property
    def is_list_start(self) -> bool:
        return (self.get("EventList") or "").lower() == "start"

    @property
    def is_list_end(self) -> bool:
        return (self.get("EventList") or "").lower() == "complete"

    def to_bytes(self) -> bytes:
        return format_message(self.headers)


@dataclass(frozen=True)
class AmiBanner:
    """``Asterisk Call Manager/11.0.0``: one line, no blank line after it."""
    version: str


@dataclass(frozen=True)
class AmiMalformed:
    """Bytes the parser could not read as a message, kept for the log with the reason."""
    raw: bytes
    reason: str


AmiItem = AmiMessage | AmiBanner | AmiMalformed


class AmiParser:
    """Incremental AMI stream parser: ``feed(bytes)`` returns every complete item so far.

    Lines end in ``\\r\\n``; a bare ``\\n`` is accepted too (some proxies rewrite line ends). A
    message ends at an empty line. The banner is recognised only as the stream's first line.
    """

    def __init__(self, expect_banner: bool = True) -> None:
        self._buffer = b""
        self._lines: list[bytes] = []
        self._expect_banner = expect_banner

    def feed(self, data: bytes) -> list[AmiItem]:
        self._buffer += data
        items: list[AmiItem] = []
        while True:
            nl = self._buffer.find(b"\n")
            if nl < 0:
                break
            line = self._buffer[:nl].rstrip(b"\r")
            self._buffer = self._buffer[nl + 1:]
            item = self._take_line(line)
            if item is not None:
                items.append(item)
        return items

    def _take_line(self, line: bytes) -> AmiItem | None:
        if self._expect_banner:
            self._expect_banner = False
            text = line.decode("utf-8", "replace")
            if text.startswith(BANNER_PREFIX):
                return AmiBanner(text[len(BANNER_PREFIX):])
        if line:
            self._lines.append(line)
            return None
        if not self._lines:
            return None  # stray blank line between messages
        lines, self._lines = self._lines, []
        return parse_message_lines(lines)


def parse_message_lines(lines: Sequence[bytes]) -> AmiMessage | AmiMalformed:
    """Headers ``Key: value``; a line without a colon makes the whole message malformed."""
    headers: list[tuple[str, str]] = []
    for line in lines:
        text = line.decode("utf-8", "replace")
        key, sep, value = text.partition(":")
        if not sep or not key.strip() or " " in key.strip():
            return AmiMalformed(b"\r\n".join(lines), f"not a 'Key: value' header line: {text!r}")
        headers.append((key.strip(), value[1:] if value.startswith(" ") else value))
    return AmiMessage(tuple(headers))


def format_message(headers: Headers | Mapping[str, str | Sequence[str]]) -> bytes:
    """Encode headers as one AMI message; a list value repeats the header (``Variable:``)."""
    pairs: Iterable[tuple[str, str]]
    if isinstance(headers, Mapping):
        pairs = _expand(headers)
    else:
        pairs = headers
    out = bytearray()
    for key, value in pairs:
        if "\r" in str(value) or "\n" in str(value):
            raise ValueError(f"AMI header {key!r} must not contain a line break")
        out += f"{key}: {value}".encode("utf-8") + EOL
    return bytes(out + EOL)


def format_action(action: str, action_id: str, **fields: str | Sequence[str]) -> bytes:
    """``Action: <name>`` first, then ``ActionID``, then the fields in the given order."""
    headers: list[tuple[str, str]] = [("Action", action), ("ActionID", action_id)]
    headers.extend(_expand(fields))
    return format_message(headers)


def _expand(fields: Mapping[str, str | Sequence[str]]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in fields.items():
        if isinstance(value, (list, tuple)):
            pairs.extend((key, str(v)) for v in value)
        else:
            pairs.append((key, str(value)))
    return pairs


# --- FastAGI -------------------------------------------------------------------------------------

AGI_ENCODING = "utf-8"


def parse_agi_env(lines: Iterable[str]) -> dict[str, str]:
    """The ``agi_*: value`` block Asterisk sends first; stops at the empty line.

    Keys keep their ``agi_`` prefix; ``agi_arg_N`` lines appear only when the AGI has arguments.
    A line without ``: `` is skipped (the caller logs it), never fatal.
    """
    env: dict[str, str] = {}
    for line in lines:
        line = line.rstrip("\r\n")
        if line == "":
            break
        key, sep, value = line.partition(":")
        if sep and key.strip():
            env[key.strip()] = value[1:] if value.startswith(" ") else value
    return env


def format_agi_env(env: Mapping[str, str]) -> bytes:
    """Simulator side: the env block as Asterisk writes it (LF only, blank line at the end)."""
    return "".join(f"{k}: {v}\n" for k, v in env.items()).encode(AGI_ENCODING) + b"\n"


_REPLY = re.compile(r"^(?P<code>\d{3})(?P<sep>[ -])(?P<rest>.*)$")
_RESULT = re.compile(r"^result=(?P<result>\S*)(?: \((?P<data>.*?)\))?(?P<extra>.*)$")


@dataclass(frozen=True)
class AgiReply:
    """One FastAGI reply.

    ``kind``: ``ok`` (200), ``trying`` (``100 result=0 Trying...``, more follows), ``dead`` (511,
    command not permitted on a dead channel), ``hangup`` (the bare ``HANGUP`` line), ``invalid``
    (510), ``usage`` (520, multi-line), ``error`` (anything else).
    """
    kind: str
    code: int
    result: str = ""
    data: str | None = None
    extras: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def ends_call(self) -> bool:
        return self.kind in ("dead", "hangup")

    @property
    def result_int(self) -> int | None:
        try:
            return int(self.result)
        except ValueError:
            return None


def parse_agi_reply(line: str) -> AgiReply:
    """Parse one reply line. ``520-`` opens a usage block: read on until a ``520 `` line."""
    line = line.rstrip("\r\n")
    if line.strip().upper() == "HANGUP":
        return AgiReply("hangup", 0, text=line)
    m = _REPLY.match(line)
    if not m:
        return AgiReply("error", 0, text=line)
    code, rest = int(m["code"]), m["rest"]
    if code == 520:
        return AgiReply("usage", code, text=rest)
    if code == 510:
        return AgiReply("invalid", code, text=rest)
    if code == 511:
        return AgiReply("dead", code, text=rest)
    r = _RESULT.match(rest)
    if code in (100, 200) and r:
        extras = dict(
            part.split("=", 1) for part in r["extra"].split() if "=" in part
        )
        kind = "trying" if code == 100 else "ok"
        return AgiReply(kind, code, r["result"], r["data"], extras, rest)
    return AgiReply("error", code, text=rest)


def quote_agi_arg(value: object) -> str:
    """Quote an AGI argument when it has spaces or is empty (``STREAM FILE x ""``)."""
    text = str(value)
    if text == "" or any(c in text for c in ' \t"'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def format_agi_command(command: str, *args: object) -> bytes:
    parts = [command.strip()] + [quote_agi_arg(a) for a in args]
    return (" ".join(parts) + "\n").encode(AGI_ENCODING)


def split_agi_command(line: str) -> list[str]:
    """Simulator side: split a command line honouring double quotes and backslash escapes."""
    words: list[str] = []
    current: list[str] = []
    in_quotes = escaped = had_quotes = False
    for ch in line.rstrip("\r\n"):
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and in_quotes:
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
            had_quotes = True
        elif ch in " \t" and not in_quotes:
            if current or had_quotes:
                words.append("".join(current))
            current, had_quotes = [], False
        else:
            current.append(ch)
    if current or had_quotes:
        words.append("".join(current))
    return words


def format_agi_reply(code: int, result: str | int = "", data: str | None = None, **extras: object) -> bytes:
    """Simulator side: ``200 result=1 (hello world)``, ``200 result=0 endpos=19112``..."""
    text = f"{code} result={result}"
    if data is not None:
        text += f" ({data})"
    for key, value in extras.items():
        text += f" {key}={value}"
    return (text + "\n").encode(AGI_ENCODING)
