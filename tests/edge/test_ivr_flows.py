"""IVR call flows as data: loading YAML/JSON, versions, and every rejection naming its step."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from edge.errors import EdgeError
from edge.ivr.errors import FlowError
from edge.ivr.loader import PromptDirs, load_flow, load_flows, parse_flow
from edge.ivr.model import BranchStep, CollectStep, MenuStep, SayStep

DATA = Path(__file__).resolve().parents[2] / "edge" / "data"

FLOW: dict[str, Any] = {
    "id": "bank-main",
    "version": 3,
    "start": "welcome",
    "operator": {"queue": "general"},
    "steps": {
        "welcome": {"type": "branch", "on": "period",
                    "cases": {"open": "greet", "closed": "closed_msg"}, "default": "greet"},
        "greet": {"type": "play", "prompt": "cc/welcome", "next": "main"},
        "main": {"type": "menu", "prompt": "cc/main-menu",
                 "options": {"1": "ask_member", "2": "cards"}, "retries": 2, "timeout_s": 5,
                 "invalid_prompt": "cc/invalid", "on_fail": "cards"},
        "ask_member": {"type": "collect", "prompt": "cc/enter-member", "max_digits": 12,
                       "min_digits": 6, "into": "member", "next": "verify", "on_fail": "main"},
        "verify": {"type": "verify_member", "from": "member", "found": "ask_pin",
                   "not_found": "main"},
        "ask_pin": {"type": "collect", "prompt": "cc/enter-pin", "max_digits": 6,
                    "min_digits": 6, "into": "pin", "sensitive": True, "next": "balance"},
        "balance": {"type": "lookup", "field": "balance", "into": "bal", "found": "say_bal",
                    "not_found": "main"},
        "say_bal": {"type": "say", "prompt": "cc/your-balance", "value": "{bal}", "as": "money",
                    "next": "main"},
        "cards": {"type": "queue", "queue": "cards"},
        "closed_msg": {"type": "play", "prompt": "cc/closed", "next": "bye"},
        "bye": {"type": "hangup"},
    },
}

PROMPTS = ("cc/welcome", "cc/main-menu", "cc/invalid", "cc/enter-member", "cc/enter-pin",
           "cc/your-balance", "cc/closed")


def flow_data(**steps: Any) -> dict[str, Any]:
    """A deep copy of FLOW; ``name=dict`` replaces or adds a step, ``name=None`` removes it."""
    data = copy.deepcopy(FLOW)
    for name, step in steps.items():
        if step is None:
            del data["steps"][name]
        else:
            data["steps"][name] = step
    return data


def error_of(data: dict[str, Any]) -> FlowError:
    with pytest.raises(FlowError) as caught:
        parse_flow(data, "flows/main.yaml", lambda prompt: True)
    return caught.value


@pytest.fixture
def sounds(tmp_path: Path) -> Path:
    """A sounds folder holding every prompt FLOW uses, as empty .wav files."""
    folder = tmp_path / "sounds"
    for prompt in PROMPTS:
        make_prompt(folder, prompt, "wav")
    return folder


def make_prompt(folder: Path, prompt: str, ext: str) -> None:
    path = folder / f"{prompt}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


# --- a good flow ---------------------------------------------------------------------------------

def test_the_flow_parses_into_typed_steps():
    flow = parse_flow(FLOW, "flows/main.yaml", lambda prompt: True)
    assert (flow.id, flow.version, flow.start, flow.operator_queue) == (
        "bank-main", 3, "welcome", "general")
    main = flow.steps["main"]
    assert isinstance(main, MenuStep)
    assert dict(main.options) == {"1": "ask_member", "2": "cards"} and main.on_fail == "cards"
    pin = flow.steps["ask_pin"]
    assert isinstance(pin, CollectStep) and pin.sensitive and pin.terminator == "#"
    assert pin.retries == 2 and pin.on_fail is None  # defaults
    assert isinstance(flow.steps["say_bal"], SayStep) and flow.steps["say_bal"].kind == "money"
    assert flow.queues() == {"cards", "general"}
    assert flow.sensitive_variables() == {"pin"}


def test_yaml_and_json_give_the_same_flow(tmp_path, sounds):
    yaml_path = tmp_path / "main.yaml"
    yaml_path.write_text("""\
