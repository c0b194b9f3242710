"""`GET /api/v1/compare/`: several jobs' settings, best values and curves, aligned and downsampled."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.models import MetricPoint, TrainingJob
from tests.workbench.test_lists import dataset_of

pytestmark = pytest.mark.django_db

STEPS_PER_EPOCH = 10


def job_with_curves(owner, dataset, name: str, *, epochs: int = 3, lr: float = 0.01, start: float = 1000.0,
                    **fields) -> TrainingJob:  # type: ignore[no-untyped-def]
    """A finished job as the reporter leaves it: a train loss and lr per step, val loss and accuracy per epoch."""
    job = TrainingJob.objects.create(owner=owner, dataset=dataset, name=name, network="mlp", network_spec={},
                                     status="done", epochs=epochs, learning_rate=lr,
                                     best={"val_accuracy": 0.5 + lr, "val_accuracy_epoch": float(epochs)}, **fields)
    points = []
    for step in range(1, epochs * STEPS_PER_EPOCH + 1):
        epoch, when = step / STEPS_PER_EPOCH, start + step * 0.5
        points += [MetricPoint(job=job, split="train", name="loss", epoch=epoch, step=step, value=2.0 / step, time=when),
                   MetricPoint(job=job, split="train", name="lr", epoch=epoch, step=step, value=lr, time=when)]
        if step % STEPS_PER_EPOCH == 0:
            points += [MetricPoint(job=job, split="val", name="loss", epoch=epoch, step=step, value=1.0 / epoch, time=when),
                       MetricPoint(job=job, split="val", name="accuracy", epoch=epoch, step=step, value=epoch / 4,
                                   time=when)]
    MetricPoint.objects.bulk_create(points)
    return job


@pytest.fixture
def three(alice):  # type: ignore[no-untyped-def]
    dataset = dataset_of(alice)
    return [job_with_curves(alice, dataset, "slow", lr=0.001, start=5000.0),
            job_with_curves(alice, dataset, "fast", lr=0.1, batch_size=32, start=9000.0),
            job_with_curves(alice, dataset, "short", epochs=2, start=100.0)]


def compare(client, query: str):  # type: ignore[no-untyped-def]
    response = client.get(f"/api/v1/compare/?{query}")
    assert response.status_code == 200, response.content[:300]
    return response.json()


def test_it_returns_each_jobs_curves_aligned_by_epoch(alice_api, three):
    body = compare(alice_api, "jobs=" + ",".join(str(j.pk) for j in three))

    assert [j["name"] for j in body["jobs"]] == ["slow", "fast", "short"]
    slow, fast, short = body["jobs"]
    assert set(slow["series"]) == {"train_loss", "val_loss", "val_accuracy", "lr"}
    # The same x is the same epoch in every job: the val points sit on the epoch ends.
    assert [x for x, _ in slow["series"]["val_accuracy"]] == [x for x, _ in fast["series"]["val_accuracy"]] == [1, 2, 3]
    assert [x for x, _ in short["series"]["val_loss"]] == [1, 2]
    assert slow["series"]["train_loss"][:2] == [[0.1, 2.0], [0.2, 1.0]]
    assert {v for _, v in fast["series"]["lr"]} == {0.1}
    assert len(slow["series"]["train_loss"]) == 30


def test_it_echoes_every_setting_and_the_best_values(alice_api, three):
    body = compare(alice_api, f"jobs={three[1].pk}")

    fast = body["jobs"][0]
    assert fast["settings"]["batch_size"] == 32 and fast["settings"]["learning_rate"] == 0.1
    assert {"dataset", "network", "epochs", "optimizer", "lr_policy", "seed", "device", "group"} <= set(fast["settings"])
    assert fast["best"] == {"val_accuracy": 0.6, "val_accuracy_epoch": 3.0}
    assert fast["status"] == "done" and fast["cursor"] == MetricPoint.objects.filter(job=three[1]).latest("pk").pk


@pytest.mark.parametrize("axis, expected", [("step", [10, 20, 30]), ("time", [4.5, 9.5, 14.5])])
def test_it_puts_steps_or_seconds_since_the_first_point_on_the_x_axis(alice_api, three, axis, expected):
    body = compare(alice_api, f"jobs={three[0].pk},{three[1].pk}&x={axis}")

    for job in body["jobs"]:  # each job's clock starts at its own first point: different start times align
        assert [x for x, _ in job["series"]["val_accuracy"]] == expected
    assert body["jobs"][0]["series"]["train_loss"][0][0] == (1 if axis == "step" else 0.0)


def test_it_downsamples_long_curves_keeping_their_ends(alice_api, three):
    body = compare(alice_api, f"jobs={three[0].pk}&max_points=8")

    curve = body["jobs"][0]["series"]["train_loss"]
    assert len(curve) <= 8 and body["jobs"][0]["downsampled"]
    assert curve[0] == [0.1, 2.0] and curve[-1][0] == 3.0
    assert len(body["jobs"][0]["series"]["val_accuracy"]) == 3  # a short curve stays whole


def test_it_compares_a_group(alice, alice_api, three):
    TrainingJob.objects.filter(pk__in=[three[0].pk, three[2].pk]).update(group="lr search")

    body = compare(alice_api, "group=lr search")

    assert [j["name"] for j in body["jobs"]] == ["slow", "short"]


def test_it_reads_a_fixed_number_of_queries_per_job(alice, alice_api, three):
    from jobs.selectors import _kept_cuts

    def count(ids: list[int]) -> int:
        _kept_cuts.clear()  # no job's cut kept from before: each is read
        with CaptureQueriesContext(connection) as captured:
            compare(alice_api, "jobs=" + ",".join(map(str, ids)))
        return len(captured)

    one, three_jobs = count([three[0].pk]), count([j.pk for j in three])

    assert three_jobs - one == 4  # two reads per further job (its curves' extent, their points), nothing else
    assert one <= 5  # the token, the jobs, the job's two


def test_it_answers_another_users_job_with_a_404_naming_it(alice, bob_api, three):
    response = bob_api.get(f"/api/v1/compare/?jobs={three[0].pk}")

    assert response.status_code == 404
    assert response.json()["error"] == f"No job {three[0].pk}."


def test_it_names_every_missing_job_in_the_404(alice_api, three):
    response = alice_api.get(f"/api/v1/compare/?jobs={three[0].pk},9998,9999")

    assert response.status_code == 404
    assert "9998, 9999" in response.json()["error"] and str(three[0].pk) not in response.json()["error"]


@pytest.mark.parametrize("query, field", [("jobs=1,two", "jobs"), ("jobs=", "jobs"), ("", "jobs"),
                                          ("jobs=" + ",".join(map(str, range(1, 22))), "jobs"),
                                          ("jobs=1&x=wall", "x"), ("jobs=1&max_points=1", "max_points"),
                                          ("group=nobody", "group")])
def test_it_refuses_bad_input_with_a_400_naming_the_field(alice_api, query, field):
    response = alice_api.get(f"/api/v1/compare/?{query}")

    assert response.status_code == 400
    body = response.json()
    assert field in body["detail"] and body["error"].startswith(f"{field}: "), body


def test_it_needs_a_login(client):
    assert client.get("/api/v1/compare/?jobs=1").status_code in (401, 403)


def test_it_reads_a_jobs_points_once_and_again_when_they_change(alice, alice_api, three):
    from jobs.selectors import _kept_cuts

    _kept_cuts.clear()
    job = three[0]

    def points_read() -> int:
        """Queries that read points' values (finding the curves' extent reads none)."""
        with CaptureQueriesContext(connection) as captured:
            compare(alice_api, f"jobs={job.pk}")
        return sum('"value"' in q["sql"] for q in captured.captured_queries)

    assert (points_read(), points_read()) == (1, 0)
    MetricPoint.objects.create(job=job, split="val", name="accuracy", epoch=4.0, step=40, value=0.99, time=6000.0)
    assert points_read() == 1
    assert compare(alice_api, f"jobs={job.pk}")["jobs"][0]["series"]["val_accuracy"][-1] == [4.0, 0.99]
