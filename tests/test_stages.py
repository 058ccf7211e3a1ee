"""The run's stages as declared (pipeline.driver.stages), without Ray running: the resources each
asks of a GPU and of a CPU cluster, and a stage whose input columns are not given is refused."""
from __future__ import annotations

import pytest

from pageray.extractors.batching import AUTO_MAX
from pageray.extractors.bundle import COLUMN as BUNDLE_COLUMN
from pageray.pipeline.config import RunConfig
from pageray.pipeline.driver.extractor_memory import GiB
from pageray.pipeline.errors import ConfigError
from pageray.pipeline.driver.stages import Cluster, Stage, check_columns, run_stages
from pageray.pipeline.ledger.plan_read import BLOCK_COLUMNS

BLOCKS = 3


def node(cpus: int, gpus: int, memory: float) -> dict:
    return {"Alive": True, "Resources": {"CPU": cpus, "GPU": gpus, "memory": memory} if gpus else
            {"CPU": cpus, "memory": memory}}


def stages_of(tmp_path, cluster: Cluster, **values) -> dict[str, Stage]:
    config = RunConfig(inputs=[str(tmp_path)], out=str(tmp_path / "out"), schema_ref="invoice", **values)
    stages = run_stages(config, config.extraction_schema(), cluster, BLOCKS)
    return {stage.name: stage for stage in stages}


def test_on_gpus_one_extractor_per_gpu_with_a_batch_size_and_a_node_share_of_memory(tmp_path):
    # two GPU nodes, 8 CPUs and 6 GiB each: the extractor's memory is capped at one node's share
    cluster = Cluster({"CPU": 16, "GPU": 2, "memory": 12 * GiB}, [node(8, 1, 6 * GiB), node(8, 1, 6 * GiB)])
    stages = stages_of(tmp_path, cluster, actors=4)
    extract = stages["ExtractFields"].ray_args
    assert stages["ExtractFields"].actors == 2  # never more actors than GPUs
    assert extract["num_gpus"] == 1 and "num_cpus" not in extract
    assert extract["batch_size"] == AUTO_MAX and extract["batch_format"] == "pyarrow"
    assert extract["memory"] == 6 * GiB
    render = stages["RenderPages"].ray_args
    assert render["num_cpus"] == 1.0 and render["compute"].max_size == 16 and render["batch_size"] is None
    assert stages["read plan blocks"].ray_args["num_cpus"] == 0.1 and stages["read plan blocks"].barrier_blocks == BLOCKS
    assert stages["CommitPages"].ray_args["num_cpus"] == 0 and stages["CommitPages"].actors == 1


def test_on_a_two_core_node_actors_take_half_a_cpu_and_whole_blocks(tmp_path):
    cluster = Cluster({"CPU": 2, "memory": 4 * GiB}, [node(2, 0, 4 * GiB)])
    stages = stages_of(tmp_path, cluster, batch_size=4)
    extract = stages["ExtractFields"].ray_args
    assert "num_gpus" not in extract and extract["num_cpus"] == 0.5 and extract["batch_size"] is None
    assert stages["ExtractFields"].actors == 1 and 0 < extract["memory"] <= 4 * GiB
    assert stages["RenderPages"].ray_args["num_cpus"] == 0.5


def test_more_cpu_extractors_than_the_cluster_holds_are_refused_naming_the_most(tmp_path):
    cluster = Cluster({"CPU": 2, "memory": 8 * GiB}, [node(2, 0, 8 * GiB)])
    assert stages_of(tmp_path, cluster, actors=2)["ExtractFields"].actors == 2  # 1 CPU, beside render's 0.5
    with pytest.raises(ConfigError, match=r"--actors 3: .* at most 2 beside rendering; lower --actors to 2"):
        stages_of(tmp_path, cluster, actors=3)


def test_the_render_stage_makes_the_models_inputs_and_says_which_columns(tmp_path):
    cluster = Cluster({"CPU": 2}, [node(2, 0, 4 * GiB)])
    merge = stages_of(tmp_path, cluster, scope="document")["RenderPages"]
    bundles = stages_of(tmp_path, cluster, scope="document", document_mode="multi_image",
                        multi_image_max_pages=3)["RenderPages"]
    assert BUNDLE_COLUMN in bundles.gives and BUNDLE_COLUMN not in merge.gives
    prepare = bundles.kwargs["prepare"]
    assert prepare.multi_image_pages == 3 and prepare.pixels.split is True


def test_a_stage_that_reads_a_column_its_upstream_does_not_return_is_refused():
    read = Stage("read", len, {}, {}, needs=BLOCK_COLUMNS, gives=("doc_id", "source_uri"))
    render = Stage("render", len, {}, {}, needs=("doc_id", "source_uri", "doc_size"), gives=("page_index",))
    check_columns([read], BLOCK_COLUMNS)
    with pytest.raises(ValueError, match=r"stage render reads column\(s\) \['doc_size'\] that stage read does not "
                                         r"return \(it returns \['doc_id', 'source_uri'\]\)"):
        check_columns([read, render], BLOCK_COLUMNS)
    with pytest.raises(ValueError, match="the plan's block items"):
        check_columns([read], ("shard",))


def test_a_plan_is_read_by_a_few_tasks_each_opening_a_shard_once(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pageray.pipeline.ledger.folder import OutputFolder
    from pageray.pipeline.ledger.plan_read import plan_blocks, read_plan_blocks, read_tasks

    # one task per block started a worker process per block at once (pipeline.ledger.plan_read)
    assert [read_tasks(n) for n in (1, 3, 32, 64 * 4 + 1, 100_000)] == [1, 3, 4, 5, 1563]
    folder = OutputFolder(str(tmp_path / "out"))
    docs = [20, 5]  # two shards: 3 and 1 blocks of 8 documents
    for number, count in enumerate(docs):
        path = folder.shard_path("run", number)
        folder.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        table = pa.table({"doc_id": [f"{number}-{i}" for i in range(count)]})
        with folder.fs.open_output_stream(path) as sink:
            pq.write_table(table, sink, row_group_size=8)
    blocks = plan_blocks(folder, "run", docs, 8)
    assert [(b["start"], b["stop"]) for b in blocks] == [(0, 1), (1, 2), (2, 3), (0, 1)]
    batch = pa.Table.from_pylist(blocks)  # what one read task gets: several blocks' items
    read = read_plan_blocks(batch, str(tmp_path / "out"))
    assert read.column("doc_id").to_pylist() == [f"0-{i}" for i in range(20)] + [f"1-{i}" for i in range(5)]
    assert read_plan_blocks(batch.slice(1, 1), str(tmp_path / "out")).column("doc_id").to_pylist() == \
        [f"0-{i}" for i in range(8, 16)]
