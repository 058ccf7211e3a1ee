"""Entry point for `ray job submit --working-dir . -- python -m pageray.jobs.extract ...`.

Takes exactly the flags of `pageray extract`, so a command tried locally can be submitted
to a cluster unchanged. Submitted from a pageray checkout, it first checks that the pageray it
imports is that checkout's (jobs/checkout.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import typer

import pageray
from pageray.jobs.checkout import stale_install_message
from pageray.pipeline.app.cli import extract

job = typer.Typer(add_completion=False)
job.command()(extract)


def main(argv: list[str] | None = None) -> None:
    stale = stale_install_message(Path(pageray.__file__).parent, Path.cwd())
    if stale:
        typer.secho(f"pageray: {stale}", err=True, fg=typer.colors.RED)
        raise SystemExit(2)
    job(argv if argv is not None else sys.argv[1:], prog_name="python -m pageray.jobs.extract")


if __name__ == "__main__":
    main()
