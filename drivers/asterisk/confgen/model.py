"""What the generator needs to know about a site, and the checks that keep it safe.

A site description comes from a technician's command line today and from ``edge.toml`` later; either
way it is validated here before any text is produced, and every error names the field
(``desk_phones[1].password: at least 8 characters``), because a typo in a dialplan or a weak SIP
password on a branch LAN is found by a caller or a fraudster, not by Asterisk.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Sequence

from drivers.asterisk.errors import AsteriskError

PROFILES = ("fxo", "pri")
SWITCHTYPES = ("euroisdn", "qsig", "national", "ni1", "dms100", "4ess", "5ess")
CID_SIGNALLING = ("dtmf", "bell", "v23", "v23_jp")
CID_START = ("polarity", "ring", "polarity_IN", "dtmf")
# What the edge reads (events) and does (actions) over AMI. "originate" is needed for Originate
# (dialer, roaming, click-to-call, ChanSpy legs); dtmf, cdr and dialplan exist only as read classes.
AMI_READ = ("system", "call", "agent", "user", "dtmf", "reporting", "cdr", "dialplan")
AMI_WRITE = ("system", "call", "agent", "user", "reporting", "originate")
CHINA_BUSY_PATTERN = "350,350"  # Chinese busy tone: 450 Hz, 0.35 s on / 0.35 s off


class ConfgenError(AsteriskError, ValueError):
    """The site description cannot be turned into a working configuration; names the bad field."""


@dataclass(frozen=True)
class DeskPhone:
    """A SIP desk phone (PJSIP endpoint); ``extension`` is also its SIP user name."""
    extension: str
    name: str
    password: str


@dataclass(frozen=True)
class TrunkLine:
    """One DAHDI trunk channel.

    ``profile``: ``fxo`` an analog exchange line on an FXO port, ``pri`` one B-channel of an
    E1/PRI span. Analog-only, per line, because Chinese lines differ by exchange and by what was
    ordered from the carrier: ``cid_signalling``/``cid_start`` say how caller ID arrives (DTMF
    after a polarity reversal is the common case), ``polarity_answer`` turns on answer and
    hang-up supervision by polarity reversal (反极信号) — only for lines that really send it, or
    outgoing calls are never seen as answered.
    """
    channel: int
    profile: str
    cid_signalling: str = "dtmf"
    cid_start: str = "polarity"
    polarity_answer: bool = False


@dataclass(frozen=True)
class Site:
    """Everything the generator needs to know about one edge box.

    ``edge_host`` is where the edge's FastAGI server listens, as seen from Asterisk (127.0.0.1
    when both run on the box). ``fallback_extensions``: which desk phones ring a trunk call when
    the edge cannot be reached; ``None`` means all of them, ``()`` none (the caller hears
    congestion).
    """
    edge_host: str
    ami_secret: str
    desk_phones: tuple[DeskPhone, ...] = ()
    trunks: tuple[TrunkLine, ...] = ()
    fastagi_port: int = 4573
    ami_user: str = "edge"
    ami_port: int = 5038
    ami_bindaddr: str = "127.0.0.1"
    ami_permit: tuple[str, ...] = ("127.0.0.1/32",)
    ami_channelvars: tuple[str, ...] = ()
    sip_bind: str = "0.0.0.0:5060"
    moh_class: str = "default"
    fallback_extensions: tuple[str, ...] | None = None
    pri_switchtype: str = "euroisdn"

    def agi_url(self, script: str) -> str:
        return f"agi://{self.edge_host}:{self.fastagi_port}/{script}"


_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")
_EXTENSION = re.compile(r"^\d{2,8}$")
_BAD_NAME_CHARS = set('"<>;\\') | {chr(c) for c in range(32)} | {"\x7f"}


def check(site: Site) -> None:
    """Refuse anything that would produce a broken or unsafe configuration."""
    if not _HOST.match(site.edge_host):
        raise ConfgenError(f"edge_host: not a host name or address: {site.edge_host!r}")
    for key in ("fastagi_port", "ami_port"):
        port = getattr(site, key)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ConfgenError(f"{key}: expected 1-65535, got {port!r}")
    _check_secret("ami_secret", site.ami_secret)
    if not _WORD.match(site.ami_user) or site.ami_user == "general":
        raise ConfgenError(f"ami_user: letters, digits, '_', '.', '-' only, got {site.ami_user!r}")
    for key, value in (("ami_bindaddr", site.ami_bindaddr), *(("ami_permit", n) for n in site.ami_permit)):
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfgenError(f"{key}: not an address or network: {value!r}") from None
    host, _, port = site.sip_bind.rpartition(":")
    try:
        ipaddress.ip_address(host)
        valid_port = port.isdigit() and 0 < int(port) < 65536
    except ValueError:
        valid_port = False
    if not valid_port:
        raise ConfgenError(f"sip_bind: expected ADDRESS:PORT such as 0.0.0.0:5060, got {site.sip_bind!r}")
    for var in site.ami_channelvars:
        if not var.isidentifier():
            raise ConfgenError(f"ami_channelvars: not a variable name: {var!r}")
    if not _WORD.match(site.moh_class):
        raise ConfgenError(f"moh_class: letters, digits, '_', '.', '-' only, got {site.moh_class!r}")
    if site.pri_switchtype not in SWITCHTYPES:
        raise ConfgenError(f"pri_switchtype: expected one of {SWITCHTYPES}, got {site.pri_switchtype!r}")
    _check_phones(site.desk_phones)
    _check_trunks(site.trunks)
    known = {phone.extension for phone in site.desk_phones}
    for ext in site.fallback_extensions or ():
        if ext not in known:
            raise ConfgenError(f"fallback_extensions: {ext!r} is not a desk phone")


def _check_phones(phones: Sequence[DeskPhone]) -> None:
    seen: set[str] = set()
    for i, phone in enumerate(phones):
        where = f"desk_phones[{i}]"
        if not _EXTENSION.match(phone.extension):
            raise ConfgenError(f"{where}.extension: expected 2-8 digits, got {phone.extension!r}")
        if phone.extension in seen:
            raise ConfgenError(f"{where}.extension: {phone.extension} appears twice")
        seen.add(phone.extension)
        if not phone.name.strip() or _BAD_NAME_CHARS & set(phone.name):
            raise ConfgenError(f"{where}.name: must be non-empty, without quotes, <>, ; or \\: "
                               f"{phone.name!r}")
        _check_secret(f"{where}.password", phone.password)
        if phone.password == phone.extension:
            raise ConfgenError(f"{where}.password: must not be the extension number")


def _check_trunks(trunks: Sequence[TrunkLine]) -> None:
    seen: set[int] = set()
    for i, trunk in enumerate(trunks):
        where = f"trunks[{i}]"
        if not isinstance(trunk.channel, int) or not 0 < trunk.channel < 1024:
            raise ConfgenError(f"{where}.channel: expected 1-1023, got {trunk.channel!r}")
        if trunk.channel in seen:
            raise ConfgenError(f"{where}.channel: {trunk.channel} appears twice")
        seen.add(trunk.channel)
        for key, value, choices in (("profile", trunk.profile, PROFILES),
                                    ("cid_signalling", trunk.cid_signalling, CID_SIGNALLING),
                                    ("cid_start", trunk.cid_start, CID_START)):
            if value not in choices:
                raise ConfgenError(f"{where}.{key}: expected one of {choices}, got {value!r}")


def _check_secret(key: str, secret: str) -> None:
    """SIP and AMI passwords are scanned for from the whole LAN: no short or odd ones."""
    if len(secret) < 8:
        raise ConfgenError(f"{key}: at least 8 characters")
    if any(c.isspace() or c in ";\\" or ord(c) < 32 for c in secret):
        raise ConfgenError(f"{key}: no spaces, ';' or '\\' (Asterisk config syntax)")
