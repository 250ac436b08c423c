"""`mer-ray` console script: the job entry points under one command."""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

JOBS = Path(__file__).resolve().parent.parent / "jobs"
COMMANDS = {
    "demo-corpus": "make_demo_corpus.py",
    "mine": "cyclic_mining.py",
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(prog="mer-ray", description="mer-ray commands")
        parser.add_argument("command", choices=sorted(COMMANDS))
        parser.parse_args(argv[:1])
    command, rest = argv[0], argv[1:]
    sys.argv = [f"mer-ray {command}", *rest]
    runpy.run_path(str(JOBS / COMMANDS[command]), run_name="__main__")
