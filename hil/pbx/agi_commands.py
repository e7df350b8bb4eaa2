"""The AGI commands the simulator answers, with the reply formats of ``res/res_agi.c`` and the
fixtures (agi-01 .. agi-04). ``execute`` is called by the session thread for each command line.
"""
from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Callable

from drivers.asterisk.codec import split_agi_command
from hil.pbx.agi_client import DEAD_CHANNEL, INVALID
from hil.pbx.apps import play, prompt_ms, run_app
from hil.pbx.channels import UP, Channel
from hil.pbx.voicemail import record_file

if TYPE_CHECKING:
    from hil.pbx.agi_client import AgiSession

USAGE = object()  # a handler returns this for RESULT_SHOWUSAGE

# derived from fixtures agi-01 (STREAM FILE) and agi-02 (WAIT FOR DIGIT); the others from the
# <description> paras of res/res_agi.c's XML docs, one line per <para>, as Asterisk 22 prints them.
USAGES = {
    "stream file": (
        "Send the given file, allowing playback to be interrupted by the given digits, if any. Returns "
        "<literal>0</literal> if playback completes without a digit being pressed, or the ASCII numerical "
        "value of the digit if one was pressed, or <literal>-1</literal> on error or if the channel was "
        "disconnected. If musiconhold is playing before calling stream file it will be automatically "
        "stopped and will not be restarted after completion.\n"
        "It sets the following channel variables upon completion:\n"
        "<variable>PLAYBACKSTATUS</variable>: The status of the playback attempt as a text string.\n"
        "    <value>SUCCESS</value>\n    <value>FAILED</value>\n"),
    "wait for digit": (
        "Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive a DTMF digit. "
        "Returns <literal>-1</literal> on channel failure, <literal>0</literal> if no digit is received in "
        "the timeout, or the numerical value of the ascii of the digit if one is received. Use "
        "<literal>-1</literal> for the <replaceable>timeout</replaceable> value if you desire the call to "
        "block indefinitely.\n"),
    "get data": ("Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n"
                 "Returns the digits received from the channel at the other end.\n"),
    "exec": ("Executes <replaceable>application</replaceable> with given <replaceable>options</replaceable>.\n"
             "Returns whatever the <replaceable>application</replaceable> returns, or <literal>-2</literal> "
             "on failure to find <replaceable>application</replaceable>.\n"),
    "get variable": ("Returns <literal>0</literal> if <replaceable>variablename</replaceable> is not set. "
                     "Returns <literal>1</literal> if <replaceable>variablename</replaceable> is set and "
                     "returns the variable in parentheses.\nExample return code: 200 result=1 (testvariable)\n"),
    "set variable": "Sets a variable to the current channel.\n",
    "set music": ("Enables/Disables the music on hold generator. If <replaceable>class</replaceable> is not "
                  "specified, then the <literal>default</literal> music on hold class will be used. This "
                  "generator will be stopped automatically when playing a file.\n"
                  "Always returns <literal>0</literal>.\n"),
}
NO_USAGE = "520 Invalid command syntax.  Proper usage not available.\n"  # derived from source: res/res_agi.c


def ok(result: object, data: str | None = None, **extras: object) -> str:
    text = f"200 result={result}"
    if data is not None:
        text += f" ({data})"
    return text + "".join(f" {k}={v}" for k, v in extras.items()) + "\n"


Handler = Callable[["AgiSession", Channel, list[str]], object]


