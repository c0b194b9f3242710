"""The jobs table as the home page: filters, groups, notes and group edits, bulk actions."""
from __future__ import annotations

import re

import pytest
from django.utils import timezone

from jobs.models import TrainingJob
from tests.workbench.test_lists import dataset_of, jobs_of, logged_in, names

pytestmark = pytest.mark.django_db


def job(owner, name: str, **fields) -> TrainingJob:  # type: ignore[no-untyped-def]
    dataset = fields.pop("dataset", None) or dataset_of(owner)
    fields = {"network": "mlp", "status": "done", **fields}
    if fields["status"] == "running":  # a live worker's heartbeat, or the page takes it back
        fields["heartbeat_at"] = timezone.now()
    return TrainingJob.objects.create(owner=owner, dataset=dataset, name=name, network_spec={}, **fields)


# --- filters and the API's fields ------------------------------------------------------------

def test_it_filters_jobs_by_group_and_network(alice, alice_api):
    dataset = dataset_of(alice)
    job(alice, "a", dataset=dataset, group="lr search", network="lenet")
    job(alice, "b", dataset=dataset, group="lr search")
    job(alice, "c", dataset=dataset, network="lenet")

    assert sorted(names(alice_api.get("/api/v1/jobs/?group=lr search"))) == ["a", "b"]
    assert sorted(names(alice_api.get("/api/v1/jobs/?network=lenet"))) == ["a", "c"]
    assert names(alice_api.get("/api/v1/jobs/?network=lenet&group=lr search")) == ["a"]


def test_it_echoes_group_notes_and_stop_reason(alice, alice_api):
    made = job(alice, "a", group="g", notes="try a lower rate", stop_reason="user", status="aborted")

    body = alice_api.get(f"/api/v1/jobs/{made.pk}/").json()

    assert (body["group"], body["notes"], body["stop_reason"]) == ("g", "try a lower rate", "user")


def test_it_creates_a_job_with_a_group_and_notes(alice, alice_api):
    dataset = dataset_of(alice)

    response = alice_api.post("/api/v1/jobs/", {"dataset": dataset.pk, "network": "mlp", "group": "baseline",
                                                "notes": "first try"}, format="json")

    assert response.status_code == 201, response.json()
    created = TrainingJob.objects.get(pk=response.json()["id"])
    assert (created.group, created.notes) == ("baseline", "first try")


def test_the_form_creates_a_job_with_a_group_and_notes(alice):
    dataset = dataset_of(alice)
    form = {"dataset": dataset.pk, "network": "mlp", "epochs": 2, "batch_size": 8, "optimizer": "sgd",
            "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 0, "lr_policy": "fixed", "lr_step_size": 5,
            "lr_gamma": 0.1, "seed": 0, "device": "auto", "val_interval": 1, "snapshot_interval": 1,
            "group": "form group", "notes": "from the form"}

    response = logged_in(alice).post("/jobs/new/", form)

    assert response.status_code == 302, response.content.decode()[-2000:]
    assert TrainingJob.objects.get().group == "form group"


# --- PATCH jobs/{id}/: notes and group ----------------------------------------------------------

def test_it_changes_notes_and_group(alice, alice_api):
    made = job(alice, "a")

    response = alice_api.patch(f"/api/v1/jobs/{made.pk}/", {"notes": "overfits after epoch 6", "group": " sweep 1 "},
                               format="json")

    assert response.status_code == 200, response.json()
    assert (response.json()["notes"], response.json()["group"]) == ("overfits after epoch 6", "sweep 1")
    made.refresh_from_db()
    assert (made.notes, made.group, made.name) == ("overfits after epoch 6", "sweep 1", "a")


@pytest.mark.parametrize("body, field", [({"name": "renamed"}, "name"), ({"notes": "ok", "epochs": 3}, "epochs"),
                                         ({"group": "x" * 101}, "group"), ({"notes": None}, "notes"), ({}, "non_field_errors")])
