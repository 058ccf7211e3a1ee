"""The one place that decides what stops a run and what becomes a row.

Fatal (raise one of the classes below, the run stops before or without writing more):
  - the configuration or the schema is wrong (ConfigError, schemas.SchemaError),
  - the model will not load (ModelLoadError),
  - the output storage cannot be reached or would be corrupted (StorageError),
  - another live run holds the output folder (OutputBusy),
  - another run took the output folder over from this one (LeaseLost),
  - a Ray node or worker died and Ray could not finish its work on the nodes left (LostWorkers).
A run that stops mid-way because of its storage or a node (pipeline.stopped tells which) keeps every
page it committed, and says so: resubmitting the same command does only what is missing.
Everything a single document or page can cause (corrupt bytes, encryption, a renderer crash,
a timeout, an out-of-memory at batch size 1, an unparseable generation) becomes a row with a
`pipeline.datamodel.Status` and an error message, and the run goes on.
"""
from __future__ import annotations

import reprlib


class FatalError(RuntimeError):
    """The run cannot go on; the message says what to change."""


class ConfigError(FatalError, ValueError):
    """A flag or config value is wrong. Raised before any work starts."""


class ModelLoadError(FatalError):
    """The model or processor could not be loaded; the message says what was tried."""


class StorageError(FatalError):
    """The input or output location is unreachable, or output would be mixed up."""


class LeaseLost(StorageError):
    """A run paused or cut off past its lease timeout was taken over (pipeline.ledger.lease): it must
    write nothing more."""


class OutputBusy(FatalError):
    """Another live run holds the output folder's lease (pipeline.ledger.lease); --wait waits."""


class ActorsNotStarted(FatalError):
    """The run's actors (an extractor loading its model on each GPU) did not all start in time:
    the cluster lacks what they ask for, or a model load hangs. Nothing was processed."""


class LostWorkers(FatalError):
    """A Ray node (or a worker process) died mid-run and Ray could not redo its work elsewhere."""


def describe(exc: BaseException, limit: int = 2000) -> str:
    """A one-line error text for a row: type and message, bounded in size."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 3, 80, 80


def shown(value: object, limit: int = 160) -> str:
    """A value quoted in an error message, cut short: a YAML alias bomb or a pasted document
    must not print hundreds of kilobytes (reprlib never builds the whole repr)."""
    text = _SHOWN.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
