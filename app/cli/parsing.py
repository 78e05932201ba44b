"""The type each command module's `register` is handed: the `mbc-cds` subcommand table to add its parser to."""

from __future__ import annotations

import argparse
from typing import TypeAlias

# argparse's subparser action is generic only in the type stubs, so the alias is a string at run time.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
