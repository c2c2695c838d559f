"""The S3 storage against a real S3-compatible server on loopback (moto in server mode, started
by tests/s3server.py unless ADAPT_TEST_S3_ENDPOINT names one)."""
import hashlib
import io
import os
import socket
import zipfile

import pytest

import s3server
from app.config import get_settings
from app.jobs.archive import zip_stream
from app.storage.s3 import S3Storage
from workers.resume import ResumeCheckpoints

MiB = 1 << 20


def make_storage(tmp_path, bucket: str | None = None, endpoint: str | None = None,
                 **kw) -> S3Storage:
    return S3Storage(f"s3://{bucket or s3server.new_bucket()}/pre/fix", tmp_path / "data",
                     endpoint_url=endpoint or s3server.endpoint(), region=s3server.REGION,
                     chunk_bytes=5 * MiB, **kw)


@pytest.fixture
def s3(tmp_path):
    return make_storage(tmp_path)


def staged(storage: S3Storage, data: bytes, name: str = "upload"):
    path = storage.staging_dir() / name
    path.write_bytes(data)
    return path


def test_file_round_trip_and_delete(s3):
    src = staged(s3, b"text,label\nhello,pos\n")
    assert s3.put_file("datasets/t1/ds_1/data.csv", src) == 21
    assert not src.exists()  # consumed, as the local storage moves it
    assert s3.exists("datasets/t1/ds_1/data.csv") and s3.size("datasets/t1/ds_1/data.csv") == 21
    assert s3.open("datasets/t1/ds_1/data.csv").read() == b"text,label\nhello,pos\n"
    assert s3.fetch("datasets/t1/ds_1/data.csv").read_bytes() == b"text,label\nhello,pos\n"
    s3.delete("datasets/t1/ds_1/data.csv")
    assert not s3.exists("datasets/t1/ds_1/data.csv")
    with pytest.raises(FileNotFoundError):
        s3.open("datasets/t1/ds_1/data.csv")
    with pytest.raises(ValueError):
        s3.exists("datasets/../../escape")


def test_a_large_upload_goes_in_parts_and_streams_back(s3):
    data = os.urandom(12 * MiB)  # > the 5 MiB part size: a multipart upload of 3 parts
    s3.put_file("datasets/t1/ds_big/data.csv", staged(s3, data))
    head = s3.client.head_object(Bucket=s3.bucket, Key="pre/fix/datasets/t1/ds_big/data.csv")
    assert head["ETag"].strip('"').endswith("-3")  # S3's ETag of a 3-part multipart upload
    digest, body = hashlib.sha256(), s3.open("datasets/t1/ds_big/data.csv")
    while chunk := body.read(MiB):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_directories_replace_fetch_and_delete(s3):
    first = s3.staging_dir()
    (first / "sub").mkdir()
    (first / "config.json").write_text("{}")
    (first / "sub" / "old.bin").write_bytes(b"old")
    assert s3.put_dir("checkpoints/t1/job_1/ckpt_1", first) == 5
    assert not first.exists()
    again = s3.staging_dir()
    (again / "config.json").write_text('{"v": 2}')
    s3.put_dir("checkpoints/t1/job_1/ckpt_1", again)  # a re-run of the step: the new copy wins
    assert s3.list("checkpoints/t1/job_1/ckpt_1") == ["config.json"]
    local = s3.fetch("checkpoints/t1/job_1/ckpt_1")
    assert local.is_dir() and (local / "config.json").read_text() == '{"v": 2}'
    assert s3.exists("checkpoints/t1/job_1/ckpt_1")
    s3.delete("checkpoints/t1/job_1/ckpt_1")
    assert not s3.exists("checkpoints/t1/job_1/ckpt_1")
    assert not local.exists()  # the cached copy went too


