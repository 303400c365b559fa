"""The argument parser of every command line: a usage error is one line on stderr and exit code 2 (bad input's
rule), not argparse's usage block."""

from __future__ import annotations

import argparse
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors read `error: <what> (see --help)`, one line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see --help)\n")
