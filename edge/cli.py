"""``edge`` command line: run the daemon, check a config, generate Asterisk snippets, run the demo."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from edge.config import load_config
from edge.errors import EdgeError

log = logging.getLogger("edge")


def setup_logging(level: str, logfile: str | None = None) -> None:
    """One logging setup for the daemon: timestamps, thread names, to stderr or a file."""
    handler: logging.Handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def raise_open_file_limit(fastagi_workers: int) -> None:
    """Each live call holds ~3 descriptors (its FastAGI socket and a wake-up pair); a default
    ``ulimit -n 1024`` would turn calls past ~340 into lost calls, so ask for what the pool needs."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * fastagi_workers + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            log.warning("open-file limit %s is below the %s that %s FastAGI workers need; raise "
                        "LimitNOFILE for the service", target, wanted, fastagi_workers)


def _load_or_exit(path: str):
    try:
        return load_config(path)
    except EdgeError as exc:
        click.echo(f"{path}: {exc}", err=True)
        sys.exit(2)


@click.group()
def main() -> None:
    """The branch edge daemon (ACD, ##codes, CDRs) in front of Asterisk 22."""


@main.command("check-config")
@click.argument("config", type=click.Path(dir_okay=False))
def check_config(config: str) -> None:
    """Validate CONFIG and print a short summary; exit 2 naming the bad key if it is invalid."""
    cfg = _load_or_exit(config)
    click.echo(
        f"{config}: ok — edge {cfg.edge.id}, {len(cfg.agents)} agents, {len(cfg.groups)} groups, "
        f"{len(cfg.trunks)} trunks, AMI {cfg.asterisk.ami_host}:{cfg.asterisk.ami_port}, "
        f"FastAGI {cfg.asterisk.fastagi_host}:{cfg.asterisk.fastagi_port}"
    )


@main.command("run")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="edge.toml (see edge/data/edge.example.toml)")
@click.option("--log-level", default="INFO", show_default=True)
@click.option("--log-file", default=None, help="log here instead of stderr")
def run(config_path: str, log_level: str, log_file: str | None) -> None:
    """Start the daemon: FastAGI server, AMI client, core loop; stop on SIGINT/SIGTERM."""
    from edge.runtime import EdgeRuntime

    from edge.sync.hq_config import config_for_run

    setup_logging(log_level, log_file)
    try:
        cfg = config_for_run(config_path)
    except EdgeError as exc:
        click.echo(f"{config_path}: {exc}", err=True)
        sys.exit(2)
    raise_open_file_limit(cfg.asterisk.fastagi_workers)
    runtime = EdgeRuntime(cfg, config_path=config_path)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    runtime.start()
    log.info("edge %s running; FastAGI on %s:%s, AMI to %s:%s", cfg.edge.id,
             cfg.asterisk.fastagi_host, cfg.asterisk.fastagi_port, cfg.asterisk.ami_host, cfg.asterisk.ami_port)
    stopped.wait()
    log.info("stopping")
    runtime.stop()


@main.command("asterisk-conf")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--edge-host", required=True, help="address Asterisk uses to reach this edge's FastAGI")
@click.option("--phone-secret", "phone_secrets", multiple=True, metavar="EXT:PASSWORD",
              help="SIP password per desk phone (repeat); phones without one are skipped with a warning")
