"""The `tradetape` console script, and `python -m deploy.cli_entry` (the CLI without
depending on the console script's PATH).

Importing `deploy.cli` takes a while (typer, pydantic, every package's commands: 2-3 s on
a loaded machine): a Ctrl-C meanwhile ended in a traceback through the import machinery,
since the console script imported `deploy.cli` before any `try`. Here the import is
inside one.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130
"""The shell's exit status for a process ended by SIGINT (128 + 2)."""


def interrupted() -> None:
    """Ctrl-C: one line on stderr, exit 130, no traceback."""
    sys.stderr.write("error: interrupted (Ctrl-C)\n")
    sys.exit(INTERRUPTED)


def main() -> None:
    try:
        from deploy.cli import main as cli_main
    except KeyboardInterrupt:
        interrupted()
    cli_main()


if __name__ == "__main__":
    main()
