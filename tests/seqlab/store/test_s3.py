"""Reading and writing through s3:// against a local S3 server (moto, loopback only)."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import seqlab

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint,
                                                                    "region_name": "us-east-1"}}
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    for bucket in ("corpus", "results"):
        client.create_bucket(Bucket=bucket)
    fs = s3fs.S3FileSystem(**options)
    yield fs, options
    server.stop()


def test_annotate_from_and_to_s3(s3, ner_model, corpus_rows):
    fs, options = s3
    with fs.open("corpus/docs/part-0.parquet", "wb") as handle:
        pq.write_table(pa.Table.from_pylist(corpus_rows[:30]), handle)
    manifest = seqlab.annotate("s3://corpus/docs", "s3://results/run1", model=str(ner_model),
                               id_column="id", max_length=64, stride=16,
                               storage_options=options)
    assert manifest["rows"] == {"in": 30, "out": 30}
    with fs.open("results/run1/documents/part-00000-0000000000.parquet", "rb") as handle:
        docs = pq.read_table(handle)
    assert docs.num_rows == 30 and set(docs.column("status").to_pylist()) == {"ok"}
    assert fs.exists("results/run1/_manifest.json")
    assert fs.exists("results/run1/aggregates/part-00000.parquet")
    assert not [p for p in fs.find("results/run1") if ".tmp-" in p]


def test_incremental_runs_on_s3_tell_changed_files_by_etag(s3, ner_model, corpus_rows):
    fs, options = s3

    def put(name: str, rows: list[dict]) -> None:
        with fs.open(f"corpus/daily/{name}", "wb") as handle:
            pq.write_table(pa.Table.from_pylist(rows), handle)

    run = dict(model=str(ner_model), id_column="id", max_length=64, stride=16,
               incremental=True, storage_options=options)
    put("a.parquet", corpus_rows[:10])
    put("b.parquet", corpus_rows[10:20])
    first = seqlab.annotate("s3://corpus/daily", "s3://results/table", **run)
    assert all(i["identity"][1].strip('"') for i in first["inputs"])  # the ETag
    fs.invalidate_cache()
    put("b.parquet", corpus_rows[10:15])  # the same name, other bytes: another ETag
    second = seqlab.annotate("s3://corpus/daily", "s3://results/table", **run)
    assert [i["fragment"] for i in second["inputs"]] == ["b.parquet"]
    assert second["incremental"]["unchanged"] == 1
    fs.invalidate_cache()
    live = [p for p in fs.find("results/table/documents") if p.endswith(".parquet")]
    ids = []
    for path in live:
        with fs.open(path, "rb") as handle:
            ids += pq.read_table(handle).column("doc_id").to_pylist()
    assert sorted(ids) == sorted(r["id"] for r in corpus_rows[:15])
    assert all(fs.exists(f"results/table/_superseded/{second['run_id']}/{p}")
               for p in second["incremental"]["superseded"])
    assert fs.exists(f"results/table/_runs/{second['run_id']}/_SUCCESS")



def test_the_lease_is_created_only_if_absent_on_s3(s3):
    from seqlab.store.lease import LEASE, acquire, read_holder
    from seqlab.store.outdir import OutputDir

    fs, options = s3
    out = OutputDir("s3://results/leased", options)
    lease = acquire(out, "local")
    with pytest.raises(FileExistsError):  # S3 itself refuses a second create (If-None-Match)
        with fs.open(f"results/leased/{LEASE}", "xb") as handle:
            handle.write(b"{}")
    assert read_holder(out).holder == lease.holder.holder
    lease.release()
    fs.invalidate_cache()
    assert not fs.exists(f"results/leased/{LEASE}")
