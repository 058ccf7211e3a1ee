"""pageray's pipeline, by layer: `app/` (the commands: CLI, demo, --config files), `report/`,
`evaluation/` and `bench/` (read a run, never imported by one), `driver/` (the Ray driver, and the
Python API: `extract` and `read`), `ledger/` (exactly-once and incremental output), `config` (the
run's validated config, composing each layer's settings), `render/` (documents to page images), and
the base modules here: `datamodel` (the page row and statuses), `errors` (what stops a run),
`storage` (listing and reading inputs), `progress`, `samples`. The model side is `pageray.extractors`.
The layers are docs/ARCHITECTURE.md's, checked by import-linter."""

__all__ = ["extract", "read"]


def __getattr__(name: str):
    # `from pageray.pipeline import extract, read`, imported on first use: importing any part of pipeline
    # (a Ray worker, a render child) does not import the API and what it needs
    if name in __all__:
        from pageray.pipeline.driver import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
