"""One snapshot picker for the classify and the inspect pages (jobs.forms.SnapshotImageForm)."""
from __future__ import annotations

import pytest

from jobs.errors import JobInputError, JobStateError
from jobs.forms import SnapshotImageForm
from tests.workbench.test_lists import jobs_of

pytestmark = pytest.mark.django_db


def test_it_offers_the_latest_then_each_snapshot_newest_first(alice):
    form = SnapshotImageForm(job=jobs_of(alice, 1)[0])

    assert form.fields["epoch"].choices == [("", "Latest"), ("2", "Epoch 2"), ("1", "Epoch 1")]


def test_it_puts_a_refusal_beside_the_picker_when_it_is_about_the_epoch(alice):
    form = SnapshotImageForm({"epoch": "2"}, {}, job=jobs_of(alice, 1)[0])
    form.is_valid()

    form.add_refusal(JobInputError("No snapshot at epoch 2.", "epoch"))
    form.add_refusal(JobStateError("The job is running."))

    assert form.errors["epoch"] == ["No snapshot at epoch 2."]
    assert "The job is running." in form.errors["image"]


def test_the_classify_and_inspect_pages_use_it(client, alice):
    job = jobs_of(alice, 1)[0]
    client.force_login(alice)

    for url in (f"/jobs/{job.pk}/classify/", f"/jobs/{job.pk}/inspect/"):
        form = client.get(url).context["form"]
        assert isinstance(form, SnapshotImageForm), url
