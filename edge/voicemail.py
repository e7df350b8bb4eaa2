"""Voicemail (INB-13 语音留言): the caller leaves a message, stored as MP3 with the call's CDR.

Reached from an IVR flow's ``voicemail`` step, a group's ``overflow = "voicemail"`` or
``out_of_hours = "voicemail"``. The caller hears ``prompt`` and the beep; Asterisk records
(``RecordMessage`` -> AGI ``RECORD FILE``) into the recording spool dir as ``<call_id>-vm.wav``
until ``#``, silence or ``max_s``. A caller who simply hangs up after speaking leaves a message too.
When the call closes, the WAV goes to the recording service (``EncodeRecording`` with
``kind = voicemail``), filed under ``<root>/<day>/voicemail-<box>/``; when its MP3 is verified,
``voicemail.new`` tells the box's agent(s) (the UI and sync listen for it).
"""
from __future__ import annotations

from pathlib import PurePosixPath

from edge.calls import Call, Phase
from edge.commands import EncodeRecording, Hangup, Play, RecordMessage
from edge.events import CommandDone
from edge.switchboard import Switchboard

SUFFIX = "-vm.wav"


def message_file(call_id: str) -> str:
    return f"{call_id}{SUFFIX}"


class Voicemail:
    def __init__(self, sb: Switchboard) -> None:
        self.sb = sb
        self.config = sb.config.voicemail
        sb.on_call_closed.append(self._closed)

    def take(self, call: Call, box: str, prompt: str = "") -> None:
        sb = self.sb
        sb.queues.remove(call.call_id)
        call.phase, call.voicemail_box, call.music_on = Phase.VOICEMAIL, box, False
        call.disposition = "voicemail"
        path = PurePosixPath(sb.config.recording.spool_dir) / message_file(call.call_id)
        sb.emit(Play(call.call_id, prompt or self.config.greeting),
                RecordMessage(call.call_id, str(path.with_suffix("")), self.config.max_s,
                              self.config.silence_s))
        sb.notify("call.voicemail", call_id=call.call_id, caller=call.caller, box=box)

    def recorded(self, call: Call, event: CommandDone) -> None:
        if event.command != "RecordMessage":
            return
        if not event.ok:  # Asterisk could not write the file (writefile): say so, lose no call
            self.sb.notify("voicemail.failed", call_id=call.call_id, box=call.voicemail_box,
                           reason=event.status or "RECORD FILE failed")
            call.voicemail_box, call.disposition = "", "failed"
        self.sb.emit(Play(call.call_id, self.config.thanks),
                     Hangup(call.call_id, reason=f"message left ({event.status})"))
        self.sb.close(call, "caller")

    def _closed(self, call: Call, record: dict) -> None:
        if not call.voicemail_box:
            return
        meta = {key: record.get(key) for key in ("direction", "caller", "callee", "started_at",
                                                 "ended_at", "disposition")}
        meta.update(kind="voicemail", box=call.voicemail_box,
                    agent_id=f"voicemail-{call.voicemail_box}", talk_s=0.0,
                    answered_at=record.get("started_at"))
        self.sb.emit(EncodeRecording(call.call_id, message_file(call.call_id), 0, meta))
