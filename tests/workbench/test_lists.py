"""Every list, in the API and on the pages: paginated, filtered, ordered, and a fixed number of queries per page."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from datasets.models import Dataset
from jobs.models import Snapshot, TrainingJob
from networks.models import Network
from results.models import BatchClassification, Compression, Evaluation, Export

pytestmark = pytest.mark.django_db


def dataset_of(owner, name: str = "digits", status: str = "ready") -> Dataset:  # type: ignore[no-untyped-def]
    return Dataset.objects.create(owner=owner, name=name, source="example", source_name="x", image_width=8,
                                  image_height=8, channels=3, resize_mode="squash", val_percent=10, test_percent=0,
                                  seed=0, status=status, classes=["a", "b"],
                                  split_counts={"train": 9, "val": 1, "test": 0})


def jobs_of(owner, count: int, dataset: Dataset | None = None, **fields) -> list[TrainingJob]:  # type: ignore[no-untyped-def]
    """Jobs made directly in the database, each with two snapshots, as a finished run leaves them."""
    dataset = dataset or dataset_of(owner)
    jobs = [TrainingJob.objects.create(owner=owner, dataset=dataset, name=f"job {i}", network="mlp",
                                       network_spec={}, status="done", **fields) for i in range(count)]
    Snapshot.objects.bulk_create([Snapshot(job=job, epoch=epoch, path=f"snapshots/epoch_{epoch:g}.safetensors")
                                  for job in jobs for epoch in (1.0, 2.0)])
    return jobs


def work_of(job: TrainingJob, count: int) -> None:
    """`count` evaluations, exports, compressions and batches of one job, each on its own snapshot."""
    start = job.snapshots.count()
    for i in range(start, start + count):
        snapshot = job.snapshots.create(epoch=10.0 + i, path=f"snapshots/epoch_{10 + i}.safetensors")
        Evaluation.objects.create(job=job, snapshot=snapshot, split="val", status="done")
        Export.objects.create(job=job, snapshot=snapshot, format="onnx", status="done", path="exports/m.onnx")
        # done with a package: the row's download link reads the job
        Compression.objects.create(job=job, snapshot=snapshot, method="prune", status="done",
                                   result={"package": "model.zip"}, path="compressions/1/model.pt")
        BatchClassification.objects.create(job=job, snapshot=snapshot, name=f"batch {i}", source="list")


def queries(client, url: str) -> int:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return len(captured)


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


JOB_LISTS = ["evaluations", "exports", "compressions", "classify-many"]


# --- the page shape -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["datasets/", "jobs/", "networks/"] + [f"jobs/{{job}}/{name}/" for name in JOB_LISTS])
def test_it_answers_every_list_as_a_page(alice, alice_api, path):
    job = jobs_of(alice, 1)[0]
    work_of(job, 2)

    body = alice_api.get(f"/api/v1/{path.format(job=job.pk)}").json()

    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == len(body["results"]) > 0
    assert body["next"] is None and body["previous"] is None


def test_it_gives_fifty_a_page_by_default_and_links_the_next(alice, alice_api):
    jobs_of(alice, 60)

    first = alice_api.get("/api/v1/jobs/").json()
    second = alice_api.get(first["next"]).json()

    assert (first["count"], len(first["results"]), len(second["results"])) == (60, 50, 10)
    assert "page=2" in first["next"] and second["next"] is None and second["previous"] is not None
    assert {j["id"] for j in first["results"]}.isdisjoint(j["id"] for j in second["results"])


def test_it_honours_page_size_up_to_five_hundred(alice, alice_api):
    Network.objects.bulk_create([Network(owner=alice, name=f"net {i:03}", spec={}) for i in range(510)])

    small = alice_api.get("/api/v1/networks/?page_size=7&page=2").json()
    capped = alice_api.get("/api/v1/networks/?page_size=1000").json()

    assert len(small["results"]) == 7 and "page_size=7" in small["next"]
    assert len(capped["results"]) == 500 and capped["count"] > 510


def test_it_answers_a_page_past_the_end_with_a_json_404(alice, alice_api):
    jobs_of(alice, 3)

    response = alice_api.get("/api/v1/jobs/?page=2")

    assert response.status_code == 404
    assert response.json() == {"error": "Invalid page.", "detail": {}}


# --- a fixed number of queries ----------------------------------------------------------------

@pytest.mark.parametrize("path", ["datasets/", "jobs/", "networks/"])
def test_it_reads_a_top_level_list_in_the_same_queries_for_5_rows_as_for_60(alice, alice_api, path):
    for i in range(5):
        dataset_of(alice, name=f"d{i}")
        Network.objects.create(owner=alice, name=f"n{i}", spec={})
    jobs_of(alice, 5)
    few = queries(alice_api, f"/api/v1/{path}")
    for i in range(55):
        dataset_of(alice, name=f"e{i}")
        Network.objects.create(owner=alice, name=f"m{i}", spec={})
    jobs_of(alice, 55)

    assert queries(alice_api, f"/api/v1/{path}") == few


@pytest.mark.parametrize("name", JOB_LISTS)
def test_it_reads_a_jobs_result_list_in_the_same_queries_for_5_rows_as_for_60(alice, alice_api, name):
    job = jobs_of(alice, 1)[0]
    work_of(job, 5)
    few = queries(alice_api, f"/api/v1/jobs/{job.pk}/{name}/")
    work_of(job, 55)

    assert queries(alice_api, f"/api/v1/jobs/{job.pk}/{name}/") == few


def test_it_lists_each_jobs_snapshots_from_one_query(alice, alice_api):
    jobs_of(alice, 3)

    body = alice_api.get("/api/v1/jobs/").json()

    assert [j["snapshots"] for j in body["results"]] == [[1.0, 2.0]] * 3


@pytest.mark.parametrize("path", ["/jobs/", "/datasets/", "/networks/"])
def test_it_renders_a_list_page_in_the_same_queries_for_5_rows_as_for_60(alice, path):
    client = logged_in(alice)
    for i in range(5):
        Network.objects.create(owner=alice, name=f"n{i}", spec={})
    jobs_of(alice, 5)
    few = queries(client, path)
    for i in range(55):
        Network.objects.create(owner=alice, name=f"m{i}", spec={})
    jobs_of(alice, 55)

    assert queries(client, path) == few


@pytest.mark.parametrize("query", ["by_group=1&ordering=-best_val_accuracy", "network=mlp&group=g1&search=job",
                                   "ordering=latest_train_loss"])
def test_it_renders_the_jobs_table_grouped_or_filtered_in_the_same_queries_for_5_rows_as_for_60(alice, query):
    client = logged_in(alice)
    for i in range(5):
        jobs_of(alice, 1, group=f"g{i % 3}", best={"val_accuracy": i / 10}, notes="a note")
    few = queries(client, f"/jobs/?{query}")
    for i in range(55):
        jobs_of(alice, 1, group=f"g{i % 7}", best={"val_accuracy": i / 100}, latest={"train_loss": 1.0})

    assert queries(client, f"/jobs/?{query}") == few


@pytest.mark.parametrize("query", ["group=g1", "network=mlp&ordering=-best_val_loss"])
def test_it_filters_the_jobs_api_by_group_and_network_in_the_same_queries_for_5_rows_as_for_60(alice, alice_api,
                                                                                               query):
    jobs_of(alice, 5, group="g1")
    few = queries(alice_api, f"/api/v1/jobs/?{query}")
    jobs_of(alice, 55, group="g1")

    assert queries(alice_api, f"/api/v1/jobs/?{query}") == few


# --- filters and ordering on jobs ---------------------------------------------------------------

def names(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content[:300]
    return [j["name"] for j in response.json()["results"]]


def test_it_filters_jobs_by_status_dataset_and_name(alice, alice_api):
    digits, shapes = dataset_of(alice), dataset_of(alice, name="shapes")
    jobs_of(alice, 2, dataset=digits)
    TrainingJob.objects.create(owner=alice, dataset=shapes, name="Wide ResNet", network="mlp", network_spec={},
                               status="error")

    assert names(alice_api.get("/api/v1/jobs/?status=error")) == ["Wide ResNet"]
    assert sorted(names(alice_api.get(f"/api/v1/jobs/?dataset={digits.pk}"))) == ["job 0", "job 1"]
    assert names(alice_api.get("/api/v1/jobs/?search=resnet")) == ["Wide ResNet"]
    assert names(alice_api.get(f"/api/v1/jobs/?search=job&dataset={shapes.pk}")) == []


def test_it_orders_jobs_by_best_accuracy_with_the_unvalidated_last(alice, alice_api):
    dataset = dataset_of(alice)
    for name, best in [("none", {}), ("low", {"val_accuracy": 0.5, "val_loss": 0.9}),
                       ("high", {"val_accuracy": 0.95, "val_loss": 0.1}), ("mid", {"val_accuracy": 0.85, "val_loss": 0.4})]:
        TrainingJob.objects.create(owner=alice, dataset=dataset, name=name, network="mlp", network_spec={}, best=best)

    assert names(alice_api.get("/api/v1/jobs/?ordering=-best_val_accuracy")) == ["high", "mid", "low", "none"]
    assert names(alice_api.get("/api/v1/jobs/?ordering=best_val_accuracy")) == ["low", "mid", "high", "none"]
    assert names(alice_api.get("/api/v1/jobs/?ordering=best_val_loss")) == ["high", "mid", "low", "none"]
    assert names(alice_api.get("/api/v1/jobs/?ordering=name")) == ["high", "low", "mid", "none"]
    assert names(alice_api.get("/api/v1/jobs/?ordering=-created_at")) == ["mid", "high", "low", "none"]


@pytest.mark.parametrize("query, field, allowed", [("ordering=best", "ordering", "-best_val_loss"),
                                                    ("status=finished", "status", "interrupted")])
def test_it_refuses_an_unknown_ordering_or_status_naming_the_allowed_ones(alice_api, query, field, allowed):
    response = alice_api.get(f"/api/v1/jobs/?{query}")

    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error", "detail"} and field in body["detail"]
    assert body["error"].startswith(f"{field}: ") and allowed in body["error"]


def test_it_filters_and_orders_datasets(alice, alice_api):
    dataset_of(alice, name="beta")
    dataset_of(alice, name="Alpha", status="error")

    assert names(alice_api.get("/api/v1/datasets/?ordering=name")) == ["Alpha", "beta"]
    assert names(alice_api.get("/api/v1/datasets/?status=error")) == ["Alpha"]
    assert names(alice_api.get("/api/v1/datasets/?search=ET")) == ["beta"]
    assert alice_api.get("/api/v1/datasets/?ordering=size").status_code == 400


# --- the Jobs page --------------------------------------------------------------------------

def test_it_links_the_pages_of_the_jobs_page_keeping_the_filter(alice):
    jobs_of(alice, 60)

    page = logged_in(alice).get("/jobs/?status=done&ordering=name&page=2").content.decode()

    assert "job 9" in page and "job 0" not in page  # by name, the second page starts after the 50th
    assert 'href="?status=done&amp;ordering=name&amp;page=1"' in page
    assert "51–60 of 60" in page
    assert 'href="?status=done&amp;ordering=-name"' in page  # the Name header reverses the order


def test_it_filters_the_jobs_page_by_status_and_ignores_an_unknown_one(alice):
    jobs_of(alice, 1)
    TrainingJob.objects.create(owner=alice, dataset=Dataset.objects.get(), name="failed run", network="mlp",
                               network_spec={}, status="error")
    client = logged_in(alice)

    failed = client.get("/jobs/?status=error").content.decode()
    unknown = client.get("/jobs/?status=bogus&ordering=bogus")

    assert "failed run" in failed and "job 0" not in failed
    assert unknown.status_code == 200 and "job 0" in unknown.content.decode()


# --- ownership ------------------------------------------------------------------------------

def test_it_never_lists_another_users_rows(alice, bob, bob_api):
    jobs_of(alice, 3)
    Network.objects.create(owner=alice, name="alices net", spec={})
    own = jobs_of(bob, 1, dataset=dataset_of(bob, name="bobs digits"))[0]
    TrainingJob.objects.filter(pk=own.pk).update(name="bobs run")

    listed = {path: bob_api.get(f"/api/v1/{path}").json()["results"] for path in ("jobs/", "datasets/", "networks/")}
    page = logged_in(bob).get("/jobs/").content.decode()

    assert [j["id"] for j in listed["jobs/"]] == [own.pk]
    assert [d["name"] for d in listed["datasets/"]] == ["bobs digits"]
    assert "alices net" not in [n["name"] for n in listed["networks/"]]
    assert bob_api.get(f"/api/v1/jobs/?dataset={Dataset.objects.filter(owner=alice).first().pk}").json()["count"] == 0
    assert "bobs run" in page and "job 0" not in page