@click.option("--out", required=True, type=click.Path(file_okay=False))
def asterisk_conf(config_path: str, edge_host: str, phone_secrets: tuple[str, ...], out: str) -> None:
    """Write extensions.conf, manager.conf, pjsip.conf, chan_dahdi.conf snippets for this edge."""
    from drivers.asterisk.confgen import DeskPhone, Site, TrunkLine, write

    cfg = _load_or_exit(config_path)
    secrets = dict(item.split(":", 1) for item in phone_secrets)
    phones = []
    for agent in cfg.agents:
        if agent.extension not in secrets:
            click.echo(f"warning: no --phone-secret for extension {agent.extension}; skipped", err=True)
            continue
        phones.append(DeskPhone(agent.extension, agent.name, secrets[agent.extension]))
    site = Site(
        edge_host=edge_host,
        ami_secret=cfg.asterisk.ami_secret,
        ami_user=cfg.asterisk.ami_user,
        ami_port=cfg.asterisk.ami_port,
        fastagi_port=cfg.asterisk.fastagi_port,
        desk_phones=tuple(phones),
        trunks=tuple(TrunkLine(t.channel, t.profile) for t in cfg.trunks),
    )
    written = write(site, Path(out))
    for path in written:
        click.echo(path)


@main.command("enroll")
@click.option("--hq", "hq_url", required=True, help="HQ's base URL, e.g. https://hq.example.cn")
@click.option("--token", required=True, envvar="CC_ENROLL_TOKEN",
              help="one-time enrollment token from HQ (or set CC_ENROLL_TOKEN)")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="credentials file to write (mode 0600); set [sync] credentials to it")
@click.option("--name", default=None, help="branch name, if HQ's token does not carry one")
@click.option("--force", is_flag=True, help="replace an existing credentials file")
def enroll(hq_url: str, token: str, out: str, name: str | None, force: bool) -> None:
    """Enroll this box with HQ: get its edge id, broker login and API token, write them to OUT."""
    from edge.sync.enroll import enroll as enroll_at_hq
    from edge.sync.enroll import write_credentials

    if Path(out).exists() and not force:
        click.echo(f"{out}: already exists (this box is enrolled); pass --force to replace it",
                   err=True)
        sys.exit(2)
    folder = Path(out).resolve().parent
    try:   # before the token is spent: a file we cannot write would lose the credentials
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"{folder} is not writable")
    except OSError as exc:
        click.echo(f"enroll: cannot write {out}: {exc}", err=True)
        sys.exit(2)
    try:
        creds = enroll_at_hq(hq_url, token, name=name, version=_edge_version())
    except EdgeError as exc:
        click.echo(f"enroll failed: {exc}", err=True)
        sys.exit(1)
    try:
        write_credentials(out, creds, overwrite=force)
    except (EdgeError, OSError) as exc:
        click.echo(f"enrolled as {creds.edge_id}, but writing {out} failed: {exc}; ask HQ to "
                   "remove that edge and issue a new token", err=True)
        sys.exit(1)
    click.echo(f"enrolled as {creds.edge_id} ({creds.name}); broker {creds.broker_host}:"
               f"{creds.broker_port}; credentials in {out} (set [sync] credentials = \"{out}\")")


def _edge_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("callcenter-edge")
    except PackageNotFoundError:
        return "unknown"


@main.command("demo")
@click.option("--calls", default=0, help="stop after this many calls (0 = until Ctrl-C)")
@click.option("--rate", default=0.5, show_default=True, help="new calls per real second")
@click.option("--time-scale", default=0.05, show_default=True,
              help="virtual seconds run this much faster than wall time (0.05 = 20x)")
@click.option("--seed", default=1, show_default=True)
@click.option("--plain", is_flag=True, help="print lines instead of a live screen")
@click.option("--hq/--no-hq", default=True, show_default=True,
              help="also run an HQ on loopback (Mosquitto, aggregator, ingest, dispatcher) and "
                   "sync the edge to it; --no-hq runs the edge alone")
def demo(calls: int, rate: float, time_scale: float, seed: int, plain: bool, hq: bool) -> None:
    """An edge driven by the HIL PBX simulator with a light stream of calls, shown live, syncing
    to an HQ started beside it (URLs and demo logins are printed)."""
    from edge.demo import run_demo

    sys.exit(run_demo(calls=calls, rate=rate, time_scale=time_scale, seed=seed, plain=plain,
                      hq=hq))


if __name__ == "__main__":
    main()