# --- handlers (argv[0..] are the command words then its arguments) ------------------------------
def _answer(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    s.pbx.answer(ch)
    return ok(0)


def _channel_status(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) > 3:
        return USAGE
    if len(argv) == 3:
        other = s.pbx.registry.find(argv[2])
        return ok(other.state) if other else ok(-1)
    return ok(ch.state)


def _stream_file(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) < 4 or len(argv) > 5:
        return USAGE
    result, endpos = play(s.pbx, ch, argv[2], argv[3])
    return ok(result, endpos=endpos)


def _get_option(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) < 4 or len(argv) > 5:
        return USAGE
    result, endpos = play(s.pbx, ch, argv[2], argv[3])
    if result == 0 and len(argv) == 5:
        digit = _read_digit(s, ch, int(argv[4]) if argv[4].lstrip("-").isdigit() else 5000, argv[3])
        result = digit
    return ok(result, endpos=endpos)


def _get_data(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) < 3:
        return USAGE
    timeout = int(argv[3]) if len(argv) > 3 and argv[3].isdigit() else 0
    timeout = timeout or 5000  # 0: the channel's digit timeout (pbx dtimeoutms, 5 s)
    max_digits = int(argv[4]) if len(argv) > 4 and argv[4].isdigit() else 1024
    pbx = s.pbx
    with pbx.lock:
        ch.dtmf_listening, ch.dtmf = True, []
        pbx.input_wanted(ch)
    if prompt_ms(pbx, argv[2]) is not None:
        play(pbx, ch, argv[2], "0123456789*#ABCD", keep_digits=True)
        with pbx.lock:
            ch.dtmf_listening = True
    digits = ""
    try:
        while len(digits) < max_digits:
            got = pbx.wait_until(lambda: ch.hungup or ch.dtmf, timeout)
            with pbx.lock:
                if ch.hungup:
                    return ok(-1)
                if not got:
                    return ok(digits, "timeout")
                digit = ch.dtmf.pop(0)
            if digit == "#":
                break
            digits += digit
        return ok(digits)
    finally:
        ch.dtmf_listening = False


def _read_digit(s: "AgiSession", ch: Channel, timeout_ms: int, accept: str | None = None) -> int:
    pbx = s.pbx
    with pbx.lock:
        ch.dtmf_listening, ch.dtmf = True, []
        pbx.input_wanted(ch)
    got = pbx.wait_until(lambda: ch.hungup or ch.dtmf, None if timeout_ms < 0 else timeout_ms)
    with pbx.lock:
        ch.dtmf_listening = False
        if ch.hungup:
            return -1
        digit = ch.dtmf.pop(0) if got and ch.dtmf else None
        ch.dtmf = []
    return ord(digit) if digit and (accept is None or digit in accept) else 0


def _wait_for_digit(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) != 4 or not argv[3].lstrip("-").isdigit():
        return USAGE
    return ok(_read_digit(s, ch, int(argv[3])))


def _set_music(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) < 3:
        return USAGE
    if argv[2].lower() == "on":
        s.pbx.start_moh(ch, argv[3] if len(argv) > 3 else "default")
    else:
        s.pbx.stop_moh(ch)
    return ok(0)


def _set_variable(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) != 4:
        return USAGE
    s.pbx.set_var(ch, argv[2], argv[3])
    return ok(1)


def variable(s: "AgiSession", ch: Channel, name: str) -> str | None:
    builtins = {"CHANNEL": ch.name, "UNIQUEID": ch.uniqueid, "EXTEN": ch.exten, "CONTEXT": ch.context,
                "CALLERID(num)": ch.caller_num, "CALLERID(name)": ch.caller_name,
                "CHANNEL(state)": ch.state == UP and "Up" or "Ring"}
    if name in ch.variables:
        return ch.variables[name]
    if name in builtins:
        return str(builtins[name])
    return s.pbx.globals.get(name)


def _get_variable(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) != 3:
        return USAGE
    value = variable(s, ch, argv[2])
    return ok(0) if value is None else ok(1, value)


def _get_full_variable(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) not in (4, 5):
        return USAGE
    target = ch
    if len(argv) == 5:
        target = s.pbx.registry.find(argv[4])
        if target is None:
            return ok(0)
    text = re.sub(r"\$\{([^}]+)\}", lambda m: variable(s, target, m.group(1)) or "", argv[3])
    return ok(1, text)


def _exec(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) < 2:
        return USAGE
    app, data = argv[1], argv[2] if len(argv) > 2 else ""
    if app.lower() == "gosub":
        # per the brief: a Gosub answers "100 result=0 Trying..." before its final line
        s.write("100 result=0 Trying...\n")
        return ok(0)
    return ok(run_app(s.pbx, ch, app, data))


def _gosub(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) < 4 or len(argv) > 5:
        return USAGE
    s.write("100 result=0 Trying...\n")  # derived from source: apps/app_stack.c handle_gosub
    return "200 result=0 Gosub complete\n"


def _hangup(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) == 1:
        s.pbx.hangup(ch, 16, by="edge", soft=True)
        return ok(1)
    if len(argv) == 2:
        other = s.pbx.registry.find(argv[1])
        if other is None:
            return ok(-1)
        s.pbx.hangup(other, 16, by="edge", soft=True)
        return ok(1)
    return USAGE


def _say(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    if len(argv) < 4:
        return USAGE
    per_item_ms = 400 if argv[1].lower() == "digits" else 600
    s.pbx.wait_until(lambda: ch.hungup, per_item_ms * len(argv[2]))
    return ok(-1 if ch.hungup else 0)


def _database(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    verb, db = argv[1].lower(), s.pbx.astdb
    if verb == "put" and len(argv) == 5:
        db[(argv[2], argv[3])] = argv[4]
        return ok(1)
    if verb == "get" and len(argv) == 4:
        value = db.get((argv[2], argv[3]))
        return ok(0) if value is None else ok(1, value)
    if verb == "del" and len(argv) == 4:
        return ok(1 if db.pop((argv[2], argv[3]), None) is not None else 0)
    if verb == "deltree" and len(argv) in (3, 4):
        for key in [k for k in db if k[0] == argv[2] and (len(argv) == 3 or k[1].startswith(argv[3]))]:
            del db[key]
        return ok(1)
    return USAGE


def _record_file(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
    """Writes the caller's message to a real file; the rules are in ``hil.pbx.voicemail``."""
    outcome = record_file(s.pbx, ch, argv)
    if outcome is None:
        return USAGE
    if outcome.endpos is None:
        return ok(outcome.result, outcome.data)
    return ok(outcome.result, outcome.data, endpos=outcome.endpos)


def _set_simple(field: str, result: int) -> Handler:
    def handler(s: "AgiSession", ch: Channel, argv: list[str]) -> object:
        if len(argv) < 3:
            return USAGE
        with s.pbx.lock:
            if field == "callerid":
                ch.caller_num = argv[2]
            elif field == "priority" and argv[2].isdigit():
                ch.priority = int(argv[2])
            elif field in ("context", "exten"):
                setattr(ch, field, argv[2])
        return ok(result)
    return handler


# (words) -> (handler, allowed on a dead channel); derived from source: res/res_agi.c commands[]
COMMANDS: dict[tuple[str, ...], tuple[Handler, bool]] = {
    ("answer",): (_answer, False),
    ("channel", "status"): (_channel_status, False),
    ("control", "stream", "file"): (_stream_file, False),
    ("database", "del"): (_database, True),
    ("database", "deltree"): (_database, True),
    ("database", "get"): (_database, True),
    ("database", "put"): (_database, True),
    ("exec",): (_exec, True),
    ("get", "data"): (_get_data, False),
    ("get", "full", "variable"): (_get_full_variable, True),
    ("get", "option"): (_get_option, False),
    ("get", "variable"): (_get_variable, True),
    ("gosub",): (_gosub, False),
    ("hangup",): (_hangup, False),
    ("noop",): (lambda s, ch, argv: ok(0), True),
    ("record", "file"): (_record_file, False),
    ("say", "digits"): (_say, False),
    ("say", "number"): (_say, False),
    ("say", "alpha"): (_say, False),
    ("set", "autohangup"): (_set_simple("autohangup", 0), False),
    ("set", "callerid"): (_set_simple("callerid", 1), False),
    ("set", "context"): (_set_simple("context", 0), False),
    ("set", "extension"): (_set_simple("exten", 0), False),
    ("set", "music"): (_set_music, False),
    ("set", "priority"): (_set_simple("priority", 0), False),
    ("set", "variable"): (_set_variable, True),
    ("stream", "file"): (_stream_file, False),
    ("verbose",): (lambda s, ch, argv: ok(1), True),
    ("wait", "for", "digit"): (_wait_for_digit, False),
}


def find_command(argv: list[str]) -> tuple[tuple[str, ...], Handler, bool] | None:
    words = [w.lower() for w in argv[:3]]
    for n in (3, 2, 1):
        key = tuple(words[:n])
        if len(key) == n and key in COMMANDS:
            return (key, *COMMANDS[key])
    return None


def execute(session: "AgiSession", line: str) -> None:
    """Run one command line and write its reply (and AGIExecStart/End to AMI)."""
    pbx, ch = session.pbx, session.channel
    argv = split_agi_command(line)
    command_id = random.randint(1, 2**31 - 1)
    pbx.emit(pbx.events.agi_exec_start(ch, command_id, line))
    found = find_command(argv) if argv else None
    dead = session.gone()
    if found is None:
        reply, code, result = INVALID, 510, "Invalid or unknown command"
    elif dead and not found[2]:
        reply, code, result = DEAD_CHANNEL, 511, "Command not permitted on a dead channel or intercept routine"
    else:
        key, handler, _ = found
        answer = handler(session, ch, argv)
        if answer is USAGE:
            usage = USAGES.get(" ".join(key))
            reply = (f"520-Invalid command syntax.  Proper usage follows:\n{usage}520 End of proper usage.\n"
                     if usage else NO_USAGE)
            code, result = 520, "Usage"
        else:
            reply, code, result = str(answer), 200, "Success"
    session.write(reply)
    pbx.emit(pbx.events.agi_exec_end(ch, command_id, line, code, result))
    pbx.record("agi_command", call=ch.call, channel=ch.name, command=line,
               reply=reply.splitlines()[-1] if reply else "", dead=dead)