def test_it_refuses_what_cannot_be_changed_naming_the_field(alice, alice_api, body, field):
    made = job(alice, "a")

    response = alice_api.patch(f"/api/v1/jobs/{made.pk}/", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["detail"], response.json()
    made.refresh_from_db()
    assert (made.name, made.notes, made.group) == ("a", "", "")


def test_it_answers_a_patch_on_another_users_job_with_a_404(alice, bob_api):
    made = job(alice, "a")

    assert bob_api.patch(f"/api/v1/jobs/{made.pk}/", {"notes": "mine now"}, format="json").status_code == 404
    made.refresh_from_db()
    assert made.notes == ""


# --- bulk actions -----------------------------------------------------------------------------

def bulk(client, action: str, *jobs: TrainingJob, extra: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    return client.post("/jobs/bulk/", {"action": action, "jobs": [str(j.pk) for j in jobs] + list(extra),
                                       "next": "/jobs/?status=done"}, follow=True)


def flashes(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in response.context["messages"]]


def test_it_aborts_what_can_be_aborted_and_says_why_not_the_rest(alice):
    dataset = dataset_of(alice)
    queued = job(alice, "waiting", dataset=dataset, status="queued")
    running = job(alice, "training", dataset=dataset, status="running")
    finished = job(alice, "finished", dataset=dataset)

    response = bulk(logged_in(alice), "abort", queued, running, finished)

    assert response.redirect_chain[-1][0] == "/jobs/?status=done"
    assert flashes(response) == ["Abort requested for 2 jobs: 'waiting', 'training'.",
                                 "Could not abort 1 job: 'finished' (Only queued or running jobs can be aborted; "
                                 "this one is done.)"]
    statuses = dict(TrainingJob.objects.values_list("name", "status"))
    assert statuses == {"waiting": "aborted", "training": "running", "finished": "done"}
    assert TrainingJob.objects.get(name="training").abort_requested


def test_it_deletes_what_can_be_deleted_and_names_the_refused(alice, bob):
    dataset = dataset_of(alice)
    running = job(alice, "training", dataset=dataset, status="running")
    finished = job(alice, "finished", dataset=dataset)
    bobs = job(bob, "bobs")

    response = bulk(logged_in(alice), "delete", running, finished, bobs)

    assert flashes(response) == [
        "Deleted 1 job: 'finished'.",
        f"Could not delete 2 jobs: 'training' (The job is still queued or running; abort it before deleting it.); "
        f"#{bobs.pk} (no such job)"]
    assert sorted(TrainingJob.objects.values_list("name", flat=True)) == ["bobs", "training"]


def test_it_opens_the_selection_in_compare(alice):
    a, b = jobs_of(alice, 2)

    response = logged_in(alice).post("/jobs/bulk/", {"action": "compare", "jobs": [str(b.pk), str(a.pk)]})

    assert response.status_code == 302 and response["Location"] == f"/compare/?jobs={b.pk},{a.pk}"


def test_it_asks_for_a_selection_and_refuses_a_get(alice):
    client = logged_in(alice)

    assert flashes(client.post("/jobs/bulk/", {"action": "abort"}, follow=True)) == [
        "Select at least one job, then Compare, Abort or Delete."]
    assert client.get("/jobs/bulk/").status_code == 405


# --- the page ---------------------------------------------------------------------------------

def test_it_shows_groups_together_with_a_header_and_a_compare_link(alice):
    dataset = dataset_of(alice)
    for name, group in [("a1", "alpha"), ("x", ""), ("b1", "beta"), ("a2", "alpha")]:
        job(alice, name, dataset=dataset, group=group)

    page = logged_in(alice).get("/jobs/?by_group=1&ordering=name").content.decode()

    rows = re.findall(r'data-group-header="([^"]*)"|<td class="name"><a [^>]*>([^<]*)</a>', page)
    assert [header or name for header, name in rows] == ["alpha", "a1", "a2", "beta", "b1", "", "x"]
    assert "2 jobs" in page and "1 job<" in page
    assert 'href="/compare/?group=alpha"' in page


def test_it_filters_the_page_by_network_group_dataset_and_name(alice):
    digits, shapes = dataset_of(alice), dataset_of(alice, name="shapes")
    job(alice, "lenet run", dataset=digits, network="lenet", group="g")
    job(alice, "mlp run", dataset=shapes)
    client = logged_in(alice)

    def shown(query: str) -> list[str]:
        return re.findall(r'<td class="name"><a [^>]*>([^<]*)</a>', client.get(f"/jobs/?{query}").content.decode())

    assert shown("network=lenet") == ["lenet run"]
    assert shown("group=g") == ["lenet run"]
    assert shown(f"dataset={shapes.pk}") == ["mlp run"]
    assert shown("search=MLP") == ["mlp run"]
    assert "No training jobs match these filters." in client.get("/jobs/?network=alexnet").content.decode()


def test_it_offers_every_column_with_only_the_defaults_shown_before_the_script_runs(alice):
    jobs_of(alice, 1)

    page = logged_in(alice).get("/jobs/").content.decode()

    assert 'data-column="batch_size"' in page and 'data-column="latest_train_loss"' in page
    style = page.split('<style id="job-columns-style">')[1].split("</style>")[0]
    assert '[data-col="batch_size"]' in style and '[data-col="network"]' not in style


def test_it_refuses_an_anonymous_bulk_action(client, alice):
    made = job(alice, "a", status="queued")

    response = client.post("/jobs/bulk/", {"action": "abort", "jobs": [str(made.pk)]})

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    made.refresh_from_db()
    assert made.status == "queued"


def test_it_needs_the_csrf_token_for_a_bulk_action(alice):
    from django.test import Client

    made = job(alice, "a", status="queued")
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    assert client.post("/jobs/bulk/", {"action": "abort", "jobs": [str(made.pk)]}).status_code == 403
    made.refresh_from_db()
    assert made.status == "queued"


def test_the_dashboard_lists_jobs_with_the_default_columns_only(alice):
    job(alice, "recent run", group="g", batch_size=16)

    page = logged_in(alice).get("/").content.decode()

    assert "recent run" in page and 'data-col="group"' in page
    assert 'data-col="batch_size"' not in page and 'name="jobs"' not in page and "edit-note" not in page
