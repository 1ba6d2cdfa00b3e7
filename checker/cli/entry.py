"""The `course` console script: for `course check`, start the worker before anything else.

The worker needs a second or so to import pytest and the SDK; the CLI needs a fraction of that
to import Typer and rich and read the registry. Starting the worker first lets the two overlap
on a machine with two or more cores. Every other command goes straight to the CLI.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["check"]:
        from checker.runner.prestart import prestart_worker  # standard library only

        prestart_worker()
    from checker.cli.app import app

    app()


if __name__ == "__main__":
    main()
