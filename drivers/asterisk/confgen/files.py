"""The configuration files, as text: one function per file, all pure.

Asterisk does the switching; the edge decides. So the dialplan is deliberately dumb: every trunk
call and everything a desk phone dials (digits, ``*`` codes, ``##`` codes) goes straight to the
edge over FastAGI, and when the AGI returns the call is over. The only logic left in Asterisk is
what to do when the edge cannot be reached at all, so a branch is never deaf while its edge
restarts.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Iterable, Sequence

from drivers.asterisk.confgen.model import (
    AMI_READ,
    AMI_WRITE,
    CHINA_BUSY_PATTERN,
    Site,
    TrunkLine,
    check,
)

GENERATOR = "python -m drivers.asterisk.confgen"


def render(site: Site) -> dict[str, str]:
    """All files for ``site``: ``{"extensions.conf": text, ...}``. Raises ``ConfgenError``."""
    check(site)
    return {
        "extensions.conf": extensions_conf(site),
        "manager.conf": manager_conf(site),
        "pjsip.conf": pjsip_conf(site),
        "chan_dahdi.conf": chan_dahdi_conf(site),
        "musiconhold.conf": musiconhold_conf(site),
        "features.conf": features_conf(site),
    }


def features_conf(site: Site) -> str:
    """The attended-transfer feature code: AMI ``Atxfer`` queues it as DTMF, and stock Asterisk
    ships it empty, so without it every Atxfer fails (``No attended transfer feature code``)."""
    lines = _header("features.conf", "Attended transfer (TEL-2) through AMI Atxfer.")
    lines += ["[featuremap]", "atxfer => *2", "",
              "[applicationmap]",
              "; *3 during a call: the agent switches an on-demand recording (REC-1)",
              f"edge-record => *3,self,AGI,{site.agi_url('record-toggle')}", "",
              "#tryinclude features_custom.conf", ""]
    return "\n".join(lines)


def write(site: Site, out_dir: str | Path) -> list[Path]:
    """Render and write every file into ``out_dir`` (created if missing); returns the paths."""
    files = render(site)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def extensions_conf(site: Site) -> str:
    lines = _header("extensions.conf", "Every call goes to the edge over FastAGI (docs/architecture.md).")
    lines += ["[general]", "static=yes", "writeprotect=yes", "clearglobalvars=no", ""]
    lines += [
        "[from-trunk]",
        "; Calls arriving on a trunk. An analog line has no dialled number: it arrives on 's'.",
        "; E1/PRI calls arrive on the DID. The edge answers, plays, queues and bridges.",
    ]
    for pattern in ("s", "_X.", "_+X."):
        lines += _agi_block(site, pattern, "incoming", "trunk")
    lines += [
        "",
        "[from-desk]",
        "; Everything a desk phone dials: extensions, outside numbers, *codes and ##codes",
        "; (##30113800138000 = trunk 01, ##7 = busy/free). '#' inside the string is kept.",
    ]
    for pattern in ("_X", "_X.", "_*.", "_#.", "_+X."):
        lines += _agi_block(site, pattern, "dial", "desk")
    lines += ["exten => i,1,Congestion(5)", " same => n,Hangup()", ""]
    lines += [
        "[callback]",
        "; A busy callback (INB-9): the edge Originates the agent's phone into this context with",
        "; the customer's number as the extension; the edge then dials the customer.",
    ]
    for pattern in ("_X.", "_+X."):
        lines += _agi_block(site, pattern, "callback", "desk")
    lines += [
        "",
        "[transfer]",
        "; A blind transfer (TEL-2): the edge Redirects the caller's channel here; the extension",
        "; is the target (an extension, q-<queue> or an outside number), decided by the edge.",
    ]
    for pattern in ("_X.", "_q.", "_+X."):
        lines += _agi_block(site, pattern, "transfer", "trunk")
    lines += [
        "",
        "[cc-callee]",
        "; Dial's pre-dial handler on the agent's leg (the edge dials b(cc-callee^s^1)): *3 toggles",
        "; the recording from the agent's phone only; the customer's channel never gets it.",
        "exten => s,1,Set(DYNAMIC_FEATURES=edge-record)",
        " same => n,Return()",
        "",
        "[consult]",
        "; An attended transfer's consultation (AMI Atxfer, TRANSFER_CONTEXT=consult): ring the",
        "; consulted agent's desk phone directly.",
        "exten => _X.,1,Dial(PJSIP/${EXTEN},60)",
        " same => n,Hangup()",
        "",
    ]
    lines += _edge_unreachable(site)
    lines += ["#tryinclude extensions_custom.conf", ""]
    return "\n".join(lines)


def _agi_block(site: Site, pattern: str, script: str, origin: str) -> list[str]:
    return [
        f"exten => {pattern},1,NoOp(edge {script}: ${{CHANNEL}} from ${{CALLERID(num)}} to ${{EXTEN}})",
        f" same => n,Set(CHANNEL(musicclass)={site.moh_class})",
        f" same => n,AGI({site.agi_url(script)},${{EXTEN}})",
        f' same => n,GotoIf($["${{AGISTATUS}}" = "FAILURE"]?edge-unreachable,{origin},1)',
        " same => n,Hangup()",
    ]


def _edge_unreachable(site: Site) -> list[str]:
    targets = site.fallback_extensions
    if targets is None:
        targets = tuple(phone.extension for phone in site.desk_phones)
    lines = [
        "[edge-unreachable]",
        "; Only when the FastAGI connection failed (edge down, firewall): keep the branch reachable.",
        "; Such calls are not routed, recorded or logged by the edge.",
    ]
    if targets:
        dial = "&".join(f"PJSIP/{ext}" for ext in targets)
        lines += [f"exten => trunk,1,Dial({dial},60)"]
    else:
        lines += ["exten => trunk,1,Congestion(5)"]
    lines += [" same => n,Hangup()", "exten => desk,1,Congestion(5)", " same => n,Hangup()", ""]
    return lines


def manager_conf(site: Site) -> str:
    lines = _header("manager.conf", "AMI for the edge only: never expose it beyond the box or LAN.")
    lines += ["[general]", "enabled = yes", f"port = {site.ami_port}", f"bindaddr = {site.ami_bindaddr}",
              "displayconnects = no"]
    if site.ami_channelvars:
        lines.append(f"channelvars = {','.join(site.ami_channelvars)}")
    lines += [
        "",
        f"[{site.ami_user}]",
        f"secret = {site.ami_secret}",
        "deny = 0.0.0.0/0.0.0.0",
        *(f"permit = {_netmask_form(net)}" for net in site.ami_permit),
        f"read = {','.join(AMI_READ)}",
        f"write = {','.join(AMI_WRITE)}",
        "; the default 100 ms drops the edge's session on a short stall (GC, disk); events are never",
        "; worth losing the connection over",
        "writetimeout = 1000",
        "",
        "#tryinclude manager_custom.conf",
        "",
    ]
    return "\n".join(lines)


def pjsip_conf(site: Site) -> str:
    lines = _header("pjsip.conf", "Desk phones as PJSIP endpoints (Asterisk 22 has no chan_sip).")
    lines += ["[transport-udp]", "type=transport", "protocol=udp", f"bind={site.sip_bind}", ""]
    for phone in site.desk_phones:
        ext = phone.extension
        lines += [
            f"; --- {ext} {phone.name}",
            f"[{ext}]",
            "type=endpoint",
            "transport=transport-udp",
            "context=from-desk",
            "disallow=all",
            "allow=alaw,ulaw",
            f'callerid="{phone.name}" <{ext}>',
            f"auth={ext}",
            f"aors={ext}",
            "; media through Asterisk: recording, listen/whisper/barge and the edge need it",
            "direct_media=no",
            "dtmf_mode=rfc4733",
            "rtp_symmetric=yes",
            "force_rport=yes",
            "rewrite_contact=yes",
            f"moh_suggest={site.moh_class}",
            "",
            f"[{ext}]",
            "type=auth",
            "auth_type=userpass",
            f"username={ext}",
            f"password={phone.password}",
            "",
            f"[{ext}]",
            "type=aor",
            "max_contacts=1",
            "remove_existing=yes",
            "qualify_frequency=30",
            "",
        ]
    lines += ["#tryinclude pjsip_custom.conf", ""]
    return "\n".join(lines)


def chan_dahdi_conf(site: Site) -> str:
    lines = _header(
        "chan_dahdi.conf",
        "Trunk channels. Signalling cannot change on a reload: restart Asterisk after editing.",
    )
    lines += [
        "[trunkgroups]",
        "",
        "[channels]",
        "; shared by every trunk channel; each block below sets all of its own options again,",
        "; so the order of blocks never matters",
        "context=from-trunk",
        "group=0",
        "usecallerid=yes",
        "callerid=asreceived",
        "immediate=no",
        "echocancel=yes",
        "echocancelwhenbridged=no",
        f"mohinterpret={site.moh_class}",
        f"mohsuggest={site.moh_class}",
        "",
    ]
    for block, channels in _trunk_blocks(site.trunks, site.pri_switchtype):
        lines += block + [f"channel => {_ranges(channels)}", ""]
    lines += ["#tryinclude chan_dahdi_custom.conf", ""]
    return "\n".join(lines)


def _trunk_blocks(trunks: Iterable[TrunkLine], switchtype: str) -> list[tuple[list[str], list[int]]]:
    """Channels sharing the same options, as (option lines, channels), in channel order."""
    blocks: dict[tuple[str, ...], list[int]] = {}
    for trunk in sorted(trunks, key=lambda t: t.channel):
        blocks.setdefault(tuple(_trunk_options(trunk, switchtype)), []).append(trunk.channel)
    return [(list(options), channels) for options, channels in blocks.items()]


def _trunk_options(trunk: TrunkLine, switchtype: str) -> list[str]:
    if trunk.profile == "pri":
        return [
            "; E1/PRI B-channels, CPE side (the carrier is the network side); China: E1, A-law",
            "signalling=pri_cpe",
            f"switchtype={switchtype}",
            "pridialplan=unknown",
            "prilocaldialplan=unknown",
            "answeronpolarityswitch=no",
            "hanguponpolarityswitch=no",
            "busydetect=no",
        ]
    polarity = "yes" if trunk.polarity_answer else "no"
    return [
        "; analog exchange line on an FXO port: FXO hardware uses FXS signalling (fxs_ks)",
        "signalling=fxs_ks",
        f"cidsignalling={trunk.cid_signalling}",
        f"cidstart={trunk.cid_start}",
        f"answeronpolarityswitch={polarity}",
        f"hanguponpolarityswitch={polarity}",
        "; the exchange signals the far end hanging up with busy tone",
        "busydetect=yes",
        "busycount=4",
        f"busypattern={CHINA_BUSY_PATTERN}",
    ]


def musiconhold_conf(site: Site) -> str:
    lines = _header("musiconhold.conf", "Music on hold: files under /var/lib/asterisk/moh.")
    lines += ["[default]", "mode=files", "directory=moh", ""]
    if site.moh_class != "default":
        lines += [f"[{site.moh_class}]", "mode=files", f"directory=moh/{site.moh_class}", ""]
    lines += ["#tryinclude musiconhold_custom.conf", ""]
    return "\n".join(lines)


def _header(name: str, why: str) -> list[str]:
    stem = name.removesuffix(".conf")
    return [
        f"; {name} for an edge box, generated by `{GENERATOR}`.",
        f"; {why}",
        f"; Regenerating overwrites this file: put local additions in {stem}_custom.conf.",
        "",
    ]


def _ranges(channels: Sequence[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3,5"``."""
    parts: list[str] = []
    start = prev = channels[0]
    for channel in [*channels[1:], None]:
        if channel is not None and channel == prev + 1:
            prev = channel
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if channel is not None:
            start = prev = channel
    return ",".join(parts)


def _netmask_form(network: str) -> str:
    return ipaddress.ip_network(network, strict=False).with_netmask