id: bank-main
version: 3
start: welcome
operator: {queue: general}
steps:
  welcome: {type: branch, on: period, cases: {open: greet, closed: closed_msg}, default: greet}
  greet: {type: play, prompt: cc/welcome, next: main}
  main: {type: menu, prompt: cc/main-menu, options: {"1": ask_member, "2": cards}, retries: 2,
         timeout_s: 5, invalid_prompt: cc/invalid, on_fail: cards}
  ask_member: {type: collect, prompt: cc/enter-member, max_digits: 12, min_digits: 6,
               into: member, next: verify, on_fail: main}
  verify: {type: verify_member, from: member, found: ask_pin, not_found: main}
  ask_pin: {type: collect, prompt: cc/enter-pin, max_digits: 6, min_digits: 6, into: pin,
            sensitive: true, next: balance}
  balance: {type: lookup, field: balance, into: bal, found: say_bal, not_found: main}
  say_bal: {type: say, prompt: cc/your-balance, value: "{bal}", as: money, next: main}
  cards: {type: queue, queue: cards}
  closed_msg: {type: play, prompt: cc/closed, next: bye}
  bye: {type: hangup}
""", encoding="utf-8")
    json_path = tmp_path / "main.json"
    json_path.write_text(json.dumps(FLOW), encoding="utf-8")
    from_yaml = load_flow(yaml_path, [sounds])
    from_json = load_flow(json_path, [sounds])
    assert from_yaml == from_json
    assert (from_yaml.source, from_json.source) == (str(yaml_path), str(json_path))


def test_yaml_keys_on_and_no_stay_text(tmp_path, sounds):
    """PyYAML's YAML 1.1 would read `on:` and a case `no:` as booleans."""
    path = tmp_path / "yesno.yaml"
    path.write_text("""\
id: yesno
version: 1
start: ask
steps:
  ask: {type: collect, prompt: cc/enter-member, max_digits: 1, into: answer, next: check}
  check: {type: branch, on: var, var: answer, cases: {no: bye, off: bye, "1": bye}, default: bye}
  bye: {type: hangup}
""", encoding="utf-8")
    check = load_flow(path, sounds).steps["check"]
    assert isinstance(check, BranchStep)
    assert check.on == "var" and list(check.cases) == ["no", "off", "1"]


def test_shipped_flows_load_with_the_prompts_their_readme_lists(tmp_path):
    listed = re.findall(r"^\| `([^`]+)`", (DATA / "prompts" / "README.md").read_text("utf-8"),
                        re.MULTILINE)
    for prompt in listed:
        make_prompt(tmp_path, prompt, "wav")
    flows = load_flows(DATA / "flows", [tmp_path])
    assert set(flows) == {"bank-main", "collection-due"}
    assert set(listed) == set().union(*(f.prompts() for f in flows.values()))  # none stale
    bank = flows["bank-main"]
    assert bank.operator_queue == "general" and bank.sensitive_variables() == {"pin"}
    assert dict(bank.steps["main"].options) == {"1": "ask_member", "2": "cards"}
    assert flows["collection-due"].sensitive_variables() == {"id_number"}


# --- prompts -------------------------------------------------------------------------------------

def test_missing_prompt_names_step_prompt_and_folders(tmp_path, sounds):
    (sounds / "cc" / "enter-pin.wav").unlink()
    path = tmp_path / "main.json"
    path.write_text(json.dumps(FLOW), encoding="utf-8")
    other = tmp_path / "other"
    with pytest.raises(FlowError) as caught:
        load_flow(path, [sounds, other])
    error = caught.value
    assert str(error) == (f"{path}: step 'ask_pin': prompt 'cc/enter-pin' not found "
                          f"(looked in {sounds}, {other})")
    assert (error.flow, error.step) == (str(path), "ask_pin")
    assert isinstance(error, EdgeError)


def test_a_prompt_in_any_folder_and_any_asterisk_format_counts(tmp_path):
    first, second = tmp_path / "zh", tmp_path / "en"
    make_prompt(second, "cc/enter-pin", "gsm")
    make_prompt(first, "cc/welcome", "sln16")
    prompts = PromptDirs([first, second])
    assert prompts("cc/enter-pin") and prompts("cc/welcome")
    make_prompt(first, "cc/readme", "txt")
    assert not prompts("cc/readme") and not prompts("cc/absent")


