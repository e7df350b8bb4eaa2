"""The edge's configuration: one loader, frozen dataclasses, validated at load.

``load_config(path)`` reads TOML; ``parse_config(data)`` validates an already-parsed dict (tests and
HQ-pushed config use it). Any problem raises ``ConfigError`` naming the key path, and unknown keys
are rejected, because a misspelt key silently ignored is a branch routing calls wrongly for weeks.
The shipped example (``edge/data/edge.example.toml``, also ``example_config()``) documents every key.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.config_reader import TableReader, join_path
from edge.config_sections import (RECORD_POLICIES, ApiSection, IvrSection, RatingSection,
                                  RecordingSection, RoamingSection, SyncSection, UploadSection, VoicemailSection,
                                  read_api, read_ivr, read_rating, read_recording, read_roaming,
                                  read_sync, read_upload, read_voicemail)
from edge.errors import ConfigError
from edge.hours import PERIOD_KINDS, WorkCalendar, parse_calendars
from edge.ivr.loader import load_flows
from edge.ivr.model import Flow

DATA_DIR = Path(__file__).with_name("data")
EXAMPLE_PATH = DATA_DIR / "edge.example.toml"
ROLES = ("agent", "team_lead", "supervisor", "admin")
STRATEGIES = ("least_calls", "extension_order")
TERMINAL_OVERFLOWS = ("voicemail", "callback", "hangup")
OUT_OF_HOURS = ("play", "voicemail", "roam")
CODE_ACTIONS = ("listen", "whisper", "barge", "force_hangup", "pickup", "trunk_dial",
                "toggle_busy", "toggle_login", "toggle_away", "disabled")
SUPERVISING = ("supervisor", "team_lead")


@dataclass(frozen=True)
class EdgeSection:
    id: str
    timezone: str = "Asia/Shanghai"
    time_scale: float = 1.0
    store: str = "edge.sqlite3"
    synchronous: str = "NORMAL"  # FULL: every commit survives a power cut too (one fsync each)


@dataclass(frozen=True)
class AsteriskSection:
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    ami_user: str = "edge"
    ami_secret: str = ""
    fastagi_host: str = "0.0.0.0"
    fastagi_port: int = 4573
    fastagi_workers: int = 64


@dataclass(frozen=True)
class TrunkConfig:
    """One trunk channel (``DAHDI/<channel>-1``); ``number`` is the line's own number (its DID)."""
    channel: int
    profile: str
    number: str = ""


@dataclass(frozen=True)
class AgentConfig:
    id: str
    name: str
    extension: str
    dial_string: str
    mobile: str = ""
    roles: tuple[str, ...] = ("agent",)
    groups: tuple[str, ...] = ()
    logged_in: bool = True
    wrap_up_s: float = 5.0
    roam_when_away: bool = False  # INB-8: while away, calls for this agent ring ``mobile``
    forward_busy: str = ""        # TEL-2 遇忙转接: an extension or outside number
    forward_no_answer: str = ""
    record_inbound: str = ""   # always | never | on_demand; "" = the [recording] default
    record_outbound: str = ""


@dataclass(frozen=True)
class GroupConfig:
    """A skill group. ``max_wait_s``/``max_queue_len`` of ``None`` mean no limit.

    ``ring_failure_backoff_s``: after a ring of this group's call fails at an agent's phone (Dial
    NOANSWER, BUSY, CHANUNAVAIL, CONGESTION), the agent is offered no call at all for this long.
    ``auto_busy_after_misses``: that many consecutive unanswered rings (NOANSWER) set the agent
    busy (示忙); 0 switches this off.
    """
    name: str
    strategy: str = "least_calls"
    ring_timeout_s: int = 20
    max_wait_s: float | None = None
    max_queue_len: int | None = None
    overflow: str = "hangup"
    ring_failure_backoff_s: float = 30.0
    auto_busy_after_misses: int = 0
    calendar: str = ""          # a [[calendars]] name: working hours, breaks, holidays (INB-7)
    welcome: Mapping[str, str] = field(default_factory=dict)  # period kind -> welcome prompt
    out_of_hours: str = "play"  # outside "open": play the closed prompt, voicemail, or roam
    on_call: tuple[str, ...] = ()  # agent ids whose mobiles take out-of-hours calls ("roam")
    callback_after_s: float | None = None  # INB-9: offer a callback after this long queued
    callback_attempts: int = 3             # dial a callback at most this often
    callback_retry_s: float = 300.0        # between failed attempts
    closed_prompts: Mapping[str, str] = field(default_factory=dict)  # period kind -> prompt

    @property
    def overflow_group(self) -> str | None:
        return self.overflow[len("group:"):] if self.overflow.startswith("group:") else None


