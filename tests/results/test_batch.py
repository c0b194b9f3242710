"""Classify many: zips and server lists through a real worker, the CSV, and every refusal."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from django.conf import settings

from results.batch import CSV_HEADER
from results.models import BatchClassification
from tests.conftest import make_image, wait_for, zip_bytes
from tests.jobs.test_training_flow import ready_colours, start, wait_job

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def fresh_images(per_class: int, *, prefix: str = "", ext: str = "png") -> dict[str, bytes]:
    """Images the job never saw in training (other noise seeds), under `<prefix><class>/`."""
    return {f"{prefix}{name}/{i}.{ext}": make_image(colour, noise_seed=1000 + i)
            for name, colour in COLOURS.items() for i in range(per_class)}


def upload(data: bytes, name: str = "images.zip") -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def trained_job(client):  # type: ignore[no-untyped-def]
    job = wait_job(start(client, ready_colours(client), epochs=3)["id"])
    assert job.status == "done", job.error
    return job


def wait_batch(pk: int) -> BatchClassification:
    batch = wait_for(lambda: (b := BatchClassification.objects.get(pk=pk)).is_finished and b, 120, "the batch")
    assert batch.status == "done", batch.error  # type: ignore[union-attr]
    return batch  # type: ignore[return-value]


def csv_rows(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    text = b"".join(response).decode()
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == CSV_HEADER
    return list(reader)


# --- through the real worker ----------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_it_classifies_a_zip_labelled_by_its_folders(celery_worker, alice_api, bob_api, client, alice):
    job = trained_job(alice_api)
    members = {**fresh_images(10, prefix="holiday/"), "holiday/notes.txt": b"not an image",
               "holiday/red/README.md": b"# nope"}

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify-many/",
                              {"archive": upload(zip_bytes(members)), "name": "Holiday"}, format="multipart")

    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "queued" and response.json()["has_labels"] is True
    batch = wait_batch(response.json()["id"])
    result = batch.result
    assert result["top1"] >= 0.9 and result["count"] == 30 and result["ignored"] == 2
    client.force_login(alice)
    rows = csv_rows(client.get(f"/jobs/{job.pk}/classify-many/{batch.pk}/results.csv"))
    assert len(rows) == 30 and {r["file"] for r in rows} == {n for n in members if n.endswith(".png")}
    assert all(r["true_label"] == r["file"].split("/")[1] and not r["error"] for r in rows)
    hits1 = [r["top1_label"] == r["true_label"] for r in rows]
    hits5 = [r["true_label"] in {r[f"top{k}_label"] for k in range(1, 6)} for r in rows]
    assert result["top1"] == pytest.approx(np.mean(hits1)) and result["top5"] == pytest.approx(np.mean(hits5))
    classes = result["classes"]
    confusion = np.zeros((3, 3), dtype=int)
    for r in rows:
        confusion[classes.index(r["true_label"]), classes.index(r["top1_label"])] += 1
    assert result["confusion"] == confusion.tolist()
    per_class = {c: np.mean([h for h, r in zip(hits1, rows) if r["true_label"] == c]) for c in classes}
    assert {p["class"]: p["accuracy"] for p in result["per_class"]} == pytest.approx(per_class)
    probabilities = [float(r["top1_probability"]) + float(r["top2_probability"]) + float(r["top3_probability"])
                     for r in rows]
    assert probabilities == pytest.approx([1.0] * 30, abs=1e-4)

    page = client.get(f"/jobs/{job.pk}/classify-many/{batch.pk}/").content.decode()
    assert "top-1 accuracy" in page and "Confusion matrix" in page and "2</span><span class=\"muted\">non-image" in page
    thumb = client.get(f"/jobs/{job.pk}/classify-many/{batch.pk}/thumbs/0.png")
    assert thumb.status_code == 200 and b"".join(thumb).startswith(b"\x89PNG")
    assert alice_api.get(f"/api/v1/jobs/{job.pk}/classify-many/{batch.pk}/results.csv").status_code == 200
    assert bob_api.get(f"/api/v1/jobs/{job.pk}/classify-many/{batch.pk}/").status_code == 404
    assert bob_api.get(f"/api/v1/jobs/{job.pk}/classify-many/{batch.pk}/results.csv").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_it_classifies_a_list_of_server_paths_with_labels(celery_worker, alice_api):
    job = trained_job(alice_api)
    root = settings.DATA_DIR / "server-root" / f"list-{job.pk}"
    lines = ["# colours, one per line", ""]
    for k, (name, data) in enumerate(fresh_images(4).items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        separator = ("\t", ",", " ")[k % 3]
        lines.append(f"{path if k % 2 else path.relative_to(settings.DATA_DIR / 'server-root')}{separator}"
                     f"{name.split('/')[0]}")

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify-many/", {"listing": "\n".join(lines)},
                              format="multipart")

    assert response.status_code == 201, response.json()
    batch = wait_batch(response.json()["id"])
    body = alice_api.get(f"/api/v1/jobs/{job.pk}/classify-many/{batch.pk}/").json()
    assert body["status"] == "done" and body["source"] == "list" and body["has_labels"] is True
    assert body["result"]["count"] == 12 and body["result"]["scored"] == 12 and body["result"]["top1"] >= 0.9
    assert body["result"]["rows"][0]["true"] in COLOURS and len(body["result"]["rows"][0]["top"]) == 3


@pytest.mark.django_db(transaction=True)
def test_it_reports_a_corrupt_image_in_its_row_and_classifies_the_rest(celery_worker, alice_api):
    job = trained_job(alice_api)
    members = {f"{i}.png": make_image((30, 200, 40), noise_seed=i) for i in range(5)}
    members["broken.png"] = b"\x89PNG\r\n\x1a\n this is not really a PNG"

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/classify-many/", {"archive": upload(zip_bytes(members))},
                              format="multipart")

    assert response.status_code == 201, response.json()
    batch = wait_batch(response.json()["id"])
    assert batch.has_labels is False and "top1" not in batch.result
    assert (batch.result["count"], batch.result["classified"], batch.result["failed"]) == (6, 5, 1)
    rows = {r["file"]: r for r in batch.result["rows"]}
    assert "Not a usable image" in rows["broken.png"]["error"] and rows["broken.png"]["top"] == []
    assert all(rows[f"{i}.png"]["top"][0][0] == "green" and not rows[f"{i}.png"]["error"] for i in range(5))


# --- refusals, before anything is queued ------------------------------------------------------------

@pytest.fixture
def done_job(alice):  # type: ignore[no-untyped-def]
    from datasets.models import Dataset
    from jobs.models import Snapshot, TrainingJob

    dataset = Dataset.objects.create(owner=alice, name="d", source="example", source_name="x", image_width=8,
                                     image_height=8, channels=3, resize_mode="squash", val_percent=10,
                                     test_percent=0, seed=0, status="ready", classes=["blue", "green", "red"],
                                     split_counts={"train": 9, "val": 1, "test": 0})
    job = TrainingJob.objects.create(owner=alice, dataset=dataset, name="j", network="mlp", network_spec={},
                                     status="done")
    Snapshot.objects.create(job=job, epoch=1.0, path="snapshots/epoch_1.safetensors")
    return job


def server_file(name: str) -> str:
    path = settings.DATA_DIR / "server-root" / "refusals" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_image((220, 30, 30)))
    return str(path)


def post(client, job, **fields):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/jobs/{job.pk}/classify-many/", fields, format="multipart")


@pytest.mark.django_db
def test_it_refuses_unknown_labels_naming_the_line_and_the_label(alice_api, done_job):
    listing = f"# header\n{server_file('a.png')}\tred\n\n{server_file('b.png')},purple\n"

    response = post(alice_api, done_job, listing=listing)

    assert response.status_code == 400
    message = response.json()["detail"]["listing"][0]
    assert "Line 4" in message and "'purple'" in message and "blue, green, red" in message
    assert not BatchClassification.objects.exists()


@pytest.mark.django_db
def test_it_refuses_paths_outside_the_allowed_roots(alice_api, done_job, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(make_image((1, 2, 3)))

    for written in (str(outside), "../../etc/passwd", f"{server_file('ok.png')}\n../{outside.name}"):
        response = post(alice_api, done_job, listing=written)
        assert response.status_code == 400, written
        assert "outside the allowed server folders" in response.json()["detail"]["listing"][0]
    missing = post(alice_api, done_job, listing="refusals/nothing-here.png")
    assert missing.status_code == 400
    assert "Line 1" in missing.json()["error"] and "not a file" in missing.json()["error"]


@pytest.mark.django_db
def test_it_refuses_a_list_where_only_some_lines_have_labels(alice_api, done_job):
    listing = upload(f"{server_file('a.png')} red\n{server_file('b.png')}\n".encode(), "list.txt")

    response = post(alice_api, done_job, listing=listing)

    assert response.status_code == 400 and "label on every line or on none" in response.json()["error"]


@pytest.mark.django_db
def test_it_refuses_archives_without_images_and_files_that_are_not_archives(alice_api, done_job):
    only_junk = post(alice_api, done_job, archive=upload(zip_bytes({"a.txt": b"x", "b/c.csv": b"y"})))
    not_archive = post(alice_api, done_job, archive=upload(b"just some text", "list.zip"))
    neither = post(alice_api, done_job, name="nothing")

    assert only_junk.status_code == 400
    assert "holds no images" in only_junk.json()["detail"]["archive"][0]
    assert "2 other files were ignored" in only_junk.json()["error"]
    assert not_archive.status_code == 400 and "not a zip or tar archive" in not_archive.json()["detail"]["archive"][0]
    assert neither.status_code == 400 and "archive" in neither.json()["detail"]


@pytest.mark.django_db
def test_it_refuses_a_job_that_is_not_done(alice_api, done_job):
    done_job.status = "running"
    done_job.save()

    response = post(alice_api, done_job, listing=server_file("a.png"))

    assert response.status_code == 409 and "once it is done" in response.json()["error"]


@pytest.mark.django_db
def test_it_queues_a_valid_list_and_hides_it_from_other_users(alice_api, bob_api, done_job, client, bob):
    response = post(alice_api, done_job, listing=f"{server_file('a.png')}\n{server_file('my photo.png')}")

    assert response.status_code == 201, response.json()
    batch = BatchClassification.objects.get(pk=response.json()["id"])
    assert batch.status == "queued" and batch.has_labels is False and batch.source == "list"
    assert post(bob_api, done_job, listing=server_file("a.png")).status_code == 404
    assert bob_api.get(f"/api/v1/jobs/{done_job.pk}/classify-many/{batch.pk}/").status_code == 404
    client.force_login(bob)
    assert client.get(f"/jobs/{done_job.pk}/classify-many/{batch.pk}/").status_code == 404


@pytest.mark.django_db
def test_it_starts_from_the_job_page_form(client, alice, done_job):
    client.force_login(alice)
    assert 'id="classify-many"' in client.get(f"/jobs/{done_job.pk}/").content.decode()

    started = client.post(f"/jobs/{done_job.pk}/classify-many/", {"listing": f"{server_file('a.png')}, red"})
    refused = client.post(f"/jobs/{done_job.pk}/classify-many/", {"listing": "/etc/passwd"}, follow=True)

    batch = BatchClassification.objects.get()
    assert started.status_code == 302 and started.url == f"/jobs/{done_job.pk}/classify-many/{batch.pk}/"
    assert batch.has_labels is True and batch.name == "List of 1 image"
    page = client.get(started.url).content.decode()
    assert 'data-status="queued"' in page and "js/result_page.js" in page
    assert "outside the allowed server folders" in refused.content.decode()
