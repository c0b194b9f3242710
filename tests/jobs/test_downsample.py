"""Long curves come back cut to a few points per curve that keep their shape, in one query."""
from __future__ import annotations

import math
import random
from operator import itemgetter

import pytest

from jobs.downsample import downsample_curve

Point = tuple[int, float]


def cut(points: list[Point], max_points: int) -> list[Point]:
    return downsample_curve(points, max_points, step=itemgetter(0), value=itemgetter(1))


def noisy_curve(n: int, seed: int = 0) -> list[Point]:
    rng = random.Random(seed)
    return [(step, math.exp(-step / n) + rng.gauss(0, 0.05)) for step in range(n)]


# --- the algorithm ----------------------------------------------------------------------------

@pytest.mark.parametrize("max_points", [2, 3, 4, 5, 10, 101, 2000])
def test_it_keeps_at_most_max_points_in_step_order_with_the_first_and_the_last(max_points):
    points = noisy_curve(5000)

    kept = cut(points, max_points)

    assert len(kept) <= max_points
    assert [p[0] for p in kept] == sorted({p[0] for p in kept})
    assert kept[0] == points[0] and kept[-1] == points[-1]


@pytest.mark.parametrize("max_points", [4, 7, 50, 1000])
def test_it_keeps_the_global_minimum_and_maximum(max_points):
    points = noisy_curve(20_000, seed=max_points)
    points[12_345] = (12_345, 9.0)  # one spike and one dip in the middle of a bucket
    points[777] = (777, -3.0)

    kept = cut(points, max_points)

    assert max(points, key=itemgetter(1)) in kept and min(points, key=itemgetter(1)) in kept


def test_it_keeps_each_buckets_extremes_so_a_dip_anywhere_shows():
    points = [(step, 1.0) for step in range(1000)]
    for step in (100, 500, 900):
        points[step] = (step, 0.0)

    kept = cut(points, 20)

    assert {p[0] for p in kept if p[1] == 0.0} == {100, 500, 900}


def test_it_returns_a_short_curve_whole_and_sorts_an_unsorted_one():
    points = [(3, 0.3), (1, 0.1), (2, 0.2)]

    assert cut(points, 10) == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert cut([], 10) == []


def test_it_handles_uneven_steps_points_at_one_step_and_nans():
    sparse = [(0, 1.0), (1, 2.0), (2, float("nan")), (10_000, 0.5), (10_001, 0.4), (10_002, 3.0)]
    same_step = [(5, float(v)) for v in range(100)]

    assert len(cut(sparse, 4)) <= 4 and (10_002, 3.0) in cut(sparse, 4)
    kept = cut(same_step, 6)
    assert len(kept) <= 6 and (5, 0.0) in kept and (5, 99.0) in kept


def test_it_refuses_fewer_than_two_points():
    with pytest.raises(ValueError):
        cut(noisy_curve(10), 1)


# --- the API ------------------------------------------------------------------------------------

