"""The Asterisk 22 configuration generator: the text Asterisk would read, checked as Asterisk reads it."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest
from click.testing import CliRunner

from drivers.asterisk.confgen import (
    AMI_READ,
    ConfgenError,
    DeskPhone,
    Site,
    TrunkLine,
    render,
)
from drivers.asterisk.confgen.cli import main
from drivers.asterisk.errors import AsteriskError

EDGE = "192.168.10.5"

SITE = Site(
    edge_host=EDGE,
    ami_secret="ami-s3cret-42",
    ami_permit=("127.0.0.1/32", "192.168.10.0/24"),
    desk_phones=(
        DeskPhone("8001", "张伟", "pw-8001-secret"),
        DeskPhone("8002", "王芳", "pw-8002-secret"),
        DeskPhone("8003", "Li Na", "pw-8003-secret"),
    ),
    trunks=(
        TrunkLine(1, "fxo"),
        TrunkLine(2, "fxo", cid_start="ring", polarity_answer=True),
        *(TrunkLine(c, "pri") for c in [*range(3, 18), *range(19, 34)]),
    ),
)


# --- a reader for Asterisk's config syntax (sections may repeat, "=>" and "=" both assign) -------

def parse(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for raw in text.splitlines():
        line = re.split(r"(?<!\\);", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        if line.startswith("#"):
            assert line.split()[0] in ("#include", "#tryinclude"), raw
            continue
        header = re.fullmatch(r"\[([^\]]+)\](\([^)]*\))?", line)
        if header:
            sections.append((header[1], []))
            continue
        option = re.fullmatch(r"([A-Za-z0-9_-]+)\s*(=>|=)\s*(.*)", line)
        assert option, f"not an option line: {raw!r}"
        assert sections, f"option before any section: {raw!r}"
        sections[-1][1].append((option[1], option[3]))
    return sections


def section(text: str, name: str, type_: str | None = None) -> dict[str, str]:
    found = [dict(opts) for sec, opts in parse(text)
             if sec == name and (type_ is None or dict(opts).get("type") == type_)]
    assert len(found) == 1, f"[{name}] type={type_}: found {len(found)}"
    return found[0]


def dialplan(text: str) -> dict[str, dict[str, list[str]]]:
    """``{context: {extension pattern: [application, ...]}}`` from extensions.conf."""
    plan: dict[str, dict[str, list[str]]] = {}
    for context, options in parse(text):
        current = None
        for key, value in options:
            if key == "exten":
                current, _, app = value.split(",", 2)
                plan.setdefault(context, {})[current] = [app]
            elif key == "same":
                plan[context][current].append(value.split(",", 1)[1])
    return plan


def asterisk_match(pattern: str, dialled: str) -> bool:
    """Asterisk's extension matching: literal, or ``_`` with X Z N . ! [set]."""
    if not pattern.startswith("_"):
        return pattern == dialled
    regex = ""
    for token in re.findall(r"\[[^\]]+\]|.", pattern[1:]):
        regex += {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}.get(
            token, token if token.startswith("[") else re.escape(token))
    return re.fullmatch(regex, dialled) is not None


def channel_options(text: str) -> dict[int, dict[str, str]]:
    """What each DAHDI channel ends up with: chan_dahdi options apply to the channels below them."""
    current: dict[str, str] = {}
    channels: dict[int, dict[str, str]] = {}
    for name, options in parse(text):
        if name != "channels":
            continue
        for key, value in options:
            if key != "channel":
                current[key] = value
                continue
            for part in value.split(","):
                first, _, last = part.partition("-")
                for number in range(int(first), int(last or first) + 1):
                    channels[number] = dict(current)
    return channels


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return render(SITE)


# --- all files -----------------------------------------------------------------------------------

def test_every_file_is_rendered_and_parses_as_sections(files):
    assert set(files) == {"extensions.conf", "manager.conf", "pjsip.conf", "chan_dahdi.conf",
                          "musiconhold.conf", "features.conf"}
    for name, text in files.items():
        assert parse(text), name
        assert "#tryinclude " + name.replace(".conf", "_custom.conf") in text


def test_rendering_is_pure_and_repeatable():
    assert render(SITE) == render(SITE)


def test_nothing_refers_to_chan_sip(files):
    settings = [f"{key}={value}".lower() for text in files.values()
                for _, options in parse(text) for key, value in options]
    assert not [s for s in settings if "chan_sip" in s or "sip/" in s.replace("pjsip/", "")]
    assert "type=peer" not in settings and "type=friend" not in settings


# --- extensions.conf -----------------------------------------------------------------------------

def test_trunk_calls_go_to_the_incoming_agi_with_the_did(files):
    plan = dialplan(files["extensions.conf"])
    trunk = plan["from-trunk"]
    assert "s" in trunk  # analog lines arrive without a number
    for apps in trunk.values():
        assert f"AGI(agi://{EDGE}:4573/incoming,${{EXTEN}})" in apps
        assert apps[-1] == "Hangup()"
        assert apps.index(f"AGI(agi://{EDGE}:4573/incoming,${{EXTEN}})") < len(apps) - 1


