"""Reading call flows from YAML or JSON files, strictly, with the step named in every error.

``load_flow(path, prompt_dirs)`` reads one file; ``load_flows(directory, prompt_dirs)`` reads every
``*.yaml``, ``*.yml`` and ``*.json`` file of a folder and keeps the highest ``version`` of each flow
id; ``parse_flow(data, source, prompt_exists)`` validates an already-parsed dict (HQ pushes flows
from its flow editor as JSON). Every prompt must exist when the flow loads: a caller must never be
the one who finds a missing sound file. Unknown keys are rejected, as in ``edge.config``.

YAML is read with YAML 1.2 booleans: PyYAML's default (1.1) would turn the key ``on:`` of a branch
step, and a case named ``no`` or ``off``, into ``True`` / ``False``.
"""
from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping

import yaml

from edge.config_reader import TableReader, join_path
from edge.errors import ConfigError
from edge.ivr.errors import FlowError
from edge.ivr.model import (
    BRANCH_ON, LOOKUP_FIELDS, SAY_AS, STEP_TYPES, TERMINATORS, VARIABLE, AgentStep, BranchStep,
    CollectStep, Flow, HangupStep, LookupStep, MenuStep, PlayStep, QueueStep, SayStep, SetStep,
    Step, VerifyMemberStep, VoicemailStep, references, stray_brace)
from edge.ivr.validate import validate

PROMPT_EXTENSIONS = ("wav", "gsm", "ulaw", "alaw", "sln", "sln16", "g722", "mp3")
FLOW_SUFFIXES = (".yaml", ".yml", ".json")
FLOW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
STEP_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
MENU_KEY = re.compile(r"[0-9*]+")  # '#' never arrives: it ends Asterisk's GET DATA
SOUND_NAME = re.compile(r"[\w-]+(?:/[\w-]+)*")  # relative, no extension: cc/welcome


class PromptDirs:
    """Asterisk sound folders: a prompt ``cc/welcome`` exists if ``<dir>/cc/welcome.<ext>`` does
    in any of them, for any format Asterisk plays from a file."""

    def __init__(self, dirs: Iterable[str | Path]) -> None:
        self.dirs = tuple(Path(d) for d in dirs)

    def __call__(self, prompt: str) -> bool:
        return any((d / f"{prompt}.{ext}").is_file() for d in self.dirs for ext in PROMPT_EXTENSIONS)

    @property
    def looked_in(self) -> str:
        return ", ".join(str(d) for d in self.dirs) or "no sound folder given"


# --- files -----------------------------------------------------------------------------------------

def load_flow(path: str | Path, prompt_dirs: Iterable[str | Path] | str | Path) -> Flow:
    path = Path(path)
    return parse_flow(_read_file(path), str(path), _prompt_dirs(prompt_dirs))


def load_flows(directory: str | Path,
               prompt_dirs: Iterable[str | Path] | str | Path) -> dict[str, Flow]:
    """flow id -> its highest version. Every file must be valid, old versions too, and no two
    files may hold the same id and version (which one would run?)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FlowError(str(directory), "", "not a folder")
    prompts = _prompt_dirs(prompt_dirs)
    seen: dict[tuple[str, int], str] = {}
    newest: dict[str, Flow] = {}
    for path in sorted(p for p in directory.iterdir() if p.suffix in FLOW_SUFFIXES):
        flow = parse_flow(_read_file(path), str(path), prompts)
        key = (flow.id, flow.version)
        if key in seen:
            raise FlowError(str(path), "", f"flow {flow.id!r} version {flow.version} is also "
                                           f"in {seen[key]}")
        seen[key] = str(path)
        if flow.id not in newest or flow.version > newest[flow.id].version:
            newest[flow.id] = flow
    return newest


def _prompt_dirs(prompt_dirs: Iterable[str | Path] | str | Path) -> PromptDirs:
    if isinstance(prompt_dirs, (str, Path)):
        prompt_dirs = [prompt_dirs]
    return PromptDirs(prompt_dirs)


_MERGE = "tag:yaml.org,2002:merge"


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader whose booleans are only true/false (YAML 1.2), so ``on:`` stays a string, and
    which refuses a key given twice (PyYAML would keep the last: a second ``main:`` step would
    silently replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                continue  # "<<: *anchor" may override; a list as a key fails later anyway
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _read_file(path: Path) -> Any:
    if path.suffix not in FLOW_SUFFIXES:
        raise FlowError(str(path), "", "a flow file must end in .yaml, .yml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowError(str(path), "", f"cannot read: {exc.strerror or exc}") from exc
    if path.suffix == ".json":
        try:
            return json.loads(text, object_pairs_hook=_unique_keys)
        except ValueError as exc:  # JSONDecodeError, or a key given twice
            raise FlowError(str(path), "", f"not valid JSON: {exc}") from exc
    try:
        return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: e.g. a date like 2026-13-45
        raise FlowError(str(path), "", f"not valid YAML: {exc}") from exc


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for key, value in pairs:
        if key in table:
            raise ValueError(f"duplicate key {key!r}")
        table[key] = value
    return table


# --- the flow --------------------------------------------------------------------------------------

@contextmanager
def _blame(source: str, step: str = "") -> Iterator[None]:
    """Turns the table reader's ``ConfigError`` into a ``FlowError`` naming the step."""
    try:
        yield
    except ConfigError as exc:
        raise FlowError(source, step, str(exc)) from exc


