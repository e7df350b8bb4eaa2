"""``python -m drivers.asterisk.confgen --help``."""
from drivers.asterisk.confgen.cli import main

main(prog_name="python -m drivers.asterisk.confgen")
