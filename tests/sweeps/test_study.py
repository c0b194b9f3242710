"""The Optuna side, without a worker: each reload of a study asks what a single run would have."""
from __future__ import annotations

import uuid

import pytest
from django.db import connection

from datasets.models import Dataset
from sweeps import study as studies
from sweeps.models import Sweep

pytestmark = pytest.mark.django_db(transaction=True)


def sweep_of(owner, **plan) -> Sweep:  # type: ignore[no-untyped-def]
    dataset = Dataset.objects.create(owner=owner, name=f"d {uuid.uuid4().hex[:6]}", source="example", source_name="x",
                                     image_width=8, image_height=8, channels=3, resize_mode="squash", val_percent=10,
                                     test_percent=0, seed=0, status="ready", classes=["a", "b"])
    sweep = Sweep.objects.create(owner=owner, name="s", dataset=dataset, network="mlp", trials_total=4,
                                 study_name=f"test-{uuid.uuid4().hex}", **plan)
    studies.study_create(sweep)
    return sweep


def ask_one_per_load(sweep: Sweep, count: int) -> list[dict]:
    """As the advances do: the study loaded afresh for every trial asked."""
    asked = []
    for n in range(count):
        trial = studies.study_load(sweep, asked=n).ask(studies.distributions(sweep))
        asked.append(trial.params)
    return asked


def test_it_asks_every_grid_point_once_across_loads(alice):
    sweep = sweep_of(alice, grid={"learning_rate": [0.1, 0.01], "batch_size": [16, 32]})
    points = {(p["learning_rate"], p["batch_size"]) for p in ask_one_per_load(sweep, 4)}
    assert points == {(0.1, 16), (0.1, 32), (0.01, 16), (0.01, 32)}


def test_it_draws_a_seeded_random_search_again_the_same_and_never_replays_the_next_seed(alice):
    space = {"learning_rate": {"low": 1e-5, "high": 0.5, "log": True}, "optimizer": {"choices": ["sgd", "adam"]}}
    first = ask_one_per_load(sweep_of(alice, search={"method": "random", "trials": 4, "seed": 3, "space": space}), 4)
    again = ask_one_per_load(sweep_of(alice, search={"method": "random", "trials": 4, "seed": 3, "space": space}), 4)
    other = ask_one_per_load(sweep_of(alice, search={"method": "random", "trials": 4, "seed": 4, "space": space}), 4)
    rates = [p["learning_rate"] for p in first]
    assert first == again and len(set(rates)) == 4 and all(1e-5 <= r <= 0.5 for r in rates)
    assert not set(rates) & {p["learning_rate"] for p in other}


def test_it_uses_tpe_and_asha_as_asked(alice):
    import optuna

    sweep = sweep_of(alice, search={"method": "tpe", "trials": 4, "seed": 1,
                                    "space": {"batch_size": {"low": 8, "high": 64, "log": True}}},
                     early_stopping={"method": "asha", "grace_epochs": 2, "reduction_factor": 3})
    study = studies.study_load(sweep)
    assert isinstance(study.sampler, optuna.samplers.TPESampler)
    assert isinstance(study.pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert all(isinstance(p["batch_size"], int) for p in ask_one_per_load(sweep, 3))


def test_it_derives_the_storage_from_djangos_database():
    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "workbench", "USER": "wb", "PASSWORD": "p@ss",
                "HOST": "db", "PORT": "5432"}
    assert studies.storage_url(postgres) == "postgresql+psycopg://wb:p%40ss@db:5432/workbench"
    assert studies.storage_url({"ENGINE": "django.db.backends.sqlite3", "NAME": "/d/w.sqlite3"}) == "sqlite:////d/w.sqlite3"
    assert studies.storage_url() == studies.storage_url(connection.settings_dict)  # the tests' own database
    assert connection.settings_dict["NAME"] in studies.storage_url()


def test_telling_the_last_point_of_a_grid_ends_it_without_an_error(alice):
    """GridSampler asks a spent study to stop, which Optuna refuses outside optimize(): the sweep
    never finished when its last trial was told (found by a walk through make run)."""
    from optuna.trial import TrialState

    sweep = sweep_of(alice, grid={"learning_rate": [0.1, 0.01], "batch_size": [16, 32]})
    ask_one_per_load(sweep, 4)

    for number in range(4):
        studies.study_tell(studies.study_load(sweep, asked=4), number, 0.5 + number / 10)

    trials = studies.study_load(sweep, asked=4).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4 and [t.value for t in trials] == [0.5, 0.6, 0.7, 0.8]


def test_it_reports_to_a_running_trial_by_the_number_on_its_row_alone(alice):
    """Early stopping finds the trial through the storage's public lookups (study name, trial
    number), not the study's private `_storage`/`_study_id`; the value lands on the right trial."""
    sweep = sweep_of(alice, grid={"learning_rate": [0.1, 0.01]},
                     early_stopping={"method": "asha", "grace_epochs": 1, "reduction_factor": 3})
    ask_one_per_load(sweep, 2)

    running = studies.study_trial(studies.study_load(sweep, asked=2), sweep, 1)
    running.report(0.75, step=1)

    trials = studies.study_load(sweep, asked=2).get_trials(deepcopy=False)
    assert running.number == 1
    assert trials[0].intermediate_values == {} and trials[1].intermediate_values == {1: 0.75}