def parse_flow(data: Mapping[str, Any], source: str, prompt_exists: Callable[[str], bool]) -> Flow:
    """Validate one flow already parsed from YAML or JSON.

    ``prompt_exists(name)`` says whether a prompt can be played; if it has a ``looked_in`` text
    (as ``PromptDirs`` has), a missing prompt's error says where it was looked for.
    """
    with _blame(source):
        root = TableReader(data)
        flow_id = root.text("id")
        if not FLOW_ID.fullmatch(flow_id):
            raise root.error("id", f"expected letters, digits, _ or -, got {flow_id!r}")
        version = root.integer("version", minimum=1)
        start = root.text("start")
        operator_queue = _read_operator(root)
        description = root.text("description", "", allow_empty=True)
        steps_table = root.table("steps")
        root.finish()
    if not steps_table.data:
        raise FlowError(source, "", "steps: a flow needs at least one step")
    prompts = _PromptReader(prompt_exists)
    steps: dict[str, Step] = {}
    for step_id, raw in steps_table.data.items():
        if not isinstance(step_id, str) or not STEP_ID.fullmatch(step_id):
            raise FlowError(source, str(step_id),
                            "a step id must be letters, digits, _ or -, starting with a letter")
        with _blame(source, step_id):
            steps[step_id] = _read_step(step_id, TableReader(raw), prompts)
    flow = Flow(flow_id, version, start, MappingProxyType(steps), operator_queue, description,
                source)
    validate(flow)
    return flow


def _read_operator(root: TableReader) -> str | None:
    if not root.has("operator"):
        return None
    table = root.table("operator")
    queue = table.text("queue")
    table.finish()
    return queue


class _PromptReader:
    def __init__(self, exists: Callable[[str], bool]) -> None:
        self.exists = exists
        looked_in = getattr(exists, "looked_in", "")
        self.where = f" (looked in {looked_in})" if looked_in else ""

    def read(self, t: TableReader, key: str, required: bool = True) -> str | None:
        name = t.text(key) if required else t.text(key, None)
        if name is None:
            return None
        if not SOUND_NAME.fullmatch(name):
            raise t.error(key, "expected a sound name relative to the sounds folder and without "
                               f"extension, like cc/welcome, got {name!r}")
        if not self.exists(name):
            raise ConfigError("", f"prompt {name!r} not found{self.where}")
        return name


# --- steps -----------------------------------------------------------------------------------------