def job_with_points(owner, steps: int):  # type: ignore[no-untyped-def]
    """A job row with a train loss every step and a val accuracy every 100, written directly."""
    from jobs.models import MetricPoint
    from tests.results.test_export import _finished_job

    job = _finished_job(owner)
    rng = random.Random(1)
    rows = [MetricPoint(job=job, split="train", name="loss", epoch=s / 100, step=s,
                        value=2.0 * math.exp(-s / steps) + rng.random() * 0.1, time=float(s)) for s in range(steps)]
    rows += [MetricPoint(job=job, split="val", name="accuracy", epoch=s / 100, step=s, value=s / steps,
                         time=float(s)) for s in range(99, steps, 100)]
    rows[steps // 2].value = 50.0  # a spike the cut must keep
    rows[steps // 3].value = -1.0  # and a dip
    MetricPoint.objects.bulk_create(rows, batch_size=2000)
    return job


def metrics(client, job, query: str):  # type: ignore[no-untyped-def]
    return client.get(f"/api/v1/jobs/{job.pk}/metrics/?{query}")


def by_curve(points: list[dict]) -> dict[tuple[str, str], list[dict]]:
    curves: dict[tuple[str, str], list[dict]] = {}
    for p in points:
        curves.setdefault((p["split"], p["name"]), []).append(p)
    return curves


@pytest.mark.django_db
def test_it_answers_at_most_max_points_per_curve_keeping_minimum_maximum_and_the_cursor(alice_api, alice):
    from jobs.models import MetricPoint

    job = job_with_points(alice, 20_000)

    body = metrics(alice_api, job, "max_points=500").json()

    curves = by_curve(body["points"])
    assert set(curves) == {("train", "loss"), ("val", "accuracy")}
    assert all(len(points) <= 500 for points in curves.values())
    assert len(curves["val", "accuracy"]) == 200  # short enough to come whole
    values = [p["value"] for p in curves["train", "loss"]]
    assert max(values) == 50.0 and min(values) == -1.0
    steps = [p["step"] for p in curves["train", "loss"]]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 19_999
    assert body["cursor"] == MetricPoint.objects.filter(job=job).latest("pk").pk
    assert body["downsampled"] is True and body["status"] == "done"
    assert set(body["points"][0]) == {"id", "name", "split", "epoch", "step", "value", "time"}


@pytest.mark.django_db
def test_its_query_count_does_not_grow_with_the_run(alice_api, alice, django_assert_max_num_queries):
    """It grows with the number of curves cut (two queries each), never with their length."""
    short, long = job_with_points(alice, 600), job_with_points(alice, 20_000)  # both curves past 5 in both

    # The user, the job, then the curves, the short ones whole (none here), two for each long curve.
    with django_assert_max_num_queries(8) as short_run:
        assert metrics(alice_api, short, "max_points=5").status_code == 200
    with django_assert_max_num_queries(len(short_run.captured_queries)):
        assert metrics(alice_api, long, "max_points=5").status_code == 200


@pytest.mark.django_db
def test_it_answers_a_short_run_whole_and_streams_on_after_the_cursor(alice_api, alice):
    from jobs.models import MetricPoint

    job = job_with_points(alice, 300)
    whole = metrics(alice_api, job, "max_points=2000").json()
    assert whole["downsampled"] is False and len(whole["points"]) == 303

    newer = MetricPoint.objects.create(job=job, split="train", name="loss", epoch=3.0, step=300, value=0.1, time=0.0)
    after = metrics(alice_api, job, f"after={whole['cursor']}").json()

    assert [p["id"] for p in after["points"]] == [newer.pk]
    assert after["downsampled"] is False


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["1", "0", "-5", "100001", "lots", "2.5"])
def test_it_refuses_a_max_points_out_of_range_with_the_json_error_shape(alice_api, alice, value):
    job = job_with_points(alice, 10)

    response = metrics(alice_api, job, f"max_points={value}")

    assert response.status_code == 400
    body = response.json()
    assert body["error"].startswith("max_points: ") and "max_points" in body["detail"]


@pytest.mark.django_db
def test_it_hides_another_users_curves(bob_api, alice):
    job = job_with_points(alice, 10)

    assert metrics(bob_api, job, "max_points=100").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("max_points", [4, 7, 100, 333])
def test_the_database_keeps_exactly_the_points_the_reference_rule_keeps(alice, max_points):
    """Uneven steps, ties (values drawn from a few levels) and one curve short enough to come whole."""
    from jobs.models import MetricPoint
    from jobs.selectors import job_metrics_downsampled
    from tests.results.test_export import _finished_job

    job = _finished_job(alice)
    rng = random.Random(max_points)
    steps = sorted(rng.sample(range(1, 50_000), 3000))
    MetricPoint.objects.bulk_create(
        [MetricPoint(job=job, split="train", name="loss", epoch=s / 100, step=s, value=rng.choice([0.5, 1.0, 1.5, 2.25]),
                     time=float(s)) for s in steps]
        + [MetricPoint(job=job, split="val", name="loss", epoch=s, step=s * 500, value=rng.random(), time=float(s))
           for s in range(1, 4)], batch_size=2000)
    every = list(MetricPoint.objects.filter(job=job).values_list("split", "name", "step", "value", "id"))

    cut = job_metrics_downsampled(job_id=job.pk, max_points=max_points)

    expected = []
    for curve in {(p[0], p[1]) for p in every}:
        points = [p for p in every if (p[0], p[1]) == curve]
        expected += [p[4] for p in downsample_curve(points, max_points, step=itemgetter(2), value=itemgetter(3))]
    assert sorted(p["id"] for p in cut.points) == sorted(expected)
    assert cut.downsampled is True and cut.cursor == max(p[4] for p in every)


@pytest.mark.django_db
def test_a_kept_cut_never_hides_points_written_or_deleted_after_it(alice_api, alice):
    from jobs.models import MetricPoint

    job = job_with_points(alice, 5000)
    first = metrics(alice_api, job, "max_points=100").json()
    assert metrics(alice_api, job, "max_points=100").json() == first  # kept, and the same

    MetricPoint.objects.create(job=job, split="train", name="loss", epoch=50.0, step=5000, value=99.0, time=0.0)
    grown = metrics(alice_api, job, "max_points=100").json()
    assert grown["cursor"] > first["cursor"] and max(p["value"] for p in grown["points"]) == 99.0

    MetricPoint.objects.filter(job=job, step__gte=2000).delete()  # a resume rewinds
    rewound = metrics(alice_api, job, "max_points=100").json()
    assert max(p["step"] for p in rewound["points"]) == 1999 and 50.0 not in [p["value"] for p in rewound["points"]]