@dataclass(frozen=True)
class MenuConfig:
    """The customer-type IVR menu, played when the call's DID is in ``dids`` and the group it would
    take without the menu is in ``groups``; an empty list matches everything."""
    prompt: str
    digits: Mapping[str, str]
    timeout_s: float = 5.0
    dids: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def max_digits(self) -> int:
        return max(len(key) for key in self.digits)


@dataclass(frozen=True)
class VipEntry:
    number: str
    owner: str


@dataclass(frozen=True)
class BlacklistEntry:
    number: str
    action: str  # "reject" | "flag"


@dataclass(frozen=True)
class RoutingConfig:
    default_group: str
    did_groups: Mapping[str, str] = field(default_factory=dict)
    region_groups: Mapping[str, str] = field(default_factory=dict)
    customer_type_menu: MenuConfig | None = None
    sticky_last_agent: bool = False
    sticky_wait_s: float = 0.0
    vip: tuple[VipEntry, ...] = ()
    blacklist: tuple[BlacklistEntry, ...] = ()
    prefix_table: str | None = None  # None: the shipped edge/data/prefixes.csv
    did_flows: Mapping[str, str] = field(default_factory=dict)  # DID -> IVR flow id
    default_flow: str = ""           # the flow for every other DID ("" = none)


@dataclass(frozen=True)
class CodeRule:
    """One ``##code``: its prefix, what it does and who may use it (no roles: any agent)."""
    prefix: str
    action: str
    roles: frozenset[str] = frozenset()


DEFAULT_CODES: Mapping[str, CodeRule] = MappingProxyType({
    rule.prefix: rule for rule in (
        CodeRule("##1", "listen", frozenset(SUPERVISING)),
        CodeRule("##2", "whisper", frozenset(SUPERVISING)),
        CodeRule("##3", "trunk_dial"),
        CodeRule("##4", "barge", frozenset(SUPERVISING)),
        CodeRule("##5", "force_hangup", frozenset(SUPERVISING)),
        CodeRule("##6", "pickup"),
        CodeRule("##7", "toggle_busy"),
        CodeRule("##8", "toggle_login"),
        CodeRule("##9", "toggle_away"),
    )
})


@dataclass(frozen=True)
class EdgeConfig:
    edge: EdgeSection
    asterisk: AsteriskSection
    trunks: tuple[TrunkConfig, ...]
    agents: tuple[AgentConfig, ...]
    groups: tuple[GroupConfig, ...]
    routing: RoutingConfig
    codes: Mapping[str, CodeRule] = field(default_factory=lambda: DEFAULT_CODES)
    recording: RecordingSection = RecordingSection()
    calendars: Mapping[str, WorkCalendar] = field(default_factory=dict)
    ivr: IvrSection = IvrSection()
    rating: RatingSection = RatingSection()
    roaming: RoamingSection = RoamingSection()
    api: ApiSection = ApiSection()
    voicemail: VoicemailSection = VoicemailSection()
    sync: SyncSection = SyncSection()
    upload: UploadSection = UploadSection()
    flows: Mapping[str, Flow] = field(default_factory=dict)

    def group(self, name: str) -> GroupConfig:
        return next(g for g in self.groups if g.name == name)


# --- loading -------------------------------------------------------------------------------------

