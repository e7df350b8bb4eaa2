"""Asterisk 22 configuration for an edge box, generated from a small description of the site.

``render(site)`` is pure: it returns ``{file name: text}`` (extensions.conf, manager.conf,
pjsip.conf, chan_dahdi.conf, musiconhold.conf) and touches nothing; ``write(site, dir)`` puts them
in a directory. ``python -m drivers.asterisk.confgen --help`` is the technician's CLI;
``docs/asterisk.md`` says where the files go and how to check them.

    >>> from drivers.asterisk.confgen import DeskPhone, Site, TrunkLine, render
    >>> files = render(Site(edge_host="127.0.0.1", ami_secret="s3cret-ami",
    ...                     desk_phones=(DeskPhone("8001", "张伟", "pw-8001-x"),),
    ...                     trunks=(TrunkLine(1, "fxo"),)))
    >>> "AGI(agi://127.0.0.1:4573/incoming,${EXTEN})" in files["extensions.conf"]
    True
"""
from drivers.asterisk.confgen.files import (
    chan_dahdi_conf,
    extensions_conf,
    manager_conf,
    musiconhold_conf,
    pjsip_conf,
    render,
    write,
)
from drivers.asterisk.confgen.model import (
    AMI_READ,
    AMI_WRITE,
    ConfgenError,
    DeskPhone,
    Site,
    TrunkLine,
    check,
)

__all__ = [
    "AMI_READ", "AMI_WRITE", "ConfgenError", "DeskPhone", "Site", "TrunkLine", "check",
    "chan_dahdi_conf", "extensions_conf", "manager_conf", "musiconhold_conf", "pjsip_conf",
    "render", "write",
]
