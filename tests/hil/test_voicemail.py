"""INB-13 through the wire: the message is an MP3 linked to the call's CDR, the box is notified,
and its audio is what the caller said (the harness also checks that)."""
from __future__ import annotations

from pathlib import Path

import pytest

from edge.store import Store
from hil.harness import run_with_edge

SCENARIO = Path(__file__).parents[2] / "hil" / "scenarios" / "voicemail-overflow.yaml"


@pytest.mark.hil
def test_the_message_is_stored_with_the_cdr_and_the_box_is_told(tmp_path: Path) -> None:
    run = run_with_edge(SCENARIO, tmp_path)
    assert run.passed, run.report()
    [cdr] = run.cdrs
    [message] = run.recordings
    assert message["call_id"] == cdr["call_id"] and message["file"] == f"{cdr['call_id']}-vm.wav"
    mp3 = Path(message["mp3_path"])
    assert mp3.parent.name == "voicemail-general" and mp3.is_file()
    assert not (tmp_path / "spool" / message["file"]).exists()  # WAV gone after verification
    with Store(tmp_path / "edge.sqlite3") as store:
        [new] = [e["data"] for e in store.events(limit=100, topic="voicemail.new")]
    assert (new["box"], new["caller"], new["call_id"]) == ("general", "13800138000", cdr["call_id"])
    assert 4.5 <= new["duration_s"] <= 5.1
    assert mp3.name == f"{cdr['call_id']}-0.mp3"  # leg 0: never the name of a call recording's leg 1
