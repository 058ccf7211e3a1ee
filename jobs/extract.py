"""Entry point for `ray job submit --working-dir . -- python -m pageray.jobs.extract ...`.

Takes exactly the flags of `pageray extract`, so a command tried locally can be submitted
to a cluster unchanged.
"""
from __future__ import annotations

import sys

import typer

from pageray.pipeline.cli import extract

job = typer.Typer(add_completion=False)
job.command()(extract)


def main(argv: list[str] | None = None) -> None:
    job(argv if argv is not None else sys.argv[1:], prog_name="python -m pageray.jobs.extract")


if __name__ == "__main__":
    main()
