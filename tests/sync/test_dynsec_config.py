"""The production set-up path: ``python -m aggregator.fleet.broker_config`` writes a file a real
Mosquitto loads, with a working admin and HQ user and no edge yet; its password hashes are the
plugin's own PBKDF2-SHA512 format."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat

import pytest
from click.testing import CliRunner

from aggregator.fleet.broker_acl import hashed_password, initial_config
from aggregator.fleet.broker_config import main
from aggregator.fleet.dynsec import DynsecClient
from aggregator.fleet.errors import InvalidInput
from hil.broker import HQ_USER, MosquittoBroker
from tests.sync.test_dynsec_broker import connack

ADMIN_PW, HQ_PW = "admin-password-0123456789", "hq-password-0123456789"


@pytest.mark.hil
def test_the_generated_file_runs_a_broker(tmp_path):
    broker = MosquittoBroker(tmp_path / "broker", {}, dynsec=True, hq_password=HQ_PW,
                             admin_password=ADMIN_PW)
    result = CliRunner().invoke(main, ["--out", str(broker.dynsec_path)],
                                env={"CC_HQ_BROKER_ADMIN_PASSWORD": ADMIN_PW,
                                     "CC_BROKER_HQ_PASSWORD": HQ_PW})
    assert result.exit_code == 0, result.output
    assert f"plugin_opt_config_file {broker.dynsec_path}" in result.output
    assert stat.S_IMODE(os.stat(broker.dynsec_path).st_mode) == 0o600
    with broker:                     # the broker keeps a file it finds: it runs on ours
        assert not connack(broker, HQ_USER, HQ_PW).is_failure
        DynsecClient("127.0.0.1", broker.port, "dynsec-admin", ADMIN_PW).add_edge("edge-1", "pw-1")
        assert not connack(broker, "edge-1", "pw-1").is_failure
    again = CliRunner().invoke(main, ["--out", str(broker.dynsec_path)],
                               env={"CC_HQ_BROKER_ADMIN_PASSWORD": ADMIN_PW,
                                    "CC_BROKER_HQ_PASSWORD": HQ_PW})
    assert again.exit_code == 1 and "--force" in again.output
    assert "edge-1" in broker.dynsec_path.read_text()     # the enrolled edge is still there


def test_short_passwords_are_refused(tmp_path):
    result = CliRunner().invoke(main, ["--out", str(tmp_path / "d.json"), "--admin-password", "x",
                                       "--hq-password", HQ_PW])
    assert result.exit_code == 1 and "at least 16" in result.output
    assert not (tmp_path / "d.json").exists()


def test_password_hashes_are_the_plugins_format():
    fields = hashed_password("秘密", salt=b"0123456789ab", iterations=101)
    expected = hashlib.pbkdf2_hmac("sha512", "秘密".encode(), b"0123456789ab", 101, 64)
    assert fields == {"password": base64.b64encode(expected).decode(),
                      "salt": base64.b64encode(b"0123456789ab").decode(), "iterations": 101}


def test_the_document_refuses_clashing_or_unsafe_names():
    with pytest.raises(InvalidInput, match="different users"):
        initial_config(admin_user="hq", admin_password="a", hq_user="hq", hq_password="b")
    with pytest.raises(InvalidInput, match="taken"):
        initial_config(admin_user="a", admin_password="a", hq_user="hq", hq_password="b",
                       edges={"hq": "x"})
    for unsafe in ("edge/1", "edge+", "#", "Edge-A", "", "$SYS", "e" * 65):
        with pytest.raises(InvalidInput):
            initial_config(admin_user="a", admin_password="a", hq_user="hq", hq_password="b",
                           edges={unsafe: "x"})
    document = initial_config(admin_user="a", admin_password="a", hq_user="hq", hq_password="b",
                              edges={"edge-a": "x"})
    assert json.loads(json.dumps(document))["defaultACLAccess"]["publishClientReceive"] is False
