"""The bounds and choices of a job's settings are written once (jobs.options.SETTINGS): the form,
the API, the sweep form and the service all refuse the same values, beside the same field."""
from __future__ import annotations

from dataclasses import replace

import pytest

from jobs.api import JobInput
from jobs.forms import JobForm
from jobs.options import DEFAULTS, SETTINGS
from jobs.services import JobInputError, job_options_check
from sweeps.forms import SweepForm

BOUNDED = [(name, s) for name, s in SETTINGS.items() if s.low is not None]
CHOSEN = [(name, s) for name, s in SETTINGS.items() if s.choices]


def outside(setting) -> list[float]:  # type: ignore[no-untyped-def]
    step = 1 if float(setting.low).is_integer() and (setting.high is None or float(setting.high).is_integer()) else 1e-9
    return [setting.low - step] + ([setting.high + step * max(1, abs(setting.high)) * 1e-3] if setting.high else [])


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "setting"), BOUNDED, ids=[n for n, _ in BOUNDED])
def test_the_form_the_api_and_the_service_share_each_bound(alice, name, setting):
    form_field, api_field = JobForm(user=alice).fields[name], JobInput().fields[name]

    assert (form_field.min_value, form_field.max_value) == (setting.low, setting.high)
    assert (api_field.min_value, api_field.max_value) == (setting.low, setting.high)
    assert form_field.initial == api_field.default == getattr(DEFAULTS, name)
    for value in outside(setting):
        with pytest.raises(JobInputError) as refused:
            job_options_check(replace(DEFAULTS, **{name: type(getattr(DEFAULTS, name))(value)}))
        assert refused.value.field == name
        assert not JobInput(data={"dataset": 1, "network": "mlp", name: value}).is_valid()
    job_options_check(replace(DEFAULTS, **{name: type(getattr(DEFAULTS, name))(setting.low)}))


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "setting"), CHOSEN, ids=[n for n, _ in CHOSEN])
def test_the_form_the_api_and_the_service_share_each_choice(alice, name, setting):
    form_choices = [value for value, _ in JobForm(user=alice).fields[name].choices]

    assert form_choices == list(JobInput().fields[name].choices) == list(setting.choices)
    with pytest.raises(JobInputError, match="Choose one of"):
        job_options_check(replace(DEFAULTS, **{name: "nonsense"}))


@pytest.mark.django_db
def test_the_sweep_form_bounds_its_base_as_a_job_is(alice):
    fields = SweepForm(user=alice).fields

    for name in ("epochs", "batch_size", "learning_rate"):
        assert (fields[name].min_value, fields[name].max_value) == (SETTINGS[name].low, SETTINGS[name].high)
    assert [v for v, _ in fields["optimizer"].choices] == list(SETTINGS["optimizer"].choices)


def test_a_worded_bound_says_the_same_in_the_api_as_in_the_service():
    given = JobInput(data={"dataset": 1, "network": "mlp", "accumulate": 0, "label_smoothing": 0.9})

    assert not given.is_valid()
    assert given.errors["accumulate"] == ["Accumulate 1 to 1024 batches per optimizer step."]
    assert given.errors["label_smoothing"] == ["Label smoothing is from 0 to 0.5."]


def test_a_value_that_is_not_finite_is_refused():
    with pytest.raises(JobInputError) as refused:
        job_options_check(replace(DEFAULTS, grad_clip=float("inf")))
    assert refused.value.field == "grad_clip"


@pytest.mark.django_db
def test_training_a_sweeps_best_again_bounds_the_epochs_as_a_job_does(alice):
    from sweeps.api import TrainBestInput
    from sweeps.forms import TrainBestForm

    low, high = SETTINGS["epochs"].low, SETTINGS["epochs"].high
    for given in (low - 1, high + 1):
        assert not TrainBestInput(data={"epochs": given}).is_valid()
        assert not TrainBestForm({"epochs": given}).is_valid()
    assert TrainBestInput(data={"epochs": high}).is_valid() and TrainBestForm({"epochs": high}).is_valid()
    assert not TrainBestInput(data={}).is_valid() and not TrainBestForm({}).is_valid()
