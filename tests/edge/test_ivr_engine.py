"""The IVR interpreter, walked through flows as the core would drive it: answer by answer."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from edge.ivr.engine import (
    CollectDigits, HangupCall, IvrSession, Lookup, PauseRecording, PlayPrompt, ResumeRecording,
    SayValue, ToOperator, ToQueue, ToVoicemail)
from edge.ivr.errors import SessionError
from edge.ivr.loader import parse_flow
from edge.ivr.model import Flow

STEPS: dict[str, Any] = {
    "welcome": {"type": "branch", "on": "period",
                "cases": {"open": "by_caller", "closed": "closed_msg"}, "default": "by_caller"},
    "by_caller": {"type": "branch", "on": "caller", "cases": {"^1380": "vip", "^0755": "local"},
                  "default": "greet"},
    "vip": {"type": "set", "var": "product", "value": "vip", "next": "greet"},
    "local": {"type": "set", "var": "product", "value": "local", "next": "greet"},
    "greet": {"type": "play", "prompt": "cc/welcome", "next": "main"},
    "main": {"type": "menu", "prompt": "cc/main-menu",
             "options": {"1": "ask_member", "2": "cards", "3": "route", "*9": "vm"},
             "retries": 2, "timeout_s": 4.5, "invalid_prompt": "cc/invalid", "on_fail": "cards"},
    "ask_member": {"type": "collect", "prompt": "cc/enter-member", "max_digits": 12,
                   "min_digits": 6, "timeout_s": 8, "retries": 1, "invalid_prompt": "cc/invalid",
                   "into": "member", "next": "verify", "on_fail": "main"},
    "verify": {"type": "verify_member", "from": "member", "found": "ask_pin",
               "not_found": "main"},
    "ask_pin": {"type": "collect", "prompt": "cc/enter-pin", "max_digits": 6, "min_digits": 6,
                "retries": 1, "into": "pin", "sensitive": True, "next": "balance"},
    "balance": {"type": "lookup", "field": "balance", "into": "bal", "found": "say_bal",
                "not_found": "no_data"},
    "say_bal": {"type": "say", "prompt": "cc/your-balance", "value": "{bal}", "as": "money",
                "next": "main"},
    "no_data": {"type": "play", "prompt": "cc/no-data", "next": "main"},
    "route": {"type": "branch", "on": "var", "var": "product",
              "cases": {"vip": "vip_queue", "local": "vm"}, "default": "cards"},
    "vip_queue": {"type": "queue", "queue": "vip"},
    "cards": {"type": "queue", "queue": "cards"},
    "vm": {"type": "voicemail", "box": "general"},
    "closed_msg": {"type": "play", "prompt": "cc/closed", "next": "bye"},
    "bye": {"type": "hangup"},
}

MENU = CollectDigits("cc/main-menu", 2, 4500)
ASK_MEMBER = CollectDigits("cc/enter-member", 12, 8000)
ASK_PIN = CollectDigits("cc/enter-pin", 6, 5000, sensitive=True)


def make_flow(operator: str | None = "general", **steps: Any) -> Flow:
    data = {"id": "bank-main", "version": 1, "start": "welcome",
            "steps": {**copy.deepcopy(STEPS), **steps}}
    if operator:
        data["operator"] = {"queue": operator}
    return parse_flow(data, "test", lambda prompt: True)


def session(flow: Flow | None = None, caller: str = "02088886666",
            period: str = "open") -> IvrSession:
    return IvrSession(flow or make_flow(), "call-1", caller, lambda: period)


def at_main(s: IvrSession) -> None:
    assert s.start() == [PlayPrompt("cc/welcome")]
    assert s.on_played() == [MENU]


def at_pin(s: IvrSession) -> None:
    at_main(s)
    assert s.on_collected("1", False) == [ASK_MEMBER]
    assert s.on_collected("12345678", False) == [Lookup("member", "12345678", "found")]
    assert s.on_lookup(True, {"customer_id": "C42", "name": "张三"}) == [PauseRecording(), ASK_PIN]


# --- branches and set ----------------------------------------------------------------------------

def test_branch_on_period():
    s = session(period="closed")
    assert s.start() == [PlayPrompt("cc/closed")]
    assert s.on_played() == [HangupCall()]
    assert s.outcome == "hangup" and s.finished
    assert s.trace == ["welcome", "closed_msg", "bye"]
    # a period the branch does not name takes the default
    assert session(period="holiday").start() == [PlayPrompt("cc/welcome")]


@pytest.mark.parametrize("caller, product, outcome", [
    ("13800138000", "vip", "queue:vip"),
    ("075583210001", "local", "voicemail:general"),
    ("02088886666", None, "queue:cards"),
])
def test_branch_on_caller_then_set_then_branch_on_var(caller, product, outcome):
    s = session(caller=caller)
    at_main(s)
    assert s.variables.get("product") == product
    assert s.on_collected("3", False)[-1] in (ToQueue("vip"), ToVoicemail("general"),
                                              ToQueue("cards"))
    assert s.outcome == outcome


# --- menus ---------------------------------------------------------------------------------------

def test_menu_choice_goes_to_its_step():
    s = session()
    at_main(s)
    assert s.on_collected("2", False) == [ToQueue("cards")]
    assert s.outcome == "queue:cards"
    assert s.trace == ["welcome", "by_caller", "greet", "main", "main=2", "cards"]


def test_menu_two_digit_choice_arrives_after_a_timeout():
    s = session()
    at_main(s)
    assert s.on_collected("*9", True) == [ToVoicemail("general")]


def test_menu_timeouts_reprompt_then_on_fail():
    s = session()
    at_main(s)
    assert s.on_collected("", True) == [MENU]  # no "invalid" prompt for silence
    assert s.on_collected("", True) == [MENU]
    assert s.on_collected("", True) == [ToQueue("cards")]  # retries: 2 -> three tries
    assert s.trace[-4:] == ["main=(timeout)", "main=(timeout)", "main=(timeout)", "cards"]


def test_menu_invalid_digit_plays_invalid_prompt_then_asks_again():
    s = session()
    at_main(s)
    assert s.on_collected("7", False) == [PlayPrompt("cc/invalid")]
    assert s.on_played() == [MENU]
    assert s.on_collected("", True) == [MENU]
    assert s.on_collected("8", False) == [PlayPrompt("cc/invalid")]
    assert s.on_played() == [ToQueue("cards")]
    assert "main=7" in s.trace and "main=8" in s.trace


def test_retries_count_afresh_each_time_a_menu_is_entered():
    s = session()
    at_main(s)
    s.on_collected("", True)
    s.on_collected("", True)  # two failures at main
    assert s.on_collected("1", False) == [ASK_MEMBER]
    assert s.on_collected("", True) == [ASK_MEMBER]
    assert s.on_collected("", True) == [MENU]  # ask_member's on_fail
    assert s.on_collected("", True) == [MENU]  # main starts again with its three tries
    assert s.on_collected("", True) == [MENU]
    assert s.on_collected("", True) == [ToQueue("cards")]


def test_0_goes_to_the_operator_from_a_menu_and_a_collect():
    s = session()
    at_main(s)
    assert s.on_collected("0", False) == [ToOperator("general")]
    assert s.outcome == "operator:general" and s.trace[-2:] == ["main=0", "(operator)"]
    s = session()
    at_main(s)
    s.on_collected("1", False)
    assert s.on_collected("0", False) == [ToOperator("general")]


def test_without_an_operator_0_is_an_ordinary_digit():
    s = session(make_flow(operator=None))
    at_main(s)
    assert s.on_collected("0", False) == [PlayPrompt("cc/invalid")]
    assert s.on_played() == [MENU]


def test_a_menu_without_on_fail_ends_at_the_operator_or_hangs_up():
    main = dict(STEPS["main"])
    del main["on_fail"]
    for operator, end, outcome in (("general", ToOperator("general"), "operator:general"),
                                   (None, HangupCall(), "hangup")):
        s = session(make_flow(operator=operator, main=main))
        at_main(s)
        s.on_collected("", True)
        s.on_collected("", True)
        assert s.on_collected("", True) == [end]
        assert s.outcome == outcome


# --- collecting digits ---------------------------------------------------------------------------

def test_collect_with_too_few_digits_is_a_retry_then_on_fail():
    s = session()
    at_main(s)
    s.on_collected("1", False)
    assert s.on_collected("12345", False) == [PlayPrompt("cc/invalid")]  # min_digits: 6
    assert s.on_played() == [ASK_MEMBER]
    assert s.on_collected("123", False) == [PlayPrompt("cc/invalid")]
    assert s.on_played() == [MENU]  # retries: 1 used up -> on_fail: main
    assert "member" not in s.variables


def test_collect_accepts_enough_digits_that_ended_by_timeout():
    s = session()
    at_main(s)
    s.on_collected("1", False)
    assert s.on_collected("123456", True) == [Lookup("member", "123456", "found")]
    assert s.variables["member"] == "123456"


def test_star_terminator_ends_the_digits_and_takes_one_more_place():
    ask = dict(STEPS["ask_member"], terminator="*")
    s = session(make_flow(ask_member=ask))
    at_main(s)
    assert s.on_collected("1", False) == [CollectDigits("cc/enter-member", 13, 8000)]
    assert s.on_collected("1234567*", True) == [Lookup("member", "1234567", "found")]


# --- verification, look-ups, read-back -----------------------------------------------------------

def test_balance_self_service_reads_the_balance_back_as_money():
    s = session()
    at_pin(s)
    assert s.on_collected("654321", False) == [ResumeRecording(),
                                               Lookup("account", "C42", "balance")]
    assert s.on_lookup(True, {"balance": "1234.56"}) == [PlayPrompt("cc/your-balance")]
    assert s.on_played() == [SayValue("money", "1234.56")]
    assert s.on_played() == [MENU]
    assert s.customer_id == "C42" and s.variables["bal"] == "1234.56"


def test_member_not_found_goes_back_to_the_menu():
    s = session()
    at_main(s)
    s.on_collected("1", False)
    s.on_collected("99999999", False)
    assert s.on_lookup(False, {}) == [MENU]
    assert s.customer_id == "" and s.trace[-2:] == ["verify=not_found", "main"]


def test_found_member_without_customer_id_counts_as_not_found():
    s = session()
    at_main(s)
    s.on_collected("1", False)
    s.on_collected("99999999", False)
    assert s.on_lookup(True, {"name": "?"}) == [MENU]


@pytest.mark.parametrize("found, values", [(False, {}), (True, {}), (True, {"balance": None})])
def test_lookup_not_found_or_without_the_field(found, values):
    s = session()
    at_pin(s)
    s.on_collected("654321", False)
    assert s.on_lookup(found, values) == [PlayPrompt("cc/no-data")]
    assert "bal" not in s.variables and s.trace[-2:] == ["balance=not_found", "no_data"]


def test_lookup_values_that_are_not_text_are_read_back_as_text():
    s = session()
    at_pin(s)
    s.on_collected("654321", False)
    s.on_lookup(True, {"balance": 88})
    assert s.on_played() == [SayValue("money", "88")]


def test_a_read_back_with_nothing_to_say_goes_on():
    say = {"type": "say", "value": "{nothing}", "as": "digits", "next": "cards"}
    options = {**STEPS["main"]["options"], "4": "say_it", "5": "blank"}
    s = session(make_flow(main=dict(STEPS["main"], options=options),
                          say_it=say,
                          blank={"type": "set", "var": "nothing", "value": "", "next": "say_it"}))
    at_main(s)
    assert s.on_collected("4", False) == [ToQueue("cards")]
    assert s.trace[-2:] == ["say_it", "cards"]


# --- sensitive steps -----------------------------------------------------------------------------

def test_sensitive_digits_are_masked_and_recording_pauses_around_them():
    s = session()
    at_pin(s)  # PauseRecording came right before the PIN's CollectDigits
    s.on_collected("654321", False)
    assert "ask_pin=******" in s.trace and not any("654321" in entry for entry in s.trace)
    assert s.masked_variables() == {"member": "12345678", "pin": "******"}
    assert s.variables["pin"] == "654321"  # the flow itself may use it


def test_a_sensitive_retry_stays_paused_and_leaving_it_resumes():
    s = session()
    at_pin(s)
    assert s.on_collected("12", False) == [ASK_PIN]  # no invalid prompt here; still paused
    assert s.trace[-1] == "ask_pin=******"
    # out of retries with no on_fail: the operator, recording resumed first
    assert s.on_collected("", True) == [ResumeRecording(), ToOperator("general")]


def test_0_from_a_sensitive_step_resumes_recording_before_the_operator():
    s = session()
    at_pin(s)
    assert s.on_collected("0", False) == [ResumeRecording(), ToOperator("general")]


def test_a_sensitive_key_is_masked_in_the_lookup_repr():
    ask = dict(STEPS["ask_member"], sensitive=True)
    s = session(make_flow(ask_member=ask))
    at_main(s)
    assert s.on_collected("1", False) == [PauseRecording(), CollectDigits(
        "cc/enter-member", 12, 8000, sensitive=True)]
    lookup = s.on_collected("110101199001", False)
    assert lookup == [ResumeRecording(), Lookup("member", "110101199001", "found", True)]
    assert "110101199001" not in repr(lookup[1]) and "******" in repr(lookup[1])


# --- the contract --------------------------------------------------------------------------------

def test_answers_out_of_turn_are_refused():
    s = session()
    with pytest.raises(SessionError, match="not started"):
        s.on_played()
    s.start()
    with pytest.raises(SessionError, match="on_collected while waiting for played"):
        s.on_collected("1", False)
    with pytest.raises(SessionError, match="started twice"):
        s.start()
    s.on_played()
    s.on_collected("2", False)
    with pytest.raises(SessionError, match=r"finished \(queue:cards\)"):
        s.on_played()


def test_abandon_ends_the_session():
    s = session()
    at_main(s)
    s.abandon()
    assert s.outcome == "abandoned"
    with pytest.raises(SessionError):
        s.on_collected("1", False)


def test_a_silent_line_cannot_hold_the_flow_for_ever():
    main = dict(STEPS["main"], on_fail="greet")
    s = IvrSession(make_flow(main=main), "call-1", "02088886666", lambda: "open", max_steps=20)
    actions = s.start()
    for _ in range(40):
        if s.finished:
            break
        actions = s.on_played() if actions[-1] == PlayPrompt("cc/welcome") else (
            s.on_collected("", True))
    assert actions == [ToOperator("general")]
    assert s.trace[-2:] == ["(step limit)", "(operator)"]
