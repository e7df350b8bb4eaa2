"""Write the broker's first dynamic-security file for a production HQ.

    CC_HQ_BROKER_ADMIN_PASSWORD=… CC_BROKER_HQ_PASSWORD=… \\
        python -m aggregator.fleet.broker_config --out /var/lib/mosquitto/dynamic-security.json

then add to ``mosquitto.conf`` the two lines it prints (``plugin …`` and
``plugin_opt_config_file …``) instead of ``password_file``/``acl_file``. The file holds the
admin HQ's enrollment uses (``CC_HQ_BROKER_ADMIN_USER``/``_PASSWORD``), the ``hq`` user of the
ingest consumers and the downlink dispatcher, and the roles of ``aggregator.fleet.broker_acl``;
edges are added by enrollment. Mosquitto rewrites the file as clients change, so this refuses
to overwrite one unless ``--force``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import click

from aggregator.fleet.broker_acl import initial_config

PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


def write(out: Path, *, admin_user: str, admin_password: str, hq_user: str, hq_password: str,
          force: bool = False) -> None:
    if out.exists() and not force:
        raise click.ClickException(f"{out}: exists (Mosquitto keeps enrolled edges in it); "
                                   "pass --force to replace it")
    if len(admin_password) < 16 or len(hq_password) < 16:
        raise click.ClickException("broker passwords: at least 16 characters")
    document = initial_config(admin_user=admin_user, admin_password=admin_password,
                              hq_user=hq_user, hq_password=hq_password)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1, ensure_ascii=False)


@click.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--admin-user", default="dynsec-admin", show_default=True)
@click.option("--admin-password", envvar="CC_HQ_BROKER_ADMIN_PASSWORD", required=True,
              help="or CC_HQ_BROKER_ADMIN_PASSWORD")
@click.option("--hq-user", default="hq", show_default=True)
@click.option("--hq-password", envvar="CC_BROKER_HQ_PASSWORD", required=True,
              help="or CC_BROKER_HQ_PASSWORD")
@click.option("--force", is_flag=True)
def main(out: Path, admin_user: str, admin_password: str, hq_user: str, hq_password: str,
         force: bool) -> None:
    """Write a dynamic-security file with the admin and HQ users and print the conf lines."""
    write(out, admin_user=admin_user, admin_password=admin_password, hq_user=hq_user,
          hq_password=hq_password, force=force)
    click.echo(f"plugin {PLUGIN}")
    click.echo(f"plugin_opt_config_file {out.resolve()}")


if __name__ == "__main__":
    main()
