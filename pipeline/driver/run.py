"""The driver: plan the documents, then stream them through Ray Data to Parquet.

take the output's lease -> plan -> RenderPages (CPU actors, isolated) -> ExtractFields actors (one
per GPU, or N on CPU) -> CommitPages -> compact. The driver holds neither document bytes nor the
whole listing: the plan is streamed to Parquet shards that Ray Data reads back.
"""
from __future__ import annotations

import json
import os
import time

from pageray.pipeline.config import RunConfig
from pageray.pipeline.resolved_run import ResolvedRun
from pageray.pipeline.errors import FatalError, StorageError, describe
from pageray.pipeline.ledger.compact import drop_duplicate_pages, drop_superseded, drop_unlisted
from pageray.pipeline.ledger.documents import sync_documents
from pageray.pipeline.ledger.merge import merge_small_files, recover
from pageray.pipeline.ledger.heartbeat import Heartbeat
from pageray.pipeline.ledger.lease import Lease
from pageray.pipeline.ledger.plan import DOCS_PER_BLOCK, Plan, make_plan
from pageray.pipeline.ledger.plan_read import plan_blocks, read_tasks
from pageray.pipeline.ledger.folder import OutputFolder, utc_now
from pageray.pipeline.ledger.records import RunRecord, RunState, claim, versions
from pageray.pipeline.driver.stopped import alive_nodes, lost_nodes, named_nodes, stopped_by
from pageray.pipeline.storage import check_inputs, unreachable
from pageray.pipeline.driver.stages import Cluster, extractor_actors, run_stages
from pageray.pipeline.driver.decode_counts import DecodeCounts
from pageray.pipeline.progress import Progress, ProgressReporter, Tally
from pageray.pipeline.driver.ray_logs import init_options, quiet_ray_data, spend_restart_notice


# How long a run waits for its actors (a model loading on each GPU) before it fails naming them.
ACTORS_START_TIMEOUT_S = 900


def _init_ray() -> None:
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver draws its own (pipeline.progress)
    quiet_ray_data()

    if not ray.is_initialized():
        # RAY_ADDRESS (set by `ray job submit`, or "auto") joins a cluster; otherwise a fresh local
        # one starts, never a leftover from a killed run that still holds its resources.
        address = os.environ.get("RAY_ADDRESS") or "local"
        ray.init(address=address, runtime_env={"env_vars": _forwarded_env()}, **init_options())
    spend_restart_notice()


def _forwarded_env() -> dict[str, str]:
    """PAGERAY_/HF_/AWS_ variables for the workers, less those the job's own runtime env sets
    (Ray refuses a ray.init runtime_env that names any of them again, even with equal values)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("PAGERAY_", "HF_", "AWS_"))}
    job_config = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if job_config:
        try:
            job_env = (json.loads(job_config).get("runtime_env") or {}).get("env_vars") or {}
        except (ValueError, AttributeError):
            job_env = {}
        env = {k: v for k, v in env.items() if k not in job_env}
    return env


def build_dataset(run: ResolvedRun, plan: Plan, fence=None):
    """The run's dataset, its stages (pipeline.driver.stages) applied in order; and the stages."""
    import ray

    config = run.config
    blocks = plan_blocks(OutputFolder(config.out), config.run_id, plan.shard_docs, DOCS_PER_BLOCK)
    stages = run_stages(config, run.schema, Cluster.current(), len(blocks), fence)
    extractors = extractor_actors(stages)
    # With several extractors, work is handed out only once every actor is up (their models
    # loaded): handed out as actors became ready, a short run on a cluster whose second node was
    # slower went entirely to the first node's GPU, the other idle throughout. Ray Data then starts
    # the pools one after another, so with one extractor rendering overlaps its model load instead.
    # Set before the dataset is made: a dataset keeps the DataContext of its making.
    ray.data.DataContext.get_current().wait_for_min_actors_s = (
        ACTORS_START_TIMEOUT_S if extractors > 1 else ray.data.context.DEFAULT_WAIT_FOR_MIN_ACTORS_S)
    dataset = ray.data.from_items(blocks, override_num_blocks=read_tasks(len(blocks)))
    for stage in stages:
        dataset = stage.apply(dataset)
    return dataset, stages


def run_extraction(run: ResolvedRun | RunConfig) -> dict:
    """Run one extraction; return the run record (also saved as OUT/_runs/<run_id>.json). The run
    holds the output's lease from before planning to the end (pipeline.ledger.lease). A RunConfig
    is resolved here (its schema loaded, its budget worked out); the API hands on its ResolvedRun."""
    from pageray.extractors.model.loading import preflight

    run = run if isinstance(run, ResolvedRun) else ResolvedRun.of(run)
    # From here on the config holds the budget the run uses, and the record shows that number.
    config, schema = run.config, run.schema
    preflight(config.model_spec())
    check_inputs(config.inputs)  # a mistyped input must not pin the output folder to this schema
    lease = Lease(OutputFolder(config.out), config.run_id, config.lease_timeout_s)
    lease.acquire(wait=config.wait)
    # every page file this run writes or deletes, here and on the workers, is fenced by the lease
    folder = OutputFolder(config.out, fence=lease.fence())
    try:
        claim(folder, schema, config.model, config.run_id, config.append)
        record = RunRecord(run_id=config.run_id, state=RunState.PLANNING, started_at=utc_now(),
                           config=config.model_dump(mode="json"), max_new_tokens_from=run.budget_from,
                           schema=run.schema_record(), versions=versions())
        folder.write_run(record)
        _run(run, folder, lease, record)
    finally:
        lease.release()
    return record.to_json()