def _read_step(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    kind = t.text("type")
    reader = _READERS.get(kind)
    if reader is None:
        raise t.error("type", f"unknown step type {kind!r} (expected one of "
                              f"{', '.join(STEP_TYPES)})")
    step = reader(step_id, t, prompts)
    t.finish()
    return step


def _play(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    return PlayStep(step_id, prompts.read(t, "prompt"), t.text("next"))


def _menu(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    return MenuStep(
        step_id,
        prompt=prompts.read(t, "prompt"),
        options=_mapping(t, "options", _menu_key),
        retries=t.integer("retries", 2, minimum=0),
        timeout_s=t.number("timeout_s", 5.0, positive=True),
        invalid_prompt=prompts.read(t, "invalid_prompt", required=False),
        on_fail=t.text("on_fail", None),
    )


def _collect(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    step = CollectStep(
        step_id,
        prompt=prompts.read(t, "prompt"),
        into=_variable(t, "into"),
        next=t.text("next"),
        max_digits=t.integer("max_digits", minimum=1),
        min_digits=t.integer("min_digits", 1, minimum=1),
        terminator=t.text("terminator", "#", choices=TERMINATORS),
        timeout_s=t.number("timeout_s", 5.0, positive=True),
        retries=t.integer("retries", 2, minimum=0),
        invalid_prompt=prompts.read(t, "invalid_prompt", required=False),
        on_fail=t.text("on_fail", None),
        sensitive=t.flag("sensitive", False),
    )
    if step.min_digits > step.max_digits:
        raise t.error("min_digits", f"must be at most max_digits ({step.max_digits}), "
                                    f"got {step.min_digits}")
    return step


def _verify_member(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    return VerifyMemberStep(step_id, _variable(t, "from"), t.text("found"), t.text("not_found"))


def _lookup(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    return LookupStep(step_id, t.text("field", choices=LOOKUP_FIELDS), _variable(t, "into"),
                      t.text("found"), t.text("not_found"))


def _say(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    return SayStep(step_id, prompt=prompts.read(t, "prompt", required=False),
                   value=_template(t, "value"), kind=t.text("as", choices=SAY_AS),
                   next=t.text("next"))


def _set(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    return SetStep(step_id, _variable(t, "var"), _template(t, "value", allow_empty=True),
                   t.text("next"))


def _branch(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    on = t.text("on", choices=BRANCH_ON)
    var = _variable(t, "var") if on == "var" else None
    if on != "var" and t.has("var"):
        raise t.error("var", "only a branch on: var names a variable")
    cases = _mapping(t, "cases", _caller_pattern if on == "caller" else _case_text)
    return BranchStep(step_id, on, cases, t.text("default"), var)


def _queue(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    return QueueStep(step_id, t.text("queue"))


def _voicemail(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    return VoicemailStep(step_id, t.text("box"))


def _hangup(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    return HangupStep(step_id)


def _agent(step_id: str, t: TableReader, prompts: _PromptReader) -> Step:
    return AgentStep(step_id)


_READERS: dict[str, Callable[[str, TableReader, _PromptReader], Step]] = {
    "play": _play, "menu": _menu, "collect": _collect, "verify_member": _verify_member,
    "lookup": _lookup, "say": _say, "set": _set, "branch": _branch, "queue": _queue,
    "voicemail": _voicemail, "hangup": _hangup, "agent": _agent,
}


# --- values ----------------------------------------------------------------------------------------

def _variable(t: TableReader, key: str) -> str:
    name = t.text(key)
    if not VARIABLE.fullmatch(name):
        raise t.error(key, f"expected a variable name (letters, digits, _), got {name!r}")
    return name


def _template(t: TableReader, key: str, allow_empty: bool = False) -> str:
    value = t.text(key, allow_empty=allow_empty)
    if stray_brace(value):
        raise t.error(key, f"unbalanced {{ or }} in {value!r}")
    for name in references(value):
        if not VARIABLE.fullmatch(name):
            raise t.error(key, f"{{{name}}} is not a variable name")
    return value


def _mapping(t: TableReader, key: str,
             check_key: Callable[[str], str | None]) -> Mapping[str, str]:
    """A non-empty mapping of text keys (``check_key`` returns a problem or None) to step ids."""
    table = t.table(key)
    if not table.data:
        raise t.error(key, "needs at least one entry")
    for k in table.data:
        problem = (f"keys must be quoted text, like \"1\", got {type(k).__name__} {k!r}"
                   if not isinstance(k, str) else check_key(k))
        if problem:
            raise ConfigError(join_path(t.at(key), str(k)), problem)
    return MappingProxyType({k: table.text(k) for k in table.data})


def _menu_key(key: str) -> str | None:
    return None if MENU_KEY.fullmatch(key) else "an option must be digits (or *)"


def _case_text(key: str) -> str | None:
    return None if key.strip() else "a case must not be empty"


def _caller_pattern(key: str) -> str | None:
    try:
        re.compile(key)
    except re.error as exc:
        return f"not a regular expression: {exc}"
    return None
