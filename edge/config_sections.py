"""The config sections of the call features (recording, IVR, rating, roaming, voicemail, API):
their frozen dataclasses and readers, used by ``edge.config.parse_config``.

Kept apart from ``edge.config`` (agents, groups, routing, codes and their cross references) so
each file stays one concern; ``edge.config`` re-exports the classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

from edge.config_reader import TableReader, join_path
from edge.errors import ConfigError

if TYPE_CHECKING:
    from edge.config import AgentConfig

RECORD_POLICIES = ("always", "never", "on_demand")
ROAM_PRESENT = ("caller", "company")


@dataclass(frozen=True)
class RecordingSection:
    """Call recording (REC-1/2). Asterisk's MixMonitor writes WAVs into ``spool_dir`` on the same
    box; the edge encodes them to MP3 under ``root/<YYYY-MM-DD>/<agent>/`` and deletes a WAV only
    after its MP3 decoded back to the right length. ``inbound``/``outbound``: the default policy of
    an extension (an agent's ``record_inbound``/``record_outbound`` overrides it)."""
    enabled: bool = True
    spool_dir: str = "/var/spool/asterisk/monitor"
    root: str = "recordings"
    inbound: str = "always"
    outbound: str = "always"
    bitrate_kbps: int = 16
    quality: int = 5
    workers: int = 0          # encoder processes; 0 = one per CPU core
    settle_s: float = 2.0     # a WAV must stop growing this long (virtual s) before it is encoded
    from_answer: bool = False  # inbound "always": record from the trunk's answer, IVR included

    def policy(self, agent: "AgentConfig", direction: str) -> str:
        if not self.enabled:
            return "never"
        own = agent.record_inbound if direction == "inbound" else agent.record_outbound
        return own or (self.inbound if direction == "inbound" else self.outbound)


@dataclass(frozen=True)
class RatingSection:
    """Satisfaction rating (INB-12): after the agent hangs up, the caller hears ``prompt`` and
    keys a score; a score in ``bad`` puts a callback task on the team lead's list."""
    enabled: bool = False
    prompt: str = "cc/rate-call"
    thanks_prompt: str = "cc/rate-thanks"
    timeout_s: float = 8.0
    scores: Mapping[str, str] = field(default_factory=lambda: MappingProxyType(
        {"1": "satisfied", "2": "neutral", "3": "unsatisfied"}))
    bad: tuple[str, ...] = ("3",)


@dataclass(frozen=True)
class RoamingSection:
    """Mobile roaming (INB-8): calls for an agent who is away (``roam_when_away``) or out of
    hours (a group's ``out_of_hours = "roam"``) ring the agent's mobile through ``trunk_group``.
    ``present``: ``caller`` shows the customer's number on the mobile (E1/PRI trunks that allow
    it); ``company`` shows ``company_number`` (analog lines and carriers that refuse a foreign
    caller ID)."""
    trunk_group: str = "g0"
    present: str = "caller"
    company_number: str = ""
    ring_timeout_s: int = 25

    def dial_string(self, mobile: str) -> str:
        return f"DAHDI/{self.trunk_group}/{mobile}"


@dataclass(frozen=True)
class IvrSection:
    """IVR flows (INB-11): YAML/JSON files in ``flows_dir``, checked at load against the prompts
    in ``prompt_dirs`` (Asterisk's sounds folders), so a missing prompt stops the edge at start,
    not a caller mid-call."""
    flows_dir: str = ""
    prompt_dirs: tuple[str, ...] = ("/var/lib/asterisk/sounds/zh", "/var/lib/asterisk/sounds")


@dataclass(frozen=True)
class VoicemailSection:
    """Voicemail (INB-13): the caller's message is recorded by Asterisk into the recording
    spool dir and encoded like a call recording, filed under ``voicemail-<box>``."""
    max_s: int = 120
    silence_s: int = 5
    greeting: str = "cc/voicemail-greeting"
    thanks: str = "cc/voicemail-thanks"


@dataclass(frozen=True)
class ApiSection:
    """The local HTTP API (``edge.api``): loopback by default, no authentication yet; port 0
    picks a free one (tests)."""
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080


def read_recording(t: TableReader, base_dir: str | Path | None) -> RecordingSection:
    root = t.text("root", "recordings")
    if base_dir is not None and not Path(root).is_absolute():
        root = str(Path(base_dir) / root)
    section = RecordingSection(
        enabled=t.flag("enabled", True),
        spool_dir=t.text("spool_dir", "/var/spool/asterisk/monitor"),
        root=root,
        inbound=t.text("inbound", "always", choices=RECORD_POLICIES),
        outbound=t.text("outbound", "always", choices=RECORD_POLICIES),
        bitrate_kbps=t.integer("bitrate_kbps", 16, minimum=8, maximum=320),
        quality=t.integer("quality", 5, minimum=0, maximum=9),
        workers=t.integer("workers", 0, minimum=0, maximum=64),
        settle_s=t.number("settle_s", 2.0, minimum=0),
        from_answer=t.flag("from_answer", False),
    )
    t.finish()
    return section


def read_roaming(t: TableReader) -> RoamingSection:
    section = RoamingSection(
        trunk_group=t.text("trunk_group", "g0"),
        present=t.text("present", "caller", choices=ROAM_PRESENT),
        company_number=t.phone("company_number", ""),
        ring_timeout_s=t.integer("ring_timeout_s", 25, minimum=5),
    )
    if section.present == "company" and not section.company_number:
        raise t.error("company_number", "required when present = \"company\"")
    t.finish()
    return section


def read_rating(t: TableReader) -> RatingSection:
    scores = t.text_map("scores") or dict(RatingSection().scores)
    for key in scores:
        if not (key.isdigit() and len(key) == 1):
            raise ConfigError(join_path(t.at("scores"), key), "a score key must be one digit")
    bad = t.text_list("bad", ("3",))
    for i, key in enumerate(bad):
        if key not in scores:
            raise ConfigError(f"{t.at('bad')}[{i}]", f"{key!r} is not one of the scores")
    section = RatingSection(
        enabled=t.flag("enabled", False),
        prompt=t.text("prompt", "cc/rate-call"),
        thanks_prompt=t.text("thanks_prompt", "cc/rate-thanks"),
        timeout_s=t.number("timeout_s", 8.0, positive=True),
        scores=MappingProxyType(scores),
        bad=bad,
    )
    t.finish()
    return section


def read_ivr(t: TableReader, base_dir: str | Path | None) -> IvrSection:
    def local(path: str) -> str:
        return str(Path(base_dir) / path) if base_dir is not None and not Path(path).is_absolute() else path

    flows_dir = t.text("flows_dir", "")
    section = IvrSection(
        flows_dir=local(flows_dir) if flows_dir else "",
        prompt_dirs=tuple(local(p) for p in t.text_list("prompt_dirs", IvrSection.prompt_dirs)),
    )
    t.finish()
    return section


def read_api(t: TableReader) -> ApiSection:
    section = ApiSection(enabled=t.flag("enabled", True), host=t.text("host", "127.0.0.1"),
                         port=t.integer("port", 8080, minimum=0, maximum=65535))
    t.finish()
    return section


def read_voicemail(t: TableReader) -> VoicemailSection:
    section = VoicemailSection(
        max_s=t.integer("max_s", 120, minimum=5, maximum=600),
        silence_s=t.integer("silence_s", 5, minimum=0, maximum=60),
        greeting=t.text("greeting", "cc/voicemail-greeting"),
        thanks=t.text("thanks", "cc/voicemail-thanks"))
    t.finish()
    return section


@dataclass(frozen=True)
class SyncSection:
    """Edge -> HQ sync (``edge.sync``): every CDR and notification also goes to the outbox and is
    published to the broker until HQ acknowledges it. ``username`` defaults to the edge id (the
    broker's ACLs confine a user to ``cc/v1/<user>/...``)."""
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    in_flight: int = 1000
    resend_s: float = 5.0
    credentials: str = ""     # enrollment file (``edge enroll``): id, broker user/password, HQ URL
    hq_url: str = ""          # HTTPS base of the aggregator, for recording uploads and enrollment
    api_token: str = ""       # the edge's bearer token at HQ (issued at enrollment)
    health_s: float = 60.0    # how often the edge reports its health to HQ
    process: bool = True      # publish from a child process (edge.sync.process), off the core's GIL


@dataclass(frozen=True)
class UploadSection:
    """Recording upload to HQ (``edge.sync.uploader``) and local retention of uploaded MP3s: the
    edge deletes its copy only after HQ confirmed the checksum, then oldest uploaded first once
    older than ``retention_days`` or while the recordings disk is fuller than ``max_disk_share``."""
    enabled: bool = False
    chunk_bytes: int = 1024 * 1024
    retry_s: float = 30.0
    retention_days: float = 30.0
    max_disk_share: float = 0.8


def read_upload(t: TableReader) -> UploadSection:
    section = UploadSection(
        enabled=t.flag("enabled", False),
        chunk_bytes=t.integer("chunk_bytes", 1024 * 1024, minimum=4096, maximum=64 * 1024 * 1024),
        retry_s=t.number("retry_s", 30.0, positive=True),
        retention_days=t.number("retention_days", 30.0, positive=True),
        max_disk_share=t.number("max_disk_share", 0.8, positive=True),
    )
    t.finish()
    if section.max_disk_share > 1:
        raise ConfigError(t.at("max_disk_share"), "is a share of the disk: at most 1")
    return section


def read_sync(t: TableReader) -> SyncSection:
    section = SyncSection(
        enabled=t.flag("enabled", False),
        host=t.text("host", "127.0.0.1"),
        port=t.integer("port", 1883, minimum=1, maximum=65535),
        username=t.text("username", ""),
        password=t.text("password", "", allow_empty=True),
        in_flight=t.integer("in_flight", 1000, minimum=1, maximum=65535),
        resend_s=t.number("resend_s", 5.0, positive=True),
        credentials=t.text("credentials", "", allow_empty=True),
        hq_url=t.text("hq_url", "", allow_empty=True),
        api_token=t.text("api_token", "", allow_empty=True),
        health_s=t.number("health_s", 60.0, positive=True),
        process=t.flag("process", True),
    )
    t.finish()
    return section
