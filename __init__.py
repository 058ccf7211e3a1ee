"""pageray: PDF folders -> Idefics2 on Ray -> typed, schema-valid Parquet.

Installed as one package, `pageray`, so that its parts never collide with a user's own
`pipeline.py` or `schemas/` (pyproject's package-dir maps this repository's folders under it):
`pageray.pipeline` (driver, ledger, rendering, CLI, API), `pageray.extractors` (the model side),
`pageray.schemas` (extraction schemas), `pageray.jobs` (`python -m pageray.jobs.extract`).
"""

__all__ = ["extract", "read"]


def __getattr__(name: str):
    # `from pageray import extract, read`, imported on first use: a Ray worker or a render child
    # that imports one part of pageray does not pay for the API and what it needs
    if name in __all__:
        from pageray.pipeline.driver import api

        return getattr(api, name)
    raise AttributeError(f"module 'pageray' has no attribute {name!r}")
