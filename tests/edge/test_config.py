"""Configuration: defaults, the shipped example, and errors that name the bad key."""
from __future__ import annotations

import pytest

from edge.config import DEFAULT_CODES, example_config, load_config, parse_config
from edge.errors import ConfigError, EdgeError


def error_of(data) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return str(caught.value)


def test_example_config_loads_with_chinese_names_and_every_section():
    config = example_config()
    assert [a.name for a in config.agents][:3] == ["张伟", "王芳", "李娜"]
    assert {g.name for g in config.groups} == {"general", "gd", "cards"}
    assert config.routing.region_groups["广东"] == "gd"
    assert config.routing.vip[0].owner == "a8002"
    assert {b.action for b in config.routing.blacklist} == {"reject", "flag"}
    assert config.routing.customer_type_menu.digits["1"] == "cards"
    assert config.codes["##5"].roles == frozenset({"supervisor"})  # overridden in the file
    assert config.codes["##1"] == DEFAULT_CODES["##1"]  # the rest keep the TEL-5 defaults


def test_defaults_fill_what_the_file_leaves_out(data):
    config = parse_config(data)
    assert config.edge.timezone == "Asia/Shanghai" and config.edge.time_scale == 1.0
    assert (config.asterisk.ami_port, config.asterisk.fastagi_port) == (5038, 4573)
    assert config.asterisk.fastagi_host == "0.0.0.0" and config.asterisk.fastagi_workers == 64
    agent = config.agents[0]
    assert agent.dial_string == "PJSIP/8003" and agent.logged_in and agent.roles == ("agent",)
    group = config.groups[0]
    assert group.ring_timeout_s == 20 and group.max_wait_s is None and group.overflow == "hangup"
    assert config.routing.sticky_wait_s == 0.0 and not config.routing.sticky_last_agent
    assert set(config.codes) == {f"##{n}" for n in range(1, 10)}


def test_bad_extension_names_the_agent_index(data):
    data["agents"][2]["extension"] = "abc"
    assert error_of(data) == "agents[2].extension: expected digits, got 'abc'"


def test_unknown_key_is_rejected_with_its_path(data):
    data["agents"][1]["nmae"] = "typo"
    assert error_of(data) == "agents[1].nmae: unknown key"
    del data["agents"][1]["nmae"]
    data["routing"]["stiky_last_agent"] = True
    assert error_of(data) == "routing.stiky_last_agent: unknown key"
    del data["routing"]["stiky_last_agent"]
    data["frobnicate"] = {}
    assert error_of(data) == "frobnicate: unknown key"


def test_wrong_types_and_choices_name_the_key(data):
    data["edge"]["time_scale"] = "fast"
    assert error_of(data) == "edge.time_scale: expected a number, got 'fast'"
    data["edge"]["time_scale"] = 0.5
    data["groups"][1]["strategy"] = "random"
    assert error_of(data).startswith("groups[1].strategy: expected one of least_calls")
    data["groups"][1]["strategy"] = "extension_order"
    data["agents"][0]["roles"] = ["agent", "boss"]
    assert error_of(data).startswith("agents[0].roles[1]: expected one of agent, team_lead")


def test_references_to_unknown_groups_and_agents(data):
    data["agents"][3]["groups"] = ["cards", "loans"]
    assert error_of(data) == "agents[3].groups[1]: unknown group 'loans'"
    data["agents"][3]["groups"] = ["cards"]
    data["routing"]["region_groups"] = {"广东": "guangdong"}
    assert error_of(data) == "routing.region_groups.广东: unknown group 'guangdong'"
    data["routing"]["region_groups"] = {}
    data["routing"]["vip"] = [{"number": "13900001111", "owner": "nobody"}]
    assert error_of(data) == "routing.vip[0].owner: unknown agent 'nobody'"


def test_missing_required_key_and_duplicates(data):
    del data["edge"]["id"]
    assert error_of(data) == "edge.id: required"
    data["edge"]["id"] = "x"
    data["agents"][1]["extension"] = "8003"
    assert error_of(data) == "agents[1].extension: duplicate '8003'"


def test_overflow_must_name_a_group_and_must_not_loop(data):
    data["groups"][0]["overflow"] = "elsewhere"
    assert error_of(data).startswith("groups[0].overflow: expected group:<name>")
    data["groups"][0]["overflow"] = "group:gd"
    data["groups"][1]["overflow"] = "group:general"
    assert error_of(data) == "groups[0].overflow: overflow chain loops: general -> gd -> general"


def test_bad_timezone_and_bad_code_entries(data):
    data["edge"]["timezone"] = "Mars/Olympus"
    assert error_of(data) == "edge.timezone: unknown time zone 'Mars/Olympus'"
    data["edge"]["timezone"] = "Asia/Shanghai"
    data["codes"] = {"#1": {"action": "listen"}}
    assert error_of(data).startswith("codes.#1: a code must be ##")
    data["codes"] = {"##1": {"action": "spy"}}
    assert error_of(data).startswith("codes.##1.action: expected one of listen")


def test_codes_can_be_disabled_and_added(data):
    data["codes"] = {"##9": {"action": "disabled"}, "##10": {"action": "listen", "roles": ["admin"]}}
    config = parse_config(data)
    assert "##9" not in config.codes
    assert config.codes["##10"].roles == frozenset({"admin"})


def test_config_error_is_an_edge_error():
    assert issubclass(ConfigError, EdgeError)


def test_load_config_reports_bad_toml_and_resolves_prefix_table(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[edge\nid = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    good = tmp_path / "edge.toml"
    good.write_text('[edge]\nid = "b1"\n[[groups]]\nname = "g"\n'
                    '[routing]\nprefix_table = "my-prefixes.csv"\n', encoding="utf-8")
    config = load_config(good)
    assert config.routing.prefix_table == str(tmp_path / "my-prefixes.csv")
    assert config.routing.default_group == "g"  # the first group when none is named


def test_trunk_number_may_be_given_as_did(data):
    data["trunks"][1]["did"] = "95555"
    assert parse_config(data).trunks[1].number == "95555"
    data["trunks"][1]["number"] = "95556"
    assert error_of(data) == "trunks[1].did: give either did or number, not both"
