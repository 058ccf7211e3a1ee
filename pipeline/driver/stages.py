"""The run's Ray Data stages, each declared whole: plan blocks -> RenderPages -> ExtractFields -> CommitPages.

As Ray Data LLM's stages carry their own `map_batches` arguments, each stage here is one `Stage`:
the step (a function Ray runs as tasks, or a class an actor pool holds), what it is built with, the
Ray resources and batching it runs with, and the columns it reads and returns. The driver composes
them in a loop (pipeline.driver.run.build_dataset), once `check_columns` has found that each stage
gets the columns it reads from the one before. This module maps the RunConfig to each step's own
settings (the steps never see the RunConfig) and holds every resource decision, with its reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from pageray.extractors.inputs import ModelInputs
from pageray.extractors.ray_entry import ExtractFields  # torch-free: the actor imports the model side
from pageray.pipeline.config import RunConfig
from pageray.pipeline.datamodel import DECODE_COLUMNS, PAGE_COLUMNS, output_schema
from pageray.pipeline.driver.extractor_memory import extractor_memory, node_shares
from pageray.pipeline.errors import ConfigError
from pageray.pipeline.ledger.commit import SUMMARY_COLUMNS, CommitPages
from pageray.pipeline.ledger.plan import PLAN_SCHEMA
from pageray.pipeline.ledger.plan_read import BLOCK_COLUMNS, read_plan_blocks
from pageray.pipeline.render.step import RenderPages
from pageray.schemas import arrow_type

# A plan block's read task: trivial work, and a full CPU reserved for it can starve a 2-core node
READ_CPUS = 0.1
# What ExtractFields reads of a page row (the rest of its output is copied as it comes)
EXTRACT_NEEDS = ("doc_id", "source_uri", "page_index", "page_count", "status", "pixels", "crop_shapes")


@dataclass(frozen=True)
class Cluster:
    """What the stages are sized by: the cluster's resources (ray.cluster_resources()) and its
    nodes (ray.nodes())."""
    resources: Mapping[str, float]
    nodes: Sequence[Mapping[str, Any]] = ()

    @classmethod
    def current(cls) -> "Cluster":
        import ray

        return cls(ray.cluster_resources(), ray.nodes())

    def cpu_share(self) -> float:
        """CPUs one actor reserves. On a tiny node (CI: 2 cores) whole-CPU actors would leave Ray
        Data's own listing task no CPU at all, and the job would wait forever."""
        return 1.0 if self.resources.get("CPU", 0) >= 4 else 0.5


@dataclass(frozen=True)
class Stage:
    """One map_batches call. `ray_args`: map_batches' own arguments (compute, num_cpus/num_gpus,
    memory, batch_size, batch_format, and any other Ray option such as max_concurrency)."""
    name: str
    fn: Callable
    kwargs: Mapping[str, Any]  # the class's constructor kwargs, or the function's own
    ray_args: Mapping[str, Any]
    needs: tuple[str, ...]  # the columns it reads
    gives: tuple[str, ...]  # the columns it returns
    barrier_blocks: int | None = None  # its whole output made first, in this many blocks

    @property
    def actors(self) -> int:
        """The actors the stage starts with (0 for a stage of tasks)."""
        compute = self.ray_args.get("compute")
        return getattr(compute, "min_size", 0) or 0

    def apply(self, dataset):
        kwargs = "fn_constructor_kwargs" if isinstance(self.fn, type) else "fn_kwargs"
        dataset = dataset.map_batches(self.fn, **{kwargs: dict(self.kwargs)}, **self.ray_args)
        return dataset.repartition(self.barrier_blocks) if self.barrier_blocks else dataset


def check_columns(stages: Sequence[Stage], given: Sequence[str]) -> None:
    """Refuse a composition in which a stage reads a column the stage before it does not return."""
    upstream = "the plan's block items"
    for stage in stages:
        missing = [c for c in stage.needs if c not in given]
        if missing:
            raise ValueError(f"stage {stage.name} reads column(s) {missing} that {upstream} does not return "
                             f"(it returns {list(given)})")
        given, upstream = stage.gives, f"stage {stage.name}"


def read_plan_stage(out: str, blocks: int) -> Stage:
    # Blocks of a few documents each (pipeline.ledger.plan_read says why not read_parquet). Reading
    # one is trivial work; a full CPU reserved for it can starve a 2-core node.
    # A few read tasks read many blocks each (plan_read.read_tasks); then a barrier that cuts their
    # rows back into the plan's blocks: every block is read before rendering starts, so the render
    # pool scales out to the whole backlog at once and each node's extractor is fed. Streamed
    # straight into rendering, the first render actor took the blocks as they came and the second
    # node's extractor sat idle.
    return Stage("read plan blocks", read_plan_blocks, {"out": out},
                 {"batch_format": "pyarrow", "batch_size": None, "num_cpus": READ_CPUS},
                 needs=BLOCK_COLUMNS, gives=tuple(PLAN_SCHEMA.names), barrier_blocks=blocks)


