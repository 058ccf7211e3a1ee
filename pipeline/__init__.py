"""pageray's pipeline: the driver side (`cli`, `api` with `extract` and `read` for Python code, `run`
the Ray driver, `ledger/` exactly-once and incremental output, `bench/`, `report/`, `evaluation/`,
the demo), `config` (the run's validated config, composing each layer's settings), `render/`
(documents to page images) and the base (`datamodel`: the page row and statuses; `errors`: what
stops a run; `storage`: listing and reading inputs). The model side is in the top-level
`extractors/`. The layers are docs/ARCHITECTURE.md's, checked by import-linter."""

__all__ = ["extract", "read"]


def __getattr__(name: str):
    # `from pageray.pipeline import extract, read`, imported on first use: importing any part of pipeline
    # (a Ray worker, a render child) does not import the API and what it needs
    if name in __all__:
        from pageray.pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
