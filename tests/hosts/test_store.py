"""The S3 store and each host's cache of it, on a real S3 API (moto's server in a process)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.hosts.conftest import CREDENTIALS, objects, start_s3_server
from workbench import cache, processes
from workbench.storage import S3Store, model_files, parse, store


def write(path, data: bytes):  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_published_file_is_fetched_back_whole_by_a_host_that_lacks_it(s3_store, bucket, s3_server, settings):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = write(settings.DATA_DIR / "jobs" / "4" / "snapshots" / "epoch_1.safetensors", data)
    s3_store.publish(path)
    assert objects(bucket, s3_server) == {"workbench/jobs/4/snapshots/epoch_1.safetensors": len(data)}

    path.unlink()  # another host: the same name, nothing on its disk
    assert s3_store.fetch(path).read_bytes() == data
    assert not [p for p in path.parent.iterdir() if p.name != path.name], "no temporary left beside it"


def test_fetching_a_file_in_no_store_says_so(s3_store, settings):
    with pytest.raises(FileNotFoundError, match="epoch_9.safetensors is in no store"):
        s3_store.fetch(settings.DATA_DIR / "jobs" / "4" / "snapshots" / "epoch_9.safetensors")


def test_a_folder_is_fetched_once_and_then_read_from_the_cache(s3_store, bucket, s3_server, settings):
    folder = settings.DATA_DIR / "datasets" / "7"
    files = {"train_images.npy": os.urandom(50_000), "mean.npy": b"m" * 100, "thumbs/0_0.png": b"png"}
    for name, data in files.items():
        write(folder / name, data)
    s3_store.publish_folder(folder)
    assert set(objects(bucket, s3_server)) == {f"workbench/datasets/7/{name}" for name in files}

    for name in files:
        (folder / name).unlink()
    s3_store.fetch_folder(folder)
    assert {name: (folder / name).read_bytes() for name in files} == files

    # Whole now: the next use does not ask the store (here: the store no longer has it).
    s3_store.storage.bucket.objects.all().delete()
    assert s3_store.fetch_folder(folder) == folder
    assert (folder / "train_images.npy").read_bytes() == files["train_images.npy"]


def test_a_download_streams_from_the_store_or_goes_to_a_presigned_url(s3_store, settings):
    data = os.urandom(2 * 1024 * 1024 + 5)
    path = write(settings.DATA_DIR / "jobs" / "2" / "exports" / "epoch_3.onnx", data)
    s3_store.publish(path)
    assert b"".join(s3_store.stream(path)) == data
    assert s3_store.download_url(path, "model.onnx") is None  # streamed unless asked

    presigning = S3Store(s3_store.bucket_name, s3_store.prefix, presigned=True)
    url = presigning.download_url(path, "model.onnx")
    assert url is not None and "Signature" in url
    with urllib.request.urlopen(url) as answer:  # what a browser does with the redirect
        assert answer.read() == data
        assert 'filename="model.onnx"' in answer.headers["Content-Disposition"]


def test_a_snapshots_model_files_come_with_it(s3_store, settings):
    job = settings.DATA_DIR / "jobs" / "5"
    weights = write(job / "snapshots" / "epoch_2.safetensors", b"w")
    write(job / "model.json", b"{}")
    write(job / "mean.safetensors", b"mean")
    compressed = write(job / "compressed" / "1" / "model.pt", b"pt")
    write(job / "compressed" / "1" / "model.json", b"{\"c\": 1}")
    write(job / "compressed" / "1" / "mean.safetensors", b"cmean")
    s3_store.publish_folder(job)
    for path in list(job.rglob("*")):
        if path.is_file():
            path.unlink()

    assert model_files(weights).read_bytes() == b"w"
    assert (job / "model.json").read_bytes() == b"{}" and (job / "mean.safetensors").read_bytes() == b"mean"
    assert model_files(compressed).read_bytes() == b"pt"
    assert (job / "compressed" / "1" / "model.json").read_bytes() == b"{\"c\": 1}"


def test_the_cache_drops_the_least_recently_used_clean_entries_that_nobody_holds(s3_store, settings):
    settings.WORKBENCH_CACHE_BYTES = 250_000
    folders = [settings.DATA_DIR / "datasets" / str(pk) for pk in (1, 2, 3, 4)]
    for folder in folders:
        write(folder / "train_images.npy", os.urandom(100_000))
        with cache.working(folder):
            s3_store.publish_folder(folder)
    os.utime(cache._mark(folders[0], ".used"), (1, 1))  # the least recently used
    os.utime(cache._mark(folders[1], ".used"), (2, 2))
    os.utime(cache._mark(folders[2], ".used"), (3, 3))

    with cache.using(folders[0]):  # a training job reads it: never removed under it
        removed = cache.shrink(force=True)
    assert removed == [folders[1], folders[2]]
    assert folders[0].is_dir() and folders[3].is_dir()

    # Gone from this host only: the next use fetches it again.
    assert (s3_store.fetch_folder(folders[1]) / "train_images.npy").stat().st_size == 100_000


def test_an_entry_with_files_not_yet_in_the_store_is_never_evicted(s3_store, settings):
    settings.WORKBENCH_CACHE_BYTES = 0
    folder = settings.DATA_DIR / "jobs" / "8"
    write(folder / "snapshots" / "epoch_1.safetensors", b"x" * 1000)

    class Died(Exception):
        pass

    with pytest.raises(Died), cache.working(folder):  # a writer that died before publishing
        raise Died
    assert cache.shrink(force=True) == []
    assert (folder / "snapshots" / "epoch_1.safetensors").exists()


def test_the_local_store_is_the_data_folder_and_touches_nothing(settings, tmp_path):
    settings.WORKBENCH_STORAGE = "local"
    settings.DATA_DIR = tmp_path
    path = write(tmp_path / "jobs" / "1" / "x.bin", b"abc")
    local = store()
    assert not local.remote
    local.publish(path)
    assert local.fetch(path) == path and local.fetch_folder(path.parent) == path.parent
    assert b"".join(local.stream(path)) == b"abc"
    assert cache.shrink(0, force=True) == [] and path.exists()
    assert not (tmp_path / cache.MARKS).exists()


# --- a store that goes away ------------------------------------------------------------------------

def test_a_snapshot_waits_for_a_store_that_went_away_and_is_recorded_once_it_is_back(tmp_path, settings, monkeypatch):
    from jobs.uploads import SnapshotUploads

    port = processes.free_port()
    proc, url = start_s3_server(tmp_path / "moto-1.log", port)
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": url}.items():
        monkeypatch.setenv(name, value)
    settings.DATA_DIR, settings.WORKBENCH_STORAGE = tmp_path / "host", "s3://comes-and-goes/data"
    job = settings.DATA_DIR / "jobs" / "3"
    for name in ("snapshots/epoch_1.safetensors", "snapshots/epoch_1.optim.safetensors", "snapshots/epoch_1.json",
                 "model.json", "mean.safetensors"):
        write(job / name, os.urandom(1000))
    processes.stop(proc)  # the store is down as the snapshot is reported

    recorded, said, failed = [], [], []
    uploads = SnapshotUploads(job, recorded.append, said=said.append, failed=failed.append, lost=threading.Event())
    uploads.start()
    event = ("snapshot", 1.0, "snapshots/epoch_1.safetensors", 40)
    uploads.put(event)
    deadline = time.monotonic() + 60
    while not said and time.monotonic() < deadline:
        time.sleep(0.1)
    assert said and said[0].startswith("Waiting for the store: could not upload"), said
    assert recorded == []  # not recorded while it is not in the store

    proc, _ = start_s3_server(tmp_path / "moto-2.log", port)  # back (empty: moto keeps nothing)
    try:
        import boto3

        boto3.client("s3", endpoint_url=url).create_bucket(Bucket="comes-and-goes")
        uploads.close()
        assert recorded == [event] and failed == []
        assert said[-1] == "The store answers again; going on."
        assert set(objects("comes-and-goes", url)) == {
            f"data/jobs/3/{name}" for name in ("snapshots/epoch_1.safetensors", "snapshots/epoch_1.optim.safetensors",
                                               "snapshots/epoch_1.json", "model.json", "mean.safetensors")}
    finally:
        processes.stop(proc)


def test_an_upload_the_store_cannot_take_is_refused_saying_why_and_leaves_no_dataset(
        alice_api, colour_zip, settings, monkeypatch, tmp_path):
    from datasets.models import Dataset

    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{processes.free_port()}"}.items():
        monkeypatch.setenv(name, value)
    settings.DATA_DIR, settings.WORKBENCH_STORAGE = tmp_path, "s3://down-bucket/data"
    upload = io.BytesIO(colour_zip)
    upload.name = "colours.zip"
    answer = alice_api.post("/api/v1/datasets/", {"name": "colours", "archive": upload}, format="multipart")
    assert answer.status_code == 503
    assert "could not upload upload.zip" in answer.json()["error"]
    assert not Dataset.objects.exists()
    assert not list((tmp_path / "datasets").glob("*/*"))


# --- bad configuration fails at start, saying what is wrong ---------------------------------------

def test_a_missing_bucket_is_named(s3_server, monkeypatch):
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match="the bucket 'no-such-bucket-here' does not exist"):
        parse("s3://no-such-bucket-here/data").check()


def test_an_unreachable_endpoint_is_named(monkeypatch):
    port = processes.free_port()  # nothing listens there
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=f"endpoint http://127.0.0.1:{port}.*cannot be reached"):
        parse("s3://unreachable-bucket/data").check()


def test_wrong_credentials_are_named(tmp_path, monkeypatch):
    # A server that checks signatures from its first request on.
    proc, url = start_s3_server(tmp_path / "moto-auth.log", INITIAL_NO_AUTH_ACTION_COUNT="0")
    try:
        for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": url}.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ImproperlyConfigured, match="refused the credentials"):
            parse("s3://some-bucket/data").check()
    finally:
        processes.stop(proc)


@pytest.mark.parametrize("value", ["s3://", "ftp://bucket/data", "bucket/data"])
def test_a_malformed_storage_setting_stops_the_settings_from_loading(value):
    env = {**os.environ, "WORKBENCH_STORAGE": value, "DJANGO_SETTINGS_MODULE": "workbench.settings"}
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    assert "WORKBENCH_STORAGE must be `local` or `s3://bucket/prefix`" in done.stderr


def test_check_store_says_whether_the_store_answers(s3_server, bucket, settings, capsys):
    from django.core.management import CommandError, call_command

    settings.WORKBENCH_STORAGE = f"s3://{bucket}/data"
    call_command("check_store")
    assert f"store: s3://{bucket}/data answers" in capsys.readouterr().out

    settings.WORKBENCH_STORAGE = "s3://bucket-nobody-made/data"
    with pytest.raises(CommandError, match="the bucket 'bucket-nobody-made' does not exist") as refused:
        call_command("check_store")
    assert refused.value.returncode == 2


@pytest.mark.django_db
def test_push_to_store_puts_a_one_host_data_folder_into_the_store_once(s3_store, bucket, s3_server, alice, capsys):
    from django.core.management import call_command

    from datasets.models import Dataset

    dataset = Dataset.objects.create(owner=alice, name="old", source="example", source_name="x", image_width=8,
                                     image_height=8, channels=3, resize_mode="squash", val_percent=10,
                                     test_percent=0, seed=0, status="ready", classes=["a", "b"])
    write(dataset.folder / "train_images.npy", b"x" * 5000)
    write(dataset.folder / "thumbs" / "0_0.png", b"png")
    write(dataset.folder / "upload.zip", b"an ingest's source")
    write(dataset.folder / "mean.npy.tmp-1234abcd", b"half a file")
    call_command("push_to_store")
    assert "pushed 2 files" in capsys.readouterr().out
    assert objects(bucket, s3_server) == {f"workbench/datasets/{dataset.pk}/train_images.npy": 5000,
                                          f"workbench/datasets/{dataset.pk}/thumbs/0_0.png": 3}
    call_command("push_to_store")  # again: nothing to send
    assert "pushed 0 files (0.0 MB) of 1 folders" in capsys.readouterr().out