def test_the_read_cache_is_bounded_least_recently_used_first(tmp_path):
    s3 = make_storage(tmp_path, cache_bytes=2 * MiB + 10)
    for name in "abc":
        s3.put_file(f"datasets/t1/{name}/data.csv", staged(s3, os.urandom(MiB)))
    a = s3.fetch("datasets/t1/a/data.csv")
    b = s3.fetch("datasets/t1/b/data.csv")
    assert s3.fetch("datasets/t1/a/data.csv") == a  # a hit: a is now the most recently used
    c = s3.fetch("datasets/t1/c/data.csv")  # 3 MiB > the bound: b, least recently used, goes
    assert a.exists() and c.exists() and not b.exists()
    cached = sum(p.stat().st_size for p in s3.cache.root.rglob("*") if p.is_file())
    assert cached <= 2 * MiB + 10
    # a hit is served from the cache, with no request to the store
    s3.client.delete_object(Bucket=s3.bucket, Key="pre/fix/datasets/t1/a/data.csv")
    assert s3.fetch("datasets/t1/a/data.csv").stat().st_size == MiB


def test_resume_checkpoints_are_continued_by_another_worker_from_the_store(tmp_path):
    bucket = s3server.new_bucket()
    one, two = make_storage(tmp_path / "one", bucket), make_storage(tmp_path / "two", bucket)
    saver = ResumeCheckpoints(one, "t1", "job_1", tmp_path / "work-one")
    for step in (10, 20, 30):  # the recipe keeps the newest 2 locally
        path = saver.dir / f"step-{step:08d}"
        path.mkdir(parents=True)
        (path / "weights.safetensors").write_bytes(b"w%d" % step)
        (path / "state.json").write_text(f'{{"step": {step}}}')
        if step == 30:
            (saver.dir / "step-00000010").rename(saver.dir / ".gone")
        saver.publish(path)
    # a half-uploaded newer one (no state.json) is not complete: never resumed from
    one.client.put_object(Bucket=bucket, Key="pre/fix/jobs/t1/job_1/resume/step-00000040/"
                          "weights.safetensors", Body=b"partial")
    resumed = ResumeCheckpoints(two, "t1", "job_1", tmp_path / "work-two").latest()
    assert resumed.name == "step-00000030"
    assert (resumed / "weights.safetensors").read_bytes() == b"w30"
    assert sorted({n.split("/")[0] for n in one.list("jobs/t1/job_1/resume")}) == [
        "step-00000020", "step-00000030", "step-00000040"]  # step 10 was pruned from the store


def test_checkpoint_zip_streams_from_the_store(s3):
    src = s3.staging_dir()
    (src / "model.safetensors").write_bytes(os.urandom(3 * MiB))
    (src / "adapt.json").write_text('{"task": "text-classification"}')
    expected = {p.name: p.read_bytes() for p in src.iterdir()}
    s3.put_dir("checkpoints/t1/job_1/ckpt_2", src)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(zip_stream(s3, "checkpoints/t1/job_1/ckpt_2",
                                                             chunk=MiB))))
    assert archive.testzip() is None
    assert {n: archive.read(n) for n in archive.namelist()} == expected


def test_ping_fails_for_a_missing_bucket_or_an_unreachable_endpoint(tmp_path):
    make_storage(tmp_path).ping()
    with pytest.raises(ConnectionError, match="no-such-bucket"):
        make_storage(tmp_path, bucket="no-such-bucket-here").ping()
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ConnectionError):
        make_storage(tmp_path, bucket="any", endpoint=closed).ping()


@pytest.mark.parametrize("where", ["missing bucket", "unreachable endpoint"])
def test_readyz_is_503_naming_storage_when_the_store_cannot_be_reached(client, where):
    settings = get_settings()
    before = settings.storage_url, settings.s3_endpoint_url
    endpoint = s3server.endpoint()
    if where == "unreachable endpoint":
        with socket.socket() as s:  # a loopback port nobody listens on
            s.bind(("127.0.0.1", 0))
            endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    settings.storage_url = f"s3://absent-bucket-{where.split()[0]}/x"
    settings.s3_endpoint_url = endpoint
    try:
        res = client.get("/readyz")
    finally:
        settings.storage_url, settings.s3_endpoint_url = before
    assert res.status_code == 503 and res.json()["failed"] == ["storage"]
    assert f"absent-bucket-{where.split()[0]}" in res.json()["checks"]["storage"]
    assert client.get("/readyz").status_code == 200
