"""`GET /api/v1/lr-schedule/`: the job form's preview, from the schedule code training runs."""
from __future__ import annotations

import pytest

from training.schedules import learning_rate

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("query, policy, params", [
    ("lr_policy=fixed", "fixed", {}),
    ("lr_policy=step&lr_step_size=3&lr_gamma=0.5", "step", {"step_size": 3.0, "gamma": 0.5}),
    ("lr_policy=multistep&lr_milestones=8, 4&lr_gamma=0.1", "multistep", {"milestones": [4.0, 8.0], "gamma": 0.1}),
    ("lr_policy=exp&lr_gamma=0.8", "exp", {"gamma": 0.8}),
    ("lr_policy=cosine", "cosine", {}),
])
def test_it_matches_the_training_schedule(alice_api, query, policy, params):
    response = alice_api.get(f"/api/v1/lr-schedule/?learning_rate=0.2&epochs=12&{query}")

    assert response.status_code == 200, response.json()
    points = response.json()["points"]
    assert len(points) == 300 and points[0][0] == 0 and points[-1][0] == 12
    for epoch, rate in points:
        assert rate == pytest.approx(learning_rate(policy, 0.2, epoch, 12, params))


def test_it_takes_the_job_defaults_and_a_number_of_points(alice_api):
    points = alice_api.get("/api/v1/lr-schedule/?points=11").json()["points"]

    assert [p[0] for p in points] == [float(e) for e in range(11)]  # 10 epochs by default
    assert {p[1] for p in points} == {0.01}  # fixed at 0.01 by default


@pytest.mark.parametrize("query, field", [("lr_policy=linear", "lr_policy"), ("learning_rate=-1", "learning_rate"),
                                          ("epochs=0", "epochs"), ("lr_milestones=5,x", "lr_milestones"),
                                          ("lr_milestones=0", "lr_milestones"), ("lr_gamma=abc", "lr_gamma"),
                                          ("points=1", "points")])
def test_it_refuses_a_bad_field_naming_it(alice_api, query, field):
    response = alice_api.get(f"/api/v1/lr-schedule/?{query}")

    assert response.status_code == 400
    assert field in response.json()["detail"] and response.json()["error"].startswith(f"{field}: ")


def test_it_needs_a_login(client):
    assert client.get("/api/v1/lr-schedule/").status_code in (401, 403)