@pytest.mark.parametrize("dialled", ["s", "95555", "075583210001", "+8675583210001"])
def test_every_trunk_number_reaches_exactly_one_extension(files, dialled):
    trunk = dialplan(files["extensions.conf"])["from-trunk"]
    assert sum(asterisk_match(p, dialled) for p in trunk) == 1


@pytest.mark.parametrize("dialled", [
    "8001", "0", "13800138000", "013800138000", "+8613800138000",
    "##30113800138000", "##7", "##18002", "##5", "*8", "*72#", "8001#",
])
def test_everything_a_desk_phone_dials_goes_to_the_dial_agi(files, dialled):
    desk = dialplan(files["extensions.conf"])["from-desk"]
    matching = [p for p in desk if asterisk_match(p, dialled)]
    assert len(matching) == 1, (dialled, matching)
    apps = desk[matching[0]]
    assert f"AGI(agi://{EDGE}:4573/dial,${{EXTEN}})" in apps
    assert apps[-1] == "Hangup()"


def test_an_unreachable_edge_rings_the_desk_phones_and_refuses_desk_dialling(files):
    plan = dialplan(files["extensions.conf"])
    for context, origin in (("from-trunk", "trunk"), ("from-desk", "desk")):
        for exten, apps in plan[context].items():
            if exten == "i":  # nothing matched: no AGI to fail
                continue
            assert f'GotoIf($["${{AGISTATUS}}" = "FAILURE"]?edge-unreachable,{origin},1)' in apps
    fallback = plan["edge-unreachable"]
    assert fallback["trunk"][0] == "Dial(PJSIP/8001&PJSIP/8002&PJSIP/8003,60)"
    assert fallback["desk"][0].startswith("Congestion")


def test_the_fallback_can_be_narrowed_or_switched_off():
    only = dialplan(render(replace(SITE, fallback_extensions=("8002",)))["extensions.conf"])
    assert only["edge-unreachable"]["trunk"][0] == "Dial(PJSIP/8002,60)"
    none = dialplan(render(replace(SITE, fallback_extensions=()))["extensions.conf"])
    assert none["edge-unreachable"]["trunk"][0].startswith("Congestion")
    with pytest.raises(ConfgenError, match="fallback_extensions"):
        render(replace(SITE, fallback_extensions=("9999",)))


def test_the_fastagi_port_and_moh_class_are_used():
    text = render(replace(SITE, fastagi_port=4600, moh_class="bank"))["extensions.conf"]
    assert f"AGI(agi://{EDGE}:4600/incoming,${{EXTEN}})" in text
    assert "Set(CHANNEL(musicclass)=bank)" in text


# --- manager.conf --------------------------------------------------------------------------------

def test_ami_is_enabled_for_the_edge_user_only_from_permitted_networks(files):
    text = files["manager.conf"]
    general = section(text, "general")
    assert (general["enabled"], general["port"], general["bindaddr"]) == ("yes", "5038", "127.0.0.1")
    user_options = dict(parse(text))["edge"]
    keys = [key for key, _ in user_options]
    assert keys.index("deny") < keys.index("permit")  # deny all first, then permit
    assert ("deny", "0.0.0.0/0.0.0.0") in user_options
    assert [v for k, v in user_options if k == "permit"] == [
        "127.0.0.1/255.255.255.255", "192.168.10.0/255.255.255.0"]
    user = dict(user_options)
    assert user["secret"] == "ami-s3cret-42"
    assert user["read"] == "system,call,agent,user,dtmf,reporting,cdr,dialplan"
    assert user["read"].split(",") == list(AMI_READ)
    assert "originate" in user["write"].split(",") and "call" in user["write"].split(",")
    assert "channelvars" not in general


def test_channelvars_are_listed_when_asked_for():
    text = render(replace(SITE, ami_channelvars=("ACC_TAG", "CUSTOMER_ID")))["manager.conf"]
    assert section(text, "general")["channelvars"] == "ACC_TAG,CUSTOMER_ID"


# --- pjsip.conf ----------------------------------------------------------------------------------

def test_there_is_a_udp_transport(files):
    transport = section(files["pjsip.conf"], "transport-udp")
    assert (transport["type"], transport["protocol"], transport["bind"]) == (
        "transport", "udp", "0.0.0.0:5060")


@pytest.mark.parametrize("phone", SITE.desk_phones, ids=lambda p: p.extension)
def test_every_desk_phone_has_an_endpoint_an_auth_and_an_aor(files, phone):
    text = files["pjsip.conf"]
    ext = phone.extension
    endpoint = section(text, ext, "endpoint")
    auth = section(text, ext, "auth")
    aor = section(text, ext, "aor")
    assert endpoint["context"] == "from-desk"
    assert endpoint["disallow"] == "all" and endpoint["allow"] == "alaw,ulaw"
    assert endpoint["callerid"] == f'"{phone.name}" <{ext}>'
    assert endpoint["auth"] == ext and endpoint["aors"] == ext
    assert endpoint["direct_media"] == "no"
    assert (auth["username"], auth["password"]) == (ext, phone.password)
    assert aor["max_contacts"] == "1"


