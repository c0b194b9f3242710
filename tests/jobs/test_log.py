"""A job's log is rows in the database: any host reads it, with no folder of the job on its disk;
the live stream reads it with an id cursor; it goes with the job."""
from __future__ import annotations

import importlib
import re
import shutil

import pytest

from jobs.models import LogLine
from jobs.selectors import job_log_tail, job_log_text
from jobs.services import append_log
from live.logs import BURST_LINES, TAIL_LINES, LogReader
from tests.results.test_export import _finished_job

pytestmark = pytest.mark.django_db


def texts(lines: list[str]) -> list[str]:
    """The lines without their "HH:MM:SS " stamp (checked)."""
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d .*", line) for line in lines), lines
    return [line.split(" ", 1)[1] for line in lines]


def test_it_shows_the_log_of_a_job_whose_folder_is_gone(alice, alice_api, client):  # type: ignore[no-untyped-def]
    job = _finished_job(alice)
    append_log(job, "Started.")
    append_log(job, "Done.")
    shutil.rmtree(job.folder, ignore_errors=True)  # a web on another host: the worker's disk is not here

    assert texts(alice_api.get(f"/api/v1/jobs/{job.pk}/").json()["log_tail"]) == ["Started.", "Done."]
    client.force_login(alice)
    assert "Done." in client.get(f"/jobs/{job.pk}/").content.decode()
    assert texts(job_log_text(job).splitlines()) == ["Started.", "Done."]
    assert texts(LogReader(job.pk).tail()) == ["Started.", "Done."]
    assert not job.folder.exists()


def test_the_tail_is_the_last_lines_in_one_query(alice, django_assert_num_queries):  # type: ignore[no-untyped-def]
    job = _finished_job(alice)
    for i in range(50):
        append_log(job, f"line {i}")

    with django_assert_num_queries(1):
        tail = job_log_tail(job=job, lines=3)
    assert texts(tail) == ["line 47", "line 48", "line 49"]


def test_the_stream_reads_the_tail_then_what_came_since_at_most_a_burst_s_last_lines(
        alice, django_assert_num_queries):  # type: ignore[no-untyped-def]
    job = _finished_job(alice, status="running")
    reader = LogReader(job.pk)
    assert reader.tail() == [] and reader.appended() == []
    LogLine.objects.bulk_create([LogLine(job=job, at=job.created_at, text=f"line {i}") for i in range(250)])

    assert texts(reader.tail()) == [f"line {i}" for i in range(250 - TAIL_LINES, 250)]
    with django_assert_num_queries(1):
        assert reader.appended() == []
    LogLine.objects.bulk_create([LogLine(job=job, at=job.created_at, text=f"line {i}") for i in range(250, 600)])
    assert texts(reader.appended()) == [f"line {i}" for i in range(600 - BURST_LINES, 600)]
    append_log(job, "one more")
    assert texts(reader.appended()) == ["one more"]


def test_deleting_a_job_deletes_its_log(alice, alice_api):  # type: ignore[no-untyped-def]
    job = _finished_job(alice)
    append_log(job, "Done.")

    assert alice_api.delete(f"/api/v1/jobs/{job.pk}/").status_code == 204
    assert not LogLine.objects.filter(job_id=job.pk).exists()


def test_the_upgrade_copies_a_job_s_log_file_into_rows_once(alice):  # type: ignore[no-untyped-def]
    from django.apps import apps

    upgrade = importlib.import_module("jobs.migrations.0012_log_files_into_rows")
    job = _finished_job(alice)
    job.folder.mkdir(parents=True, exist_ok=True)
    (job.folder / "log.txt").write_text("12:00:00 Started.\nthe rest of a message\n12:00:05 Done.\n")

    upgrade.copy_files(apps, None)
    upgrade.copy_files(apps, None)  # a second run (a migration run again by hand) adds nothing

    assert job_log_text(job) == "12:00:00 Started.\n12:00:00 the rest of a message\n12:00:05 Done.\n"