@pytest.mark.parametrize("prompt", ["cc/welcome.wav", "/var/lib/asterisk/sounds/cc/welcome",
                                    "../cc/welcome", ""])
def test_a_prompt_must_be_a_relative_sound_name(prompt):
    error = error_of(flow_data(greet={"type": "play", "prompt": prompt, "next": "main"}))
    assert error.step == "greet" and error.problem.startswith("prompt: ")


# --- rejections, each naming the step ------------------------------------------------------------

def test_unknown_step_type():
    error = error_of(flow_data(greet={"type": "playback", "prompt": "cc/welcome", "next": "main"}))
    assert str(error).startswith("flows/main.yaml: step 'greet': type: unknown step type "
                                 "'playback' (expected one of play, menu, collect,")
    assert (error.flow, error.step) == ("flows/main.yaml", "greet")


def test_unreachable_step():
    error = error_of(flow_data(orphan={"type": "play", "prompt": "cc/closed", "next": "bye"}))
    assert str(error) == ("flows/main.yaml: step 'orphan': unreachable: no step leads here from "
                          "the start step 'welcome'")


def with_submenus(sub_on_fail: str | None) -> dict[str, Any]:
    """FLOW whose main menu's 3 leads to two menus that only lead to each other."""
    sub = {"type": "menu", "prompt": "cc/main-menu", "options": {"1": "sub2"}}
    if sub_on_fail:
        sub["on_fail"] = sub_on_fail
    return flow_data(
        main=dict(FLOW["steps"]["main"], options={"1": "ask_member", "2": "cards", "3": "sub"}),
        sub=sub,
        sub2={"type": "menu", "prompt": "cc/main-menu", "options": {"1": "sub"}, "on_fail": "sub"})


def test_loop_without_exit_names_the_loop():
    error = error_of(with_submenus(sub_on_fail="sub2"))
    assert str(error) == ("flows/main.yaml: step 'sub': loop without exit: sub -> sub2 -> sub "
                          "never reaches a queue, voicemail, agent or hangup step")


def test_a_menu_without_on_fail_has_a_way_out():
    """Out of retries it goes to the operator (or hangs up), so it is no trap."""
    flow = parse_flow(with_submenus(sub_on_fail=None), "x", lambda prompt: True)
    assert flow.steps["sub"].on_fail is None


def test_every_step_of_a_trap_is_named():
    data = with_submenus(sub_on_fail="sub2")
    data["steps"]["lead_in"] = {"type": "play", "prompt": "cc/welcome", "next": "sub"}
    data["steps"]["main"]["options"]["3"] = "lead_in"
    assert error_of(data).problem == ("loop without exit: sub -> sub2 -> sub never reaches a "
                                      "queue, voicemail, agent or hangup step (nor can lead_in)")


def test_loop_that_never_asks_the_caller_is_rejected():
    data = flow_data(
        greet={"type": "set", "var": "product", "value": "cards", "next": "route"},
        route={"type": "branch", "on": "var", "var": "product", "cases": {"cards": "greet"},
               "default": "main"})
    error = error_of(data)
    assert error.step == "greet"
    assert error.problem == ("loop without exit: greet -> route -> greet never asks the caller "
                             "for input (add a menu or collect step)")


def test_unknown_reference_names_the_key_and_suggests():
    main = dict(FLOW["steps"]["main"], options={"1": "ask_member", "2": "card"})
    error = error_of(flow_data(main=main))
    assert str(error) == ("flows/main.yaml: step 'main': options.2: unknown step 'card' "
                          "(did you mean 'cards'?)")
    data = flow_data()
    data["start"] = "hello"
    assert str(error_of(data)) == "flows/main.yaml: start: unknown step 'hello'"


