"""`pageray extract --config job.yaml`: a run's options in a file, for cron entries and Ray jobs.

The file is a YAML (or JSON) mapping whose keys are RunConfig's field names (`batch_size`,
`schema_ref`, `render_timeout_s`, ...). A flag's own spelling is taken too, so what a command
line says can be pasted: `schema`, `attn`, `render-timeout`, `--max-new-tokens`. Negative flags
are not keys (`no_split: true` would read as a double negative): write `split_images: false`.
An unknown key is refused before any work, naming the key and the nearest field; the values are
validated by RunConfig itself, like flags. Flags given on the command line override the file.
Relative paths in the file are read from the working directory, as flags are.
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from pageray.pipeline.config import RunConfig, flag
from pageray.pipeline.errors import ConfigError

REQUIRED = ("inputs", "schema_ref", "out")


def _aliases() -> dict[str, str]:
    """Flag spelling (dashes as underscores, no leading --) -> field, for flags named otherwise."""
    names = {}
    for field in RunConfig.model_fields:
        spelled = flag(field)
        if spelled.startswith("--") and not spelled.startswith("--no-"):
            names[spelled[2:].replace("-", "_")] = field
    return names


def _key(raw: Any) -> str:
    return str(raw).strip().lstrip("-").replace("-", "_")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The options in `path`, keyed by RunConfig field; ConfigError for a file that cannot be
    used (unreadable, not a mapping, an unknown key, a key given twice in two spellings)."""
    path = Path(path).expanduser()
    where = f"--config {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    import yaml

    try:  # JSON is YAML too, but a .json file's errors read better from the JSON parser
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise ConfigError(f"{where}: not valid {kind} ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of option names to values, got a {type(data).__name__}")
    fields, aliases = list(RunConfig.model_fields), _aliases()
    options: dict[str, Any] = {}
    for raw, value in data.items():
        key = _key(raw)
        field = key if key in RunConfig.model_fields else aliases.get(key)
        if field is None:
            close = difflib.get_close_matches(key, fields + list(aliases), 1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"invalid configuration:\n  {where}: unknown key {raw!r}; {hint}keys are the "
                              f"options' names: {', '.join(fields)} (or their flags: schema, attn, "
                              "render-timeout, ...)")
        if field in options:
            raise ConfigError(f"invalid configuration:\n  {where}: {field!r} is given twice (as {raw!r} too)")
        options[field] = value
    if isinstance(options.get("inputs"), str):
        options["inputs"] = [options["inputs"]]  # one folder, written as a string
    if isinstance(options.get("retry"), str):
        options["retry"] = [options["retry"]]
    return options


def resolve_options(file_options: dict[str, Any], flags: dict[str, Any], config_path: str | None = None,
                    required: tuple[str, ...] = REQUIRED) -> dict[str, Any]:
    """The run's options: the file's, then the flags given on the command line over them. The
    required ones (inputs, schema, out; `pageray plan` has the folder's schema) must come from
    one or the other."""
    options = {**file_options, **flags}
    missing = [f for f in required if options.get(f) in (None, [], "")]
    if missing:
        source = f" or as keys of {config_path}" if config_path else " (or in a --config file)"
        named = ", ".join(f"{flag(f)} ({f})" for f in missing)
        them = "it" if len(missing) == 1 else "them"
        raise ConfigError(f"invalid configuration:\n  missing {named}: give {them} on the command line{source}")
    return options