def _run(run: ResolvedRun, folder: OutputFolder, lease: Lease, record: RunRecord) -> None:
    config = run.config
    t0 = time.monotonic()
    tally = Tally()  # what came back, counted once: the progress line and this record read it
    decode = DecodeCounts(config.engine)  # steps and occupancy: where the extractors' time went
    nodes: dict[str, str] | None = None  # the Ray nodes the run started with
    lost: dict[str, str] = {}
    try:
        with Heartbeat(folder, record, lease=lease) as beat:
            recover(folder)  # a merge a killed run left must be finished before pages are counted
            plan = make_plan(config, folder, schema_id=run.schema.id)
            beat.update(state=RunState.RUNNING.value, plan=plan.summary())
            if plan.documents:
                # shown from here on, Ray's start and the model's load included (pipeline.progress)
                progress = Progress(plan.documents, plan.estimated_pages, tally=tally)
                beat.track(progress.snapshot)
                with ProgressReporter(progress):
                    progress.phase("starting Ray")
                    _init_ray()
                    nodes = alive_nodes()
                    dataset, stages = build_dataset(run, plan, folder.fence)
                    actors = extractor_actors(stages)
                    progress.phase(f"loading the model on {actors} extractor actor{'s' if actors > 1 else ''}, "
                                   "rendering the first documents")  # until the first page comes
                    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                        cols = batch.to_pydict()
                        progress.add(cols)
                        decode.add(cols)
                        beat.update(counts=dict(tally.counts), pages=tally.pages, truncated=tally.truncated)
                        beat.check_lease()
                    progress.phase("compacting, merging small files")  # the last line, and the heartbeat's
                beat.update(progress=progress.snapshot())
                lost = lost_nodes(nodes)  # and Ray redid their work on the nodes left
            beat.check_lease()  # compaction rewrites files another holder may be reading
            beat.update(state=RunState.COMPACTING.value)
            rewritten = drop_superseded(folder, config.run_id, plan.current_versions, plan.forced, plan.scope)
            beat.update(superseded_files_rewritten=rewritten,
                        duplicate_files_rewritten=drop_duplicate_pages(folder, plan.duplicated, plan.scope),
                        pruned_files_rewritten=drop_unlisted(folder, plan.unlisted, config.inputs, plan.scope))
            beat.check_lease()
            if config.document_scope():
                beat.update(**sync_documents(folder, run.schema, plan.scope, config.run_id))
            beat.update(**merge_small_files(folder, config.run_id))  # the document file just written too
        state = RunState.SUCCEEDED.value
    except BaseException as exc:
        state = RunState.FAILED.value
        stopped = None
        if isinstance(exc, Exception) and not isinstance(exc, FatalError):  # say what stopped it
            stopped = stopped_by(exc, config.out, unreachable(config.out), lost_nodes(nodes))
        record.error = describe(stopped or exc, 1000)
        if stopped is None:
            raise
        raise stopped from exc
    finally:
        wall = time.monotonic() - t0
        record.decode = decode.summary()
        pages, truncated = tally.pages, tally.truncated
        record.update(state=state, finished_at=utc_now(), counts=dict(tally.counts), pages=pages,
                      documents_with_errors=len(tally.docs_failed), output_tokens=tally.output_tokens,
                      truncated=truncated,
                      wall_s=round(wall, 3), pages_per_s=round(pages / wall, 4) if wall > 0 else None)
        notes = [TINY_MODEL_NOTE] if _tiny(config.model) else \
            [truncation_note(truncated, config.max_new_tokens, record.max_new_tokens_from)] if truncated else []
        if lost:
            notes.append(f"Ray lost {named_nodes(lost)} during the run and redid its unfinished batches on the "
                         "nodes left")
        if notes:
            record.notes = notes
        try:
            folder.write_run(record)
        except StorageError:
            if state == RunState.SUCCEEDED.value:
                raise
            # a failed run's own error says why it stopped; often this same storage is down


# The tiny model's answers say nothing of the budget (or the schema): its weights are random.
TINY_MODEL_NOTE = ("the model is pageray's tiny test model, with random weights: its values are noise, fit for "
                   "checking the pipeline end to end, not for accuracy; pass --model with real Idefics2 weights "
                   "(e.g. HuggingFaceM4/idefics2-8b) for real values")


def _tiny(model: str) -> bool:
    from pageray.extractors.model.tiny import is_tiny_checkpoint

    return is_tiny_checkpoint(model)


_FROM = {"flag": "as given", "schema": "the schema's", "derived": "derived from the schema's fields"}


def truncation_note(truncated: int, max_new_tokens: int, source: str | None) -> str:
    """The run summary's line when answers were cut off: what happened, and the flag that fixes it.
    Truncated rows are `ok` rows, final for a re-run, hence --force."""
    pages = "page" if truncated == 1 else "pages"
    return (f"{truncated} {pages} ran out of output budget and were closed early (truncated = true): "
            f"--max-new-tokens is {max_new_tokens} ({_FROM.get(source, source)}); raise it (a re-run "
            "keeps finished pages; --force redoes them)")
