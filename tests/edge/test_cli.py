"""The ``edge`` command line as a technician meets it: a bad config is a clear message, not a trace."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "edge" / "data" / "edge.example.toml"


def edge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_check_config_accepts_the_shipped_example() -> None:
    done = edge("check-config", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "6 agents" in done.stdout and "ok" in done.stdout


def test_check_config_names_the_bad_key_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "edge.toml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace('extension = "8003"', 'extension = "80x3"'),
                   encoding="utf-8")
    done = edge("check-config", str(bad))
    assert done.returncode == 2
    assert "agents[2].extension" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_reports_toml_syntax_errors_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "edge.toml"
    bad.write_text("[edge]\nid = \n", encoding="utf-8")
    done = edge("check-config", str(bad))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.strip()


def test_check_config_reports_a_missing_file(tmp_path: Path) -> None:
    done = edge("check-config", str(tmp_path / "nope.toml"))
    assert done.returncode == 2
    assert "nope.toml" in done.stderr and "Traceback" not in done.stderr


def test_run_refuses_an_invalid_config_before_opening_anything(tmp_path: Path) -> None:
    bad = tmp_path / "edge.toml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace('strategy = "extension_order"', 'strategy = "random"'),
                   encoding="utf-8")
    done = edge("run", "--config", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert "groups[1].strategy" in done.stderr
    assert not (tmp_path / "edge.sqlite3").exists()


def test_asterisk_conf_writes_the_snippets_from_the_edge_config(tmp_path: Path) -> None:
    secrets = [f"--phone-secret={ext}:Str0ng-{ext}-pw" for ext in ("8001", "8002", "8003", "8004", "8005", "8009")]
    done = edge("asterisk-conf", "--config", str(EXAMPLE), "--edge-host", "127.0.0.1", *secrets,
                "--out", str(tmp_path / "conf"))
    assert done.returncode == 0, done.stderr
    extensions = (tmp_path / "conf" / "extensions.conf").read_text(encoding="utf-8")
    assert "agi://127.0.0.1:4573/incoming" in extensions and "agi://127.0.0.1:4573/dial" in extensions
    pjsip = (tmp_path / "conf" / "pjsip.conf").read_text(encoding="utf-8")
    assert "[8009]" in pjsip and "赵主管" in pjsip


def test_check_config_rejects_an_invalid_ivr_flow_naming_the_step(tmp_path: Path) -> None:
    """INB-11's bad input at load: a flow pointing at an unknown step stops the edge, not a call."""
    sounds, flows = tmp_path / "sounds" / "cc", tmp_path / "flows"
    sounds.mkdir(parents=True)
    flows.mkdir()
    for prompt in ("welcome", "menu"):
        (sounds / f"{prompt}.wav").write_bytes(b"RIFF")
    (flows / "main.yaml").write_text(
        "id: main\nversion: 1\nstart: greet\nsteps:\n"
        "  greet: {type: play, prompt: cc/welcome, next: menu}\n"
        "  menu: {type: menu, prompt: cc/menu, options: {'1': cardz}, on_fail: bye}\n"
        "  bye: {type: hangup}\n", encoding="utf-8")
    config = tmp_path / "edge.toml"
    config.write_text(EXAMPLE.read_text(encoding="utf-8").replace(
        '# flows_dir = "flows"', 'flows_dir = "flows"').replace(
        'prompt_dirs = ["/var/lib/asterisk/sounds/zh", "/var/lib/asterisk/sounds"]',
        f'prompt_dirs = ["{(tmp_path / "sounds").as_posix()}"]'), encoding="utf-8")
    done = edge("check-config", str(config))
    assert done.returncode == 2, done.stdout
    assert "step 'menu'" in done.stderr and "cardz" in done.stderr
    assert "Traceback" not in done.stderr
