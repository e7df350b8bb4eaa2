"""INB-9 in the core: offer, number, the task, dialling when an agent frees up, retries."""
from __future__ import annotations

from edge.commands import Collect, CreateTask, DialOut, OriginateCallback, RingAgent, UpdateTask
from edge.core import Core
from edge.events import CallbackAnswered, CallbackFailed, CommandDone
from edge.regions import RegionResolver
from tests.edge.conftest import Harness, branch


def callback_branch():
    return branch(groups=[{"name": "general", "strategy": "extension_order", "callback_after_s": 10,
                           "callback_attempts": 2, "callback_retry_s": 60}],
                  agents=[{"id": "wang", "name": "王芳", "extension": "8001", "groups": ["general"],
                           "wrap_up_s": 0}])


def of(kind, commands):
    return [c for c in commands if isinstance(c, kind)]


def leave_callback(h, number="13912345678"):
    h.offer("busy")
    h.answer("busy")
    h.offer("c2", caller="13800000002")
    commands = h.tick(10)
    assert of(Collect, commands) == [Collect("c2", "cc/callback-offer", 1, 6000)]
    assert of(Collect, h.send(CommandDone("c2", "Collect", digits="1")))[0].max_digits == 12
    return h.send(CommandDone("c2", "Collect", digits=number, timed_out=True))


def test_leaving_a_number_ends_the_call_and_creates_the_task(make):
    h = make(data=callback_branch())
    commands = leave_callback(h)
    [task] = of(CreateTask, commands)
    assert (task.key, task.kind, task.number, task.group) == \
        ("callback:c2", "callback", "13912345678", "general")
    assert h.cdr("c2")["disposition"] == "callback"


def test_no_number_keyed_takes_the_caller_id(make):
    h = make(data=callback_branch())
    assert of(CreateTask, leave_callback(h, number=""))[0].number == "13800000002"


def test_declining_the_offer_keeps_the_queue_position(make):
    h = make(data=callback_branch())
    h.offer("busy")
    h.answer("busy")
    h.offer("c2")
    h.offer("c3")
    assert len(of(Collect, h.tick(10))) == 2  # both have waited long enough
    h.send(CommandDone("c3", "Collect", digits="", timed_out=True))  # c3 declines first
    h.send(CommandDone("c2", "Collect", digits="9"))
    assert h.core.queue_position("c2") == 1 and h.core.queue_position("c3") == 2


def test_the_callback_is_dialled_when_the_agent_frees_up_and_retried_once(make):
    h = make(data=callback_branch())
    leave_callback(h)
    commands = h.agent_hangs_up("busy")
    [originate] = of(OriginateCallback, commands)
    assert (originate.extension, originate.dial_string, originate.number) == \
        ("8001", "PJSIP/8001", "13912345678")
    assert h.state("wang") == "ringing"
    commands = h.send(CallbackAnswered("cb1", "PJSIP/8001-00000001", "8001", "13912345678"))
    assert of(DialOut, commands) == [DialOut("cb1", "DAHDI/g0/13912345678")]
    commands = h.send(CommandDone("cb1", "DialOut", status="BUSY"))
    assert of(UpdateTask, commands) == [UpdateTask("callback:c2", "open", "BUSY", attempt=True)]
    assert of(OriginateCallback, h.tick(30)) == []         # not before callback_retry_s
    assert of(OriginateCallback, h.tick(31))                # retried
    h.send(CallbackAnswered("cb2", "PJSIP/8001-00000002", "8001", "13912345678"))
    commands = h.send(CommandDone("cb2", "DialOut", status="NOANSWER"))
    assert of(UpdateTask, commands)[0].state == "failed"    # 2 attempts: given up
    assert h.cdr("cb2")["direction"] == "callback"


def test_an_unanswered_agent_phone_puts_the_task_back(make):
    h = make(data=callback_branch())
    leave_callback(h)
    h.agent_hangs_up("busy")
    commands = h.send(CallbackFailed("callback:c2", "8001", "no_answer"))
    assert of(UpdateTask, commands) == [UpdateTask("callback:c2", "open", "agent phone no_answer")]
    assert h.core.callbacks.pending["general"][0].key == "callback:c2"


def test_open_tasks_survive_a_restart():
    h = Harness(callback_branch())
    core = Core(h.config, h.clock, RegionResolver.from_files(), open_callbacks=[
        {"key": "callback:old", "group": "general", "number": "13912345678", "attempts": 1}])
    commands = core.handle(CallbackFailed("nothing", "8001", "x"))  # unrelated: ignored
    assert commands == [] and core.callbacks.pending["general"][0].attempts == 1
    assert not of(RingAgent, commands)
