"""`pageray demo`: sample documents + the tiny offline model + the real pipeline, end to end."""
from __future__ import annotations

from pathlib import Path
from typing import Callable


def run_demo(workdir: Path, model: str | None = None, echo: Callable[[str], None] = print) -> dict:
    from pageray.extractors.model.tiny import build_tiny_model, is_tiny_checkpoint
    from pageray.pipeline.config import RunConfig
    from pageray.pipeline.driver.run import run_extraction
    from pageray.pipeline.samples import write_samples

    workdir = Path(workdir).resolve()
    samples = workdir / "samples"
    files = write_samples(samples)
    echo(f"wrote {len(files)} sample documents to {samples}")
    if model is None:
        tiny = workdir / "tiny-idefics2"
        if not is_tiny_checkpoint(tiny):
            build_tiny_model(tiny)
            echo(f"built the tiny offline Idefics2 (random weights) in {tiny}")
        model = str(tiny)
    config = RunConfig.build(inputs=[str(samples)], out=str(workdir / "out"), schema_ref="invoice", model=model,
                             batch_size=4, max_new_tokens=128, append=True)
    record = run_extraction(config)
    import pyarrow.dataset as pads

    table = pads.dataset(str(workdir / "out" / "data"), format="parquet").to_table(
        columns=["source_uri", "page_index", "status", "valid", "truncated", "output_tokens"])
    df = table.to_pandas()
    df["source_uri"] = df["source_uri"].map(lambda u: Path(u).name)
    echo(df.sort_values(["source_uri", "page_index"]).to_string(index=False))
    echo(f"\nrun {record['run_id']}: {record['state']}; pages by status: {record.get('counts')}")
    for note in record.get("notes", []):  # the tiny model's: its values are noise
        echo(f"note: {note}")
    echo(f"output: {workdir / 'out' / 'data'}  (query it with DuckDB, pandas, Polars or Spark)")
    return record
