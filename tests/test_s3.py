"""s3:// in, s3:// out, through a real `ray job submit`, against moto's S3 server on 127.0.0.1.

The job reads the sample documents from s3://BUCKET/in/ and writes data, run record and
manifest to s3://BUCKET/out; the test reads them back with boto3 and compares the rows with a
run over the same documents from local disk into a local folder.

The AWS_* variables reach the job through the head's environment (the job's driver inherits
it; the pipeline forwards AWS_* to its workers).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from cheap import SMALL_RENDER, SMALL_RENDER_FLAGS
from clusters import Cluster, cluster_env, free_port, submit_job

from pageray.pipeline.config import RunConfig
from pageray.pipeline.driver.run import run_extraction

pytestmark = [pytest.mark.slow, pytest.mark.cluster]  # its head has the AWS variables in its own environment
BUCKET = "pageray-test"
FLAGS = ["--schema", "invoice", "--max-new-tokens", "16", "--batch-size", "2", *SMALL_RENDER_FLAGS]


def aws_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint}


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on a free port of 127.0.0.1, in a thread of this process."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3(s3_endpoint, samples):
    """A boto3 client, with the bucket made and the samples uploaded to in/."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    for p in sorted(samples.iterdir()):
        client.upload_file(str(p), BUCKET, f"in/{p.name}")
    return client


@pytest.fixture(scope="module")
def head(s3_endpoint):
    """A Ray head with the job server; the AWS_* variables are in its environment."""
    with Cluster(cluster_env(**aws_env(s3_endpoint))) as cluster:
        t0 = time.monotonic()
        cluster.start_head(num_cpus=2, dashboard=True)
        cluster.wait_for_job_server()
        print(f"head with job server up in {time.monotonic() - t0:.0f} s")
        yield cluster


def keys_under(s3, prefix: str) -> list[str]:
    return [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for o in page.get("Contents", []) if not o["Key"].endswith("/")]  # not pyarrow's folder markers


def rows_by_name(parquet_glob: str) -> list[tuple]:
    """(file name, page_index, status, valid) of every row, sorted; the folder part of
    source_uri differs between an S3 run and a local one."""
    rows = duckdb.sql(f"select source_uri, page_index, status, valid from read_parquet('{parquet_glob}')").fetchall()
    return sorted((uri.rsplit("/", 1)[-1], page, status, valid) for uri, page, status, valid in rows)


def test_job_reads_and_writes_s3(head, s3, samples, tiny_model, ray_local, tmp_path):
    t0 = time.monotonic()
    job, status = submit_job(head, [f"s3://{BUCKET}/in/", *FLAGS, "--model", str(tiny_model),
                                    "--out", f"s3://{BUCKET}/out"], timeout=300)
    print(f"ray job submit: {time.monotonic() - t0:.0f} s")
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:] + head.logs()
    assert status == "SUCCEEDED", job.stdout[-3000:]

    keys = keys_under(s3, "out/")
    assert "out/_pageray.json" in keys, keys
    runs = [k for k in keys if k.startswith("out/_runs/") and k.count("/") == 2 and k.endswith(".json")]
    assert len(runs) == 1, keys
    parts = [k for k in keys if k.startswith("out/data/")]
    assert parts and all(Path(k).name.startswith("part-") and k.endswith(".parquet") for k in parts), parts

    record = json.loads(s3.get_object(Bucket=BUCKET, Key=runs[0])["Body"].read())
    assert record["state"] == "succeeded"
    assert Path(runs[0]).stem == record["run_id"]
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key="out/_pageray.json")["Body"].read())
    assert manifest["created_by_run"] == record["run_id"]

    downloaded = tmp_path / "s3-out"
    downloaded.mkdir()
    for k in parts:
        s3.download_file(BUCKET, k, str(downloaded / Path(k).name))
    s3_rows = rows_by_name(f"{downloaded}/*.parquet")
    assert len(s3_rows) == record["pages"]
    assert {name for name, *_ in s3_rows} == {p.name for p in samples.iterdir()}  # every input has rows
    assert Counter((name, page) for name, page, *_ in s3_rows).most_common(1)[0][1] == 1  # each page once
    assert all(valid for _, _, status, valid in s3_rows if status == "ok")
    assert any(status == "ok" for _, _, status, _ in s3_rows)
    uris = duckdb.sql(f"select distinct source_uri from read_parquet('{downloaded}/*.parquet')").fetchall()
    assert all(uri.startswith(f"s3://{BUCKET}/in/") for (uri,) in uris), uris

    # The same documents, with the same settings, from local disk into a local folder give the same
    # pages and statuses: a run in this process on the session's cluster (no driver to start).
    t0 = time.monotonic()
    record = run_extraction(RunConfig.build(inputs=[str(samples)], out=str(tmp_path / "local-out"),
                                            schema_ref="invoice", model=str(tiny_model), max_new_tokens=16,
                                            batch_size=2, **SMALL_RENDER))
    print(f"local run: {time.monotonic() - t0:.0f} s")
    assert record["state"] == "succeeded"
    assert s3_rows == rows_by_name(f"{tmp_path / 'local-out'}/data/*.parquet")


def test_job_runtime_env_may_set_the_aws_variables(head, s3, s3_endpoint, tiny_model):
    """AWS_* given to the job itself (`--runtime-env-json '{"env_vars": ...}'`), not only to the head."""
    job, status = submit_job(head, [f"s3://{BUCKET}/in/invoice.pdf", *FLAGS, "--model", str(tiny_model),
                                    "--out", f"s3://{BUCKET}/out-runtime-env"],
                             runtime_env={"env_vars": aws_env(s3_endpoint)}, timeout=300)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert status == "SUCCEEDED"
    assert any(k.startswith("out-runtime-env/data/part-") for k in keys_under(s3, "out-runtime-env/"))