def load_config(path: str | Path) -> EdgeConfig:
    """Read and validate a TOML file; a relative ``prefix_table`` is taken from the file's folder."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from exc
    return parse_config(data, base_dir=path.parent)


def example_config() -> EdgeConfig:
    """The shipped example branch (tests and the demo use it)."""
    return load_config(EXAMPLE_PATH)


def parse_config(data: Mapping[str, Any], base_dir: str | Path | None = None) -> EdgeConfig:
    root = TableReader(data)
    edge = _read_edge(root.table("edge"))
    asterisk = _read_asterisk(root.table("asterisk"))
    trunks = root.each("trunks", _read_trunk)
    agents = root.each("agents", _read_agent)
    groups = root.each("groups", _read_group)
    routing = _read_routing(root.table("routing"), groups, base_dir)
    codes = _read_codes(root.table("codes"))
    recording = read_recording(root.table("recording"), base_dir)
    calendars = parse_calendars(root.raw("calendars", []), edge.timezone)
    ivr = read_ivr(root.table("ivr"), base_dir)
    rating = read_rating(root.table("rating"))
    roaming = read_roaming(root.table("roaming"))
    api = read_api(root.table("api"))
    voicemail = read_voicemail(root.table("voicemail"))
    sync = read_sync(root.table("sync"))
    upload = read_upload(root.table("upload"))
    root.finish()
    flows = load_flows(ivr.flows_dir, ivr.prompt_dirs) if ivr.flows_dir else {}
    config = EdgeConfig(edge, asterisk, trunks, agents, groups, routing, codes,
                        recording=recording, calendars=MappingProxyType(calendars), ivr=ivr,
                        flows=MappingProxyType(flows), rating=rating, roaming=roaming, api=api,
                        voicemail=voicemail, sync=sync, upload=upload)
    check_references(config)
    return config


def _read_edge(t: TableReader) -> EdgeSection:
    section = EdgeSection(
        id=t.text("id"),
        timezone=t.text("timezone", "Asia/Shanghai"),
        time_scale=t.number("time_scale", 1.0, positive=True),
        store=t.text("store", "edge.sqlite3"),
        synchronous=t.text("synchronous", "NORMAL", choices=("NORMAL", "FULL")),
    )
    try:
        ZoneInfo(section.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise t.error("timezone", f"unknown time zone {section.timezone!r}") from exc
    t.finish()
    return section


def _read_asterisk(t: TableReader) -> AsteriskSection:
    section = AsteriskSection(
        ami_host=t.text("ami_host", "127.0.0.1"),
        ami_port=t.integer("ami_port", 5038, minimum=1, maximum=65535),
        ami_user=t.text("ami_user", "edge"),
        ami_secret=t.text("ami_secret", "", allow_empty=True),
        fastagi_host=t.text("fastagi_host", "0.0.0.0"),
        fastagi_port=t.integer("fastagi_port", 4573, minimum=1, maximum=65535),
        fastagi_workers=t.integer("fastagi_workers", 64, minimum=1, maximum=4096),
    )
    t.finish()
    return section


def _read_trunk(t: TableReader) -> TrunkConfig:
    if t.has("did") and t.has("number"):
        raise t.error("did", "give either did or number, not both")
    key = "did" if t.has("did") else "number"
    return TrunkConfig(
        channel=t.integer("channel", minimum=1, maximum=99),  # ##3 picks it with two digits
        profile=t.text("profile", choices=("fxo", "pri")),
        number=t.phone(key, ""),
    )


def _read_agent(t: TableReader) -> AgentConfig:
    extension = t.digits("extension")
    dial_string = t.text("dial_string", "PJSIP/{extension}")
    try:
        dial_string = dial_string.format(extension=extension)
    except (KeyError, IndexError, ValueError) as exc:
        raise t.error("dial_string", f"only {{extension}} may be substituted: {exc}") from exc
    return AgentConfig(
        id=t.text("id"),
        name=t.text("name"),
        extension=extension,
        dial_string=dial_string,
        mobile=t.phone("mobile", ""),
        roles=t.text_list("roles", ("agent",), choices=ROLES),
        groups=t.text_list("groups"),
        logged_in=t.flag("logged_in", True),
        wrap_up_s=t.number("wrap_up_s", 5.0, minimum=0),
        roam_when_away=t.flag("roam_when_away", False),
        forward_busy=t.digits("forward_busy", ""),
        forward_no_answer=t.digits("forward_no_answer", ""),
        record_inbound=t.text("record_inbound", "", choices=RECORD_POLICIES),
        record_outbound=t.text("record_outbound", "", choices=RECORD_POLICIES),
    )


def _read_group(t: TableReader) -> GroupConfig:
    group = GroupConfig(
        name=t.text("name"),
        strategy=t.text("strategy", "least_calls", choices=STRATEGIES),
        ring_timeout_s=t.integer("ring_timeout_s", 20, minimum=1),
        max_wait_s=t.number("max_wait_s", None, positive=True),
        max_queue_len=t.integer("max_queue_len", None, minimum=1),
        overflow=t.text("overflow", "hangup"),
        # > 0: with no back-off a busy phone would be rung again at once, over and over
        ring_failure_backoff_s=t.number("ring_failure_backoff_s", 30.0, positive=True),
        auto_busy_after_misses=t.integer("auto_busy_after_misses", 0, minimum=0),
        calendar=t.text("calendar", ""),
        welcome=MappingProxyType(_period_prompts(t, "welcome")),
        out_of_hours=t.text("out_of_hours", "play", choices=OUT_OF_HOURS),
        on_call=t.text_list("on_call"),
        callback_after_s=t.number("callback_after_s", None, positive=True),
        callback_attempts=t.integer("callback_attempts", 3, minimum=1, maximum=20),
        callback_retry_s=t.number("callback_retry_s", 300.0, positive=True),
        closed_prompts=MappingProxyType(_period_prompts(t, "closed_prompts")),
    )
    if group.overflow not in TERMINAL_OVERFLOWS and not group.overflow_group:
        raise t.error("overflow", "expected group:<name>, voicemail, callback or hangup, "
                                  f"got {group.overflow!r}")
    return group


def _period_prompts(t: TableReader, key: str) -> dict[str, str]:
    prompts = t.text_map(key)
    for period in prompts:
        if period not in PERIOD_KINDS:
            raise ConfigError(join_path(t.at(key), period),
                              f"expected a period ({', '.join(PERIOD_KINDS)})")
    return prompts


def _read_routing(t: TableReader, groups: tuple[GroupConfig, ...],
                  base_dir: str | Path | None) -> RoutingConfig:
    default_group = t.text("default_group", groups[0].name if groups else "")
    if not default_group:
        raise t.error("default_group", "required (no [[groups]] configured)")
    menu_table = t.table("customer_type_menu") if t.has("customer_type_menu") else None
    prefix_table = t.text("prefix_table", None)
    if prefix_table and base_dir is not None and not Path(prefix_table).is_absolute():
        prefix_table = str(Path(base_dir) / prefix_table)
    routing = RoutingConfig(
        default_group=default_group,
        did_groups=MappingProxyType(t.text_map("did_groups")),
        region_groups=MappingProxyType(t.text_map("region_groups")),
        customer_type_menu=_read_menu(menu_table) if menu_table else None,
        sticky_last_agent=t.flag("sticky_last_agent", False),
        sticky_wait_s=t.number("sticky_wait_s", 0.0, minimum=0),
        vip=t.each("vip", lambda v: VipEntry(v.phone("number"), v.text("owner"))),
        blacklist=t.each("blacklist", lambda b: BlacklistEntry(
            b.phone("number"), b.text("action", choices=("reject", "flag")))),
        prefix_table=prefix_table,
        did_flows=MappingProxyType(t.text_map("did_flows")),
        default_flow=t.text("default_flow", ""),
    )
    t.finish()
    return routing


def _read_menu(t: TableReader) -> MenuConfig:
    digits = t.text_map("digits")
    if not digits:
        raise t.error("digits", "needs at least one choice, e.g. \"1\" = \"cards\"")
    for key in digits:
        if not key.isdigit():
            raise ConfigError(join_path(t.at("digits"), key), "a choice key must be digits")
    menu = MenuConfig(
        prompt=t.text("prompt"),
        digits=MappingProxyType(digits),
        timeout_s=t.number("timeout_s", 5.0, positive=True),
        dids=t.text_list("dids"),
        groups=t.text_list("groups"),
    )
    t.finish()
    return menu


def _read_codes(t: TableReader) -> Mapping[str, CodeRule]:
    """Entries override the default with the same prefix; ``action = "disabled"`` switches one off."""
    codes = dict(DEFAULT_CODES)
    for prefix in list(t.data):
        if not (prefix.startswith("##") and prefix[2:].isdigit()):
            raise t.error(prefix, "a code must be ## followed by digits, e.g. \"##1\"")
        entry = t.table(prefix)
        rule = CodeRule(prefix, entry.text("action", choices=CODE_ACTIONS),
                        frozenset(entry.text_list("roles", choices=ROLES)))
        entry.finish()
        codes[prefix] = rule
    return MappingProxyType({p: r for p, r in codes.items() if r.action != "disabled"})


# --- cross references ----------------------------------------------------------------------------

def check_references(config: EdgeConfig) -> None:
    group_names = _unique([g.name for g in config.groups], "groups", "name")
    _unique([a.id for a in config.agents], "agents", "id")
    _unique([a.extension for a in config.agents], "agents", "extension")
    _unique([t.channel for t in config.trunks], "trunks", "channel")
    for i, agent in enumerate(config.agents):
        for j, name in enumerate(agent.groups):
            _need_group(group_names, name, f"agents[{i}].groups[{j}]")
    agent_ids = {a.id for a in config.agents}
    for i, agent in enumerate(config.agents):
        if agent.roam_when_away and not agent.mobile:
            raise ConfigError(f"agents[{i}].roam_when_away", "needs the agent's mobile")
    for i, group in enumerate(config.groups):
        for j, agent_id in enumerate(group.on_call):
            if agent_id not in agent_ids:
                raise ConfigError(f"groups[{i}].on_call[{j}]", f"unknown agent {agent_id!r}")
        if group.out_of_hours == "roam" and not group.on_call:
            raise ConfigError(f"groups[{i}].on_call", "out_of_hours = \"roam\" needs on_call agents")
    routing = config.routing
    _need_group(group_names, routing.default_group, "routing.default_group")
    for source, mapping in (("did_groups", routing.did_groups),
                            ("region_groups", routing.region_groups)):
        for key, name in mapping.items():
            _need_group(group_names, name, f"routing.{source}.{key}")
    if routing.customer_type_menu:
        for key, name in routing.customer_type_menu.digits.items():
            _need_group(group_names, name, f"routing.customer_type_menu.digits.{key}")
        for i, name in enumerate(routing.customer_type_menu.groups):
            _need_group(group_names, name, f"routing.customer_type_menu.groups[{i}]")
    for i, vip in enumerate(routing.vip):
        if vip.owner not in agent_ids:
            raise ConfigError(f"routing.vip[{i}].owner", f"unknown agent {vip.owner!r}")
    for i, group in enumerate(config.groups):
        if group.calendar and group.calendar not in config.calendars:
            raise ConfigError(f"groups[{i}].calendar", f"unknown calendar {group.calendar!r}")
        if group.overflow_group is not None:
            _need_group(group_names, group.overflow_group, f"groups[{i}].overflow")
    for did, flow in {**routing.did_flows, "": routing.default_flow}.items():
        where = f"routing.did_flows.{did}" if did else "routing.default_flow"
        if flow and flow not in config.flows:
            raise ConfigError(where, f"unknown IVR flow {flow!r} (flows: "
                                     f"{', '.join(sorted(config.flows)) or 'none loaded'})")
    for flow in config.flows.values():
        for queue in sorted(flow.queues()):
            _need_group(group_names, queue, f"ivr flow {flow.id} (v{flow.version})")
    _check_overflow_loops(config.groups)


def _unique(values: list[Any], section: str, key: str) -> set[Any]:
    seen: set[Any] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ConfigError(f"{section}[{i}].{key}", f"duplicate {value!r}")
        seen.add(value)
    return seen


def _need_group(names: set[str], name: str, path: str) -> None:
    if name not in names:
        raise ConfigError(path, f"unknown group {name!r}")


def _check_overflow_loops(groups: tuple[GroupConfig, ...]) -> None:
    """A caller must never bounce between full groups for ever, so overflow chains must end."""
    by_name = {g.name: g for g in groups}
    for i, group in enumerate(groups):
        chain = [group.name]
        nxt = group.overflow_group
        while nxt is not None:
            if nxt in chain:
                loop = " -> ".join(chain + [nxt])
                raise ConfigError(f"groups[{i}].overflow", f"overflow chain loops: {loop}")
            chain.append(nxt)
            nxt = by_name[nxt].overflow_group
