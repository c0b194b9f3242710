"""The embedded broker writes messages atomically, so a polling worker never reads half a message."""
from __future__ import annotations

import os
from queue import Empty

import pytest
from kombu import Connection

from workbench import broker


@pytest.fixture
def channel(tmp_path):  # type: ignore[no-untyped-def]
    broker.register()
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path),
               "control_folder": str(tmp_path / "control")}
    with Connection("wbfs://", transport_options=options) as connection:
        yield connection.default_channel


def test_it_ignores_a_message_that_is_still_being_written(channel, tmp_path):
    name = "123_abc.ingest.msg"
    (tmp_path / f"{name}.0f0f.tmp").write_bytes(b"")  # what a writer leaves mid-write

    with pytest.raises(Empty):
        channel._get("ingest")


def test_it_delivers_what_it_wrote_and_leaves_no_temporary_files(channel, tmp_path):
    channel._put("ingest", {"body": "hello"})

    assert [p.suffix for p in tmp_path.iterdir() if p.is_file()] == [".msg"]
    assert channel._get("ingest") == {"body": "hello"}


def test_it_replaces_a_result_file_in_one_step(tmp_path):
    target = tmp_path / "result"
    target.write_bytes(b"old")

    broker.write_atomically(os.fsencode(target), b"new")

    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["result"]


def test_the_result_store_reads_many_answers_with_one_listing_and_is_shared_by_threads(tmp_path):
    from workbench.celery import app

    store = broker.AtomicFilesystemBackend(app=app, url=f"file://{tmp_path}")
    store.set(store.get_key_for_task("answered"), b'{"status": "SUCCESS"}')
    keys = [store.get_key_for_task(task_id) for task_id in ("waiting", "answered", "also-waiting")]

    assert store.mget(keys) == [None, b'{"status": "SUCCESS"}', None]
    assert store.mget([]) == [] and store.thread_safe
