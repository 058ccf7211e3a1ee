"""pageray's pipeline. The base layer is here: `config` (the run's validated config),
`datamodel` (the page row and statuses), `errors` (what stops a run), `storage` (listing and
reading inputs), `run` (the Ray driver), `cli`, `api` (`extract` and `read` for Python code), and
the demo. The layers above it: `render/` (documents to page images), `ledger/` (exactly-once and
incremental output), `bench/` (the throughput benchmark). The model side is in the top-level
`extractors/`."""

__all__ = ["extract", "read"]


def __getattr__(name: str):
    # `from pageray.pipeline import extract, read`, imported on first use: importing any part of pipeline
    # (a Ray worker, a render child) does not import the API and what it needs
    if name in __all__:
        from pageray.pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
