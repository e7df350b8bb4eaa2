"""``python -m drivers.asterisk.confgen``: the technician's command line.

Later the lead wires ``--config edge.toml`` in; until then the site is given as options.
"""
from __future__ import annotations

import click

from drivers.asterisk.confgen.files import render, write
from drivers.asterisk.confgen.model import (
    CID_SIGNALLING,
    CID_START,
    ConfgenError,
    DeskPhone,
    Site,
    TrunkLine,
)


def _parse_phone(text: str) -> DeskPhone:
    parts = text.split(":", 2)
    if len(parts) != 3:
        raise click.BadParameter(f"expected EXT:NAME:PASSWORD, got {text!r}")
    return DeskPhone(*parts)


def _parse_channels(text: str, cid_signalling: str, cid_start: str, polarity: bool) -> list[TrunkLine]:
    spec, _, profile = text.partition(":")
    first, _, last = spec.partition("-")
    try:
        channels = range(int(first), int(last or first) + 1)
    except ValueError:
        raise click.BadParameter(f"expected N:PROFILE or N-M:PROFILE, got {text!r}") from None
    return [TrunkLine(c, profile, cid_signalling, cid_start, polarity) for c in channels]


@click.command(help="Generate Asterisk 22 configuration for an edge box (see docs/asterisk.md).")
@click.option("--edge-host", required=True, help="Where the edge's FastAGI listens, seen from Asterisk.")
@click.option("--fastagi-port", default=4573, show_default=True)
@click.option("--ami-user", default="edge", show_default=True)
@click.option("--ami-secret", required=True, help="At least 8 characters; same as edge.toml ami_secret.")
@click.option("--ami-bindaddr", default="127.0.0.1", show_default=True)
@click.option("--ami-permit", multiple=True, default=("127.0.0.1/32",), show_default=True,
              help="Network allowed to log in to AMI; repeatable.")
@click.option("--extension", "phones", multiple=True, metavar="EXT:NAME:PASSWORD",
              help="A desk phone; repeatable.")
@click.option("--channel", "channels", multiple=True, metavar="N[-M]:fxo|pri",
              help="Trunk channel(s); repeatable.")
@click.option("--cid-signalling", type=click.Choice(CID_SIGNALLING), default="dtmf", show_default=True,
              help="Analog caller ID format (all fxo lines).")
@click.option("--cid-start", type=click.Choice(CID_START), default="polarity", show_default=True,
              help="What starts analog caller ID (all fxo lines).")
@click.option("--polarity-answer/--no-polarity-answer", default=False, show_default=True,
              help="Analog lines signal answer/hang-up by polarity reversal (反极).")
@click.option("--moh-class", default="default", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write the files here; without it they are printed.")
def main(edge_host: str, fastagi_port: int, ami_user: str, ami_secret: str, ami_bindaddr: str,
         ami_permit: tuple[str, ...], phones: tuple[str, ...], channels: tuple[str, ...],
         cid_signalling: str, cid_start: str, polarity_answer: bool, moh_class: str,
         out_dir: str | None) -> None:
    trunks = [line for text in channels
              for line in _parse_channels(text, cid_signalling, cid_start, polarity_answer)]
    site = Site(
        edge_host=edge_host, fastagi_port=fastagi_port, ami_user=ami_user, ami_secret=ami_secret,
        ami_bindaddr=ami_bindaddr, ami_permit=tuple(ami_permit),
        desk_phones=tuple(_parse_phone(p) for p in phones), trunks=tuple(trunks),
        moh_class=moh_class,
    )
    try:
        if out_dir:
            for path in write(site, out_dir):
                click.echo(f"wrote {path}")
            return
        for name, text in render(site).items():
            click.echo(f";;;; ===== {name} =====\n{text}")
    except ConfgenError as exc:
        raise click.ClickException(str(exc)) from exc