BAD_FIELDS = [
    ("main", {"retries": "two"}, "retries: expected an integer, got 'two'"),
    ("main", {"retries": -1}, "retries: must be at least 0, got -1"),
    ("main", {"timeout_s": 0}, "timeout_s: must be greater than 0, got 0"),
    ("main", {"options": {"x": "cards"}}, "options.x: an option must be digits (or *)"),
    ("main", {"options": {1: "cards"}}, "options.1: keys must be quoted text, like \"1\", got int 1"),
    ("main", {"options": {}}, "options: needs at least one entry"),
    ("main", {"optoins": {"1": "cards"}}, "optoins: unknown key"),
    ("ask_member", {"max_digits": 0}, "max_digits: must be at least 1, got 0"),
    ("ask_member", {"min_digits": 13}, "min_digits: must be at most max_digits (12), got 13"),
    ("ask_member", {"into": "1member"}, "into: expected a variable name (letters, digits, _), "
                                        "got '1member'"),
    ("ask_member", {"terminator": "x"}, "terminator: expected one of #, *, got 'x'"),
    ("ask_pin", {"sensitive": "yes"}, "sensitive: expected true or false, got 'yes'"),
    ("welcome", {"on": "weekday"}, "on: expected one of period, caller, var, got 'weekday'"),
    ("welcome", {"var": "member"}, "var: only a branch on: var names a variable"),
    ("say_bal", {"as": "currency"}, "as: expected one of number, digits, money, date, "
                                    "got 'currency'"),
    ("say_bal", {"value": "{bal"}, "value: unbalanced { or } in '{bal'"),
    ("balance", {"field": "limit"}, "field: expected one of balance, due_amount, due_date, "
                                    "got 'limit'"),
    ("greet", {"next": 7}, "next: expected a string, got int 7"),
]


@pytest.mark.parametrize("step, change, problem", BAD_FIELDS)
def test_bad_field_names_step_and_key(step, change, problem):
    data = flow_data()
    data["steps"][step].update(change)
    error = error_of(data)
    assert (error.step, error.problem) == (step, problem)


def test_a_caller_branch_needs_valid_regular_expressions():
    data = flow_data(welcome={"type": "branch", "on": "caller", "cases": {"^(1380": "greet"},
                              "default": "greet"})
    error = error_of(data)
    assert error.step == "welcome" and error.problem.startswith(
        "cases.^(1380: not a regular expression:")


@pytest.mark.parametrize("change, problem", [
    ({"version": "3"}, "version: expected an integer, got '3'"),
    ({"version": 0}, "version: must be at least 1, got 0"),
    ({"id": "bank main"}, "id: expected letters, digits, _ or -, got 'bank main'"),
    ({"steps": {}}, "steps: a flow needs at least one step"),
    ({"operator": {"queue": "general", "prompt": "cc/x"}}, "operator.prompt: unknown key"),
    ({"owner": "hq"}, "owner: unknown key"),
])
def test_bad_flow_level_field_names_the_key(change, problem):
    data = flow_data()
    data.update(change)
    error = error_of(data)
    assert (error.step, error.problem) == ("", problem)
    assert str(error) == f"flows/main.yaml: {problem}"


def test_a_step_id_must_be_text():
    data = flow_data()
    data["steps"][1] = {"type": "hangup"}
    assert error_of(data).problem.startswith("a step id must be letters")


# --- variables, operator, look-ups ---------------------------------------------------------------

def test_say_of_a_variable_nothing_writes():
    say = dict(FLOW["steps"]["say_bal"], value="{balance}")
    error = error_of(flow_data(say_bal=say))
    assert (error.step, error.problem) == (
        "say_bal", "value: variable 'balance' is never set (no collect, set or lookup step writes it)")


def test_verify_and_branch_need_variables_something_writes():
    verify = dict(FLOW["steps"]["verify"], **{"from": "member_no"})
    assert error_of(flow_data(verify=verify)).problem.startswith("from: variable 'member_no'")
    branch = {"type": "branch", "on": "var", "var": "product", "cases": {"x": "closed_msg"},
              "default": "greet"}
    assert error_of(flow_data(welcome=branch)).problem.startswith("var: variable 'product'")


def test_a_sensitive_value_is_never_read_back():
    say = dict(FLOW["steps"]["say_bal"], value="{pin}")
    assert error_of(flow_data(say_bal=say)).problem == (
        "value: 'pin' is sensitive and must not be read back to the caller")
    # a copy of it is sensitive too
    balance = dict(FLOW["steps"]["balance"], found="copy")
    data = flow_data(balance=balance,
                     copy={"type": "set", "var": "secret", "value": "x{pin}", "next": "say_bal"},
                     say_bal=dict(FLOW["steps"]["say_bal"], value="{secret}"))
    assert error_of(data).problem.startswith("value: 'secret' is sensitive")