def test_disallow_comes_before_allow(files):
    for name, options in parse(files["pjsip.conf"]):
        keys = [key for key, _ in options]
        if "allow" in keys:
            assert keys.index("disallow") < keys.index("allow"), name


# --- chan_dahdi.conf -----------------------------------------------------------------------------

def test_trunk_channels_enter_from_trunk_in_group_0_with_caller_id(files):
    channels = channel_options(files["chan_dahdi.conf"])
    assert sorted(channels) == sorted(t.channel for t in SITE.trunks)
    for options in channels.values():
        assert options["context"] == "from-trunk" and options["group"] == "0"
        assert options["callerid"] == "asreceived" and options["usecallerid"] == "yes"


def test_an_fxo_port_uses_fxs_signalling_and_dtmf_caller_id(files):
    line = channel_options(files["chan_dahdi.conf"])[1]
    assert line["signalling"] == "fxs_ks"
    assert (line["cidsignalling"], line["cidstart"]) == ("dtmf", "polarity")
    assert line["answeronpolarityswitch"] == "no" and line["hanguponpolarityswitch"] == "no"
    assert line["busydetect"] == "yes"


def test_analog_options_are_per_line(files):
    line = channel_options(files["chan_dahdi.conf"])[2]
    assert line["cidstart"] == "ring"
    assert line["answeronpolarityswitch"] == "yes" and line["hanguponpolarityswitch"] == "yes"


def test_pri_channels_use_pri_cpe_and_inherit_nothing_analog(files):
    channels = channel_options(files["chan_dahdi.conf"])
    for number in (3, 17, 19, 33):
        options = channels[number]
        assert options["signalling"] == "pri_cpe" and options["switchtype"] == "euroisdn"
        assert options["busydetect"] == "no" and options["answeronpolarityswitch"] == "no"
    assert 18 not in channels
    assert "channel => 3-17,19-33" in files["chan_dahdi.conf"]


# --- validation and CLI --------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "field"), [
    ({"edge_host": "edge box"}, "edge_host"),
    ({"fastagi_port": 0}, "fastagi_port"),
    ({"ami_secret": "short"}, "ami_secret"),
    ({"ami_secret": "has;semicolon"}, "ami_secret"),
    ({"ami_user": "general"}, "ami_user"),
    ({"ami_permit": ("lan",)}, "ami_permit"),
    ({"moh_class": "a b"}, "moh_class"),
    ({"sip_bind": "0.0.0.0"}, "sip_bind"),
    ({"desk_phones": (DeskPhone("80a1", "x", "password1"),)}, r"desk_phones\[0\].extension"),
    ({"desk_phones": (DeskPhone("8001", "a", "password1"), DeskPhone("8001", "b", "password2"))},
     r"desk_phones\[1\].extension"),
    ({"desk_phones": (DeskPhone("8001", 'Bad "name"', "password1"),)}, r"desk_phones\[0\].name"),
    ({"desk_phones": (DeskPhone("8001", "x", "8001"),)}, r"desk_phones\[0\].password"),
    ({"desk_phones": (DeskPhone("80018001", "x", "80018001"),)}, r"desk_phones\[0\].password"),
    ({"trunks": (TrunkLine(1, "fxs"),)}, r"trunks\[0\].profile"),
    ({"trunks": (TrunkLine(1, "fxo"), TrunkLine(1, "pri"))}, r"trunks\[1\].channel"),
    ({"trunks": (TrunkLine(1, "fxo", cid_start="later"),)}, r"trunks\[0\].cid_start"),
    ({"pri_switchtype": "china"}, "pri_switchtype"),
])
def test_a_bad_site_is_refused_naming_the_field(change, field):
    with pytest.raises(ConfgenError, match=f"^{field}") as caught:
        render(replace(SITE, **change))
    assert isinstance(caught.value, AsteriskError)


def test_the_cli_writes_the_files(tmp_path):
    result = CliRunner().invoke(main, [
        "--edge-host", "127.0.0.1", "--ami-secret", "ami-s3cret-42",
        "--extension", "8001:张伟:pw-8001-secret", "--extension", "8002:王芳:pw-8002-secret",
        "--channel", "1-2:fxo", "--channel", "3:pri", "--polarity-answer",
        "--out", str(tmp_path / "asterisk"),
    ])
    assert result.exit_code == 0, result.output
    written = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "asterisk").iterdir()}
    assert "AGI(agi://127.0.0.1:4573/dial,${EXTEN})" in written["extensions.conf"]
    assert section(written["pjsip.conf"], "8001", "endpoint")["callerid"] == '"张伟" <8001>'
    channels = channel_options(written["chan_dahdi.conf"])
    assert channels[2]["answeronpolarityswitch"] == "yes" and channels[3]["signalling"] == "pri_cpe"


def test_the_cli_reports_a_bad_site_without_a_traceback():
    result = CliRunner().invoke(main, ["--edge-host", "127.0.0.1", "--ami-secret", "short"])
    assert result.exit_code != 0
    assert "ami_secret: at least 8 characters" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
