"""`python -m bench` (`make bench`): which benchmarks there are and how each is run.

It runs none: each starts its own throwaway stack, takes minutes and loads the machine,
so each is run on its own, as `python -m bench.NAME` (on a shared machine under
`flock /tmp/bench.lock`); results are logged in docs/benchmarks.md. Before, `make bench`
ran `python -m bench`, which had no `__main__` and failed ("'bench' is a package and
cannot be directly executed")."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def entry_points() -> list[tuple[str, str]]:
    """(module name, first sentence of its docstring) of every benchmark with a main."""
    out = []
    for path in sorted(HERE.glob("*.py")):
        text = path.read_text()
        if path.stem.startswith("_") or 'if __name__ == "__main__":' not in text:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        out.append((path.stem, " ".join(doc.split("\n\n", 1)[0].split())))
    return out


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m bench",
        description="List the benchmarks; run one with `python -m bench.NAME [--help]`.",
    ).parse_args(argv)
    print(
        "Each benchmark runs on its own: .venv/bin/python -m bench.NAME [--help]"
        " (on a shared machine under flock /tmp/bench.lock); results: docs/benchmarks.md"
    )
    for name, what in entry_points():
        print(f"  {name:26} {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