def render_stage(config: RunConfig, cluster: Cluster) -> Stage:
    import ray

    # Render actors keep their forkserver warm. A plan block (DOCS_PER_BLOCK documents) per call;
    # its pages leave in Ray blocks of up to ~128 MiB, across documents, so one-page documents
    # still fill model batches, and image-less rows (skipped pages, error rows) ride along in
    # blocks of thousands instead of thousands of tiny blocks. The model's crops (and bundles)
    # are made here too, on the CPU workers (extractors.inputs).
    renderers = ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, int(cluster.resources.get("CPU", 1))))
    prepare = ModelInputs(config.model_spec().split_images, config.multi_image_pages())
    return Stage("RenderPages", RenderPages,
                 {"run_id": config.run_id, "limits": config.render_limits(), "prepare": prepare},
                 {"batch_size": None, "compute": renderers, "num_cpus": cluster.cpu_share()},
                 needs=("doc_id", "source_uri", "doc_size", "doc_mtime_ns", "done_pages"),
                 gives=PAGE_COLUMNS + prepare.columns)


def extractor_pool(config: RunConfig, cluster: Cluster) -> dict[str, Any]:
    """Actors and resources for the extractor stage: every GPU of the cluster, else CPU actors."""
    import ray

    from pageray.extractors.batching import AUTO_MAX
    from pageray.extractors.settings import CONCURRENT_BATCHES

    # batches each actor takes at once: the async actor (extractors.actor) decodes the next one in
    # the same engine's slots while one ends, as Ray Data LLM's engine stage does (its max_concurrency)
    calls = {"max_concurrent_calls_per_actor": CONCURRENT_BATCHES}
    gpus = int(cluster.resources.get("GPU", 0))
    if gpus > 0:
        n = min(config.actors or gpus, gpus)
        # Ray Data insists on a batch size for GPU stages; image-less rows then cost a call per
        # batch_size of them (milliseconds each), which only a file claiming huge page counts notices.
        # A fixed pool, one actor per GPU, all loaded before work is handed out (run._init_ray). An
        # autoscaling (1, n) pool leaves the second node idle when the work arrives in a few large blocks.
        rows = AUTO_MAX if config.batch_size == "auto" else config.batch_size
        return {"compute": ray.data.ActorPoolStrategy(size=n, **calls), "num_gpus": 1, "batch_size": rows,
                "memory": extractor_memory(config.model, config.dtype, bool(config.quantize), True,
                                           node_shares(cluster.nodes, True, n))}
    # whole render blocks: the extractor chunks their images into batch_size model batches itself
    n, share = config.actors or 1, cluster.cpu_share()
    cpus = cluster.resources.get("CPU", 0)
    # Room is left for one render actor and the plan's read tasks: a pool that cannot all be placed
    # would hold the run until its actors' wait ran out (pipeline.driver.run), so it is refused now.
    most = max(1, int((cpus - share - READ_CPUS) // share))
    if n > most:
        raise ConfigError(f"--actors {n}: on CPU each extractor takes {share:g} CPU, and this cluster's {cpus:g} "
                          f"CPUs hold at most {most} beside rendering; lower --actors to {most} or fewer "
                          "(or add nodes)")
    return {"compute": ray.data.ActorPoolStrategy(size=n, **calls), "num_cpus": share,
            "batch_size": None,
            "memory": extractor_memory(config.model, config.dtype, False, False, node_shares(cluster.nodes, False, n))}


def extract_stage(config: RunConfig, schema, cluster: Cluster) -> Stage:
    return Stage("ExtractFields", ExtractFields,
                 {"spec": config.model_spec(), "schema": schema, "settings": config.extract_settings()},
                 {"batch_format": "pyarrow", **extractor_pool(config, cluster)},
                 needs=EXTRACT_NEEDS, gives=tuple(output_schema(arrow_type(schema)).names) + DECODE_COLUMNS)


def commit_stage(config: RunConfig, schema, fence: Callable[[], None] | None) -> Stage:
    import ray

    written = output_schema(arrow_type(schema))
    # One writer that reserves no CPU: its work is writing a file per block, and a CPU it held
    # would be one fewer for the render actors on a small node.
    return Stage("CommitPages", CommitPages,
                 {"out": config.out, "run_id": config.run_id, "schema": written, "fence": fence},
                 {"batch_format": "pyarrow", "batch_size": None, "compute": ray.data.ActorPoolStrategy(size=1),
                  "num_cpus": 0},
                 needs=tuple(written.names), gives=SUMMARY_COLUMNS + DECODE_COLUMNS)


def extractor_actors(stages: Sequence[Stage]) -> int:
    """How many extractor actors the run starts (one model loaded in each)."""
    return next(stage.actors for stage in stages if stage.name == "ExtractFields")


def run_stages(config: RunConfig, schema, cluster: Cluster, blocks: int, fence=None) -> list[Stage]:
    """The run's stages in order, their columns checked against each other."""
    stages = [read_plan_stage(config.out, blocks), render_stage(config, cluster), extract_stage(config, schema, cluster),
              commit_stage(config, schema, fence)]
    check_columns(stages, BLOCK_COLUMNS)
    return stages