def test_lookup_reachable_without_a_verified_member():
    main = dict(FLOW["steps"]["main"], options={"1": "ask_member", "2": "cards", "3": "balance"})
    error = error_of(flow_data(main=main))
    assert (error.step, error.problem) == (
        "balance", "can run before any member is verified: welcome -> greet -> main -> balance")


def test_agent_step_needs_an_operator_and_0_is_reserved_for_it():
    data = flow_data(cards={"type": "agent"})
    assert parse_flow(data, "x", lambda prompt: True).steps["cards"].terminal
    del data["operator"]
    error = error_of(data)
    assert error.step == "cards"
    assert error.problem.startswith("an agent step needs the flow's operator queue")
    main = dict(FLOW["steps"]["main"], options={"1": "ask_member", "0": "cards"})
    error = error_of(flow_data(main=main))
    assert error.step == "main" and error.problem.startswith('options.0: "0" goes to the operator')
    data = flow_data(main=main)
    del data["operator"]
    assert parse_flow(data, "x", lambda prompt: True).steps["main"].options["0"] == "cards"


# --- files and versions --------------------------------------------------------------------------

def write_flow(folder: Path, name: str, version: int, **changes: Any) -> Path:
    data = flow_data()
    data.update(version=version, **changes)
    path = folder / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_load_flows_keeps_the_highest_version_of_each_id(tmp_path, sounds):
    flows_dir = tmp_path / "flows"
    flows_dir.mkdir()
    write_flow(flows_dir, "main-v2.json", 2)
    write_flow(flows_dir, "main-v10.json", 10)
    write_flow(flows_dir, "main-v3.json", 3)
    write_flow(flows_dir, "other.json", 1, id="other")
    (flows_dir / "notes.txt").write_text("not a flow", encoding="utf-8")
    flows = load_flows(flows_dir, sounds)
    assert {fid: f.version for fid, f in flows.items()} == {"bank-main": 10, "other": 1}
    assert flows["bank-main"].source == str(flows_dir / "main-v10.json")


def test_two_files_with_one_id_and_version_are_refused(tmp_path, sounds):
    write_flow(tmp_path, "a.json", 3)
    second = write_flow(tmp_path, "b.json", 3)
    with pytest.raises(FlowError) as caught:
        load_flows(tmp_path, [sounds])
    assert str(caught.value) == (f"{second}: flow 'bank-main' version 3 is also in "
                                 f"{tmp_path / 'a.json'}")


def test_a_broken_old_version_still_stops_the_load(tmp_path, sounds):
    write_flow(tmp_path, "new.json", 4)
    write_flow(tmp_path, "old.json", 1, start="nowhere")
    with pytest.raises(FlowError) as caught:
        load_flows(tmp_path, [sounds])
    assert caught.value.flow == str(tmp_path / "old.json")


def test_a_step_given_twice_is_refused_not_overwritten(tmp_path, sounds):
    path = tmp_path / "twice.yaml"
    path.write_text("""\
id: twice
version: 1
start: main
steps:
  main: {type: queue, queue: cards}
  main: {type: hangup}
""", encoding="utf-8")
    with pytest.raises(FlowError, match=r"twice\.yaml: not valid YAML: duplicate key 'main'"):
        load_flow(path, [sounds])
    path = tmp_path / "twice.json"
    path.write_text('{"id": "twice", "version": 1, "version": 2}', encoding="utf-8")
    with pytest.raises(FlowError, match=r"twice\.json: not valid JSON: duplicate key 'version'"):
        load_flow(path, [sounds])


def test_unreadable_files_are_flow_errors(tmp_path, sounds):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(FlowError, match=r"bad\.yaml: not valid YAML"):
        load_flow(bad_yaml, [sounds])
    not_a_table = tmp_path / "list.json"
    not_a_table.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(FlowError, match=r"list\.json: expected a table, got list"):
        load_flow(not_a_table, [sounds])
    with pytest.raises(FlowError, match="must end in .yaml, .yml or .json"):
        load_flow(tmp_path / "flow.toml", [sounds])
    with pytest.raises(FlowError, match="not a folder"):
        load_flows(tmp_path / "absent", [sounds])
