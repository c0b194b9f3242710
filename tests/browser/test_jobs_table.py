"""The jobs table and the job form in Chromium: sort, filter, choose columns, group, select, edit notes, preview the LR."""
from __future__ import annotations

import pytest

from jobs.models import TrainingJob
from tests.browser.conftest import log_in
from tests.conftest import wait_for
from tests.workbench.test_lists import dataset_of

pytestmark = pytest.mark.django_db(transaction=True)


def row(page, name: str):  # type: ignore[no-untyped-def]
    return page.locator("#jobs-table tr[data-job]").filter(has=page.get_by_role("link", name=name, exact=True))


def row_names(page) -> list[str]:  # type: ignore[no-untyped-def]
    page.wait_for_load_state("load")  # a header or filter navigates: read the new page's rows, whole
    return page.eval_on_selector_all("#jobs-table tbody tr[data-job]:not([hidden]) td.name",
                                     "cells => cells.map((c) => c.textContent.trim())")


@pytest.fixture
def some_jobs(alice):  # type: ignore[no-untyped-def]
    dataset = dataset_of(alice)
    rows = [("beta", "lenet", "lr search", 0.91, 64), ("alpha", "mlp", "lr search", 0.85, 32),
            ("gamma", "lenet", "", 0.97, 16), ("delta", "mlp", "baseline", 0.60, 64)]
    for name, network, group, accuracy, batch in rows:
        TrainingJob.objects.create(owner=alice, dataset=dataset, name=name, network=network, network_spec={},
                                   status="done", group=group, batch_size=batch,
                                   best={"val_accuracy": accuracy, "val_loss": 1 - accuracy},
                                   latest={"train_loss": 0.1, "val_accuracy": accuracy})
    return rows


def test_it_sorts_by_a_header_and_filters(page, alice, some_jobs, screenshot):  # type: ignore[no-untyped-def]
    log_in(page, "alice", "alice-password")
    page.goto("/jobs/")
    assert row_names(page) == ["delta", "gamma", "alpha", "beta"]  # newest first

    page.click("#jobs-table th >> text=Name")
    assert row_names(page) == ["alpha", "beta", "delta", "gamma"]
    page.click("#jobs-table th >> text=Name")
    assert row_names(page) == ["gamma", "delta", "beta", "alpha"]
    page.click("#jobs-table th >> text=Best val accuracy")
    assert row_names(page) == ["gamma", "beta", "alpha", "delta"]

    page.select_option("select[name=network]", "lenet")  # applies at once, keeping the order
    page.wait_for_url("**network=lenet**")
    assert row_names(page) == ["gamma", "beta"]
    page.fill("input[name=search]", "bet")
    page.press("input[name=search]", "Enter")
    page.wait_for_url("**search=bet**")
    assert row_names(page) == ["beta"]
    screenshot(page, "40-jobs-filtered")


def test_it_remembers_the_chosen_columns_across_a_reload(page, alice, some_jobs, screenshot):  # type: ignore[no-untyped-def]
    log_in(page, "alice", "alice-password")
    page.goto("/jobs/")
    batch = page.locator('#jobs-table th[data-col="batch_size"]')
    network = page.locator('#jobs-table th[data-col="network"]')
    assert not batch.is_visible() and network.is_visible()

    page.click(".column-chooser summary")
    page.check('input[data-column="batch_size"]')
    page.uncheck('input[data-column="network"]')
    assert batch.is_visible() and not network.is_visible()
    screenshot(page, "41-jobs-columns")
    page.reload()

    assert batch.is_visible() and not network.is_visible()
    assert page.locator('#jobs-table td[data-col="batch_size"]').first.inner_text() in ("16", "32", "64")
    page.click(".column-chooser summary")
    page.click("#columns-default")
    assert not batch.is_visible() and network.is_visible()


def test_it_groups_rows_collapses_a_group_and_compares_a_selection(page, alice, some_jobs, screenshot):  # type: ignore[no-untyped-def]
    log_in(page, "alice", "alice-password")
    page.goto("/jobs/?ordering=name")
    page.check("input[name=by_group]")
    page.wait_for_url("**by_group=1**")
    assert row_names(page) == ["delta", "alpha", "beta", "gamma"]  # baseline, lr search, then no group
    screenshot(page, "42-jobs-grouped")

    page.click('tr[data-group-header="lr search"] .group-toggle')
    assert row_names(page) == ["delta", "gamma"]
    page.click('tr[data-group-header="lr search"] .group-toggle')

    assert page.locator("button.bulk[value=compare]").is_disabled()
    for name in ("alpha", "gamma"):
        row(page, name).locator("input[name=jobs]").check()
    assert page.inner_text("#selected-count") == "2 selected"
    page.click("button.bulk[value=compare]")
    page.wait_for_url("**/compare/?jobs=**")
    page.wait_for_function("() => window.compareReady === true")
    assert page.locator("#compare-table tbody tr").count() == 2


def test_it_edits_a_note_in_place(page, alice, some_jobs):  # type: ignore[no-untyped-def]
    log_in(page, "alice", "alice-password")
    page.goto("/jobs/")
    alpha = row(page, "alpha")

    alpha.locator(".edit-note").click()
    alpha.locator(".note-input").fill("diverges above lr 0.1")
    alpha.locator(".note-input").press("Enter")

    # The row shows the note once the browser has the server's answer, so the database has it by then.
    alpha.locator(".note-text", has_text="diverges above lr 0.1").wait_for()
    assert alpha.locator(".note-text").inner_text() == "diverges above lr 0.1"
    assert TrainingJob.objects.get(name="alpha").notes == "diverges above lr 0.1"
    assert not alpha.locator(".note-input").count()  # the input is gone: back to the note


def lr_values(page) -> list[float]:  # type: ignore[no-untyped-def]
    return page.evaluate("() => Array.from(document.getElementById('lr-preview').data[0].y)")


def test_the_lr_preview_follows_the_policy(page, alice, screenshot):  # type: ignore[no-untyped-def]
    dataset_of(alice)
    log_in(page, "alice", "alice-password")
    page.goto("/jobs/new/")
    page.wait_for_function("() => window.lrPreviewDrawn >= 1")
    assert set(lr_values(page)) == {0.01}

    page.select_option("#id_lr_policy", "step")
    page.fill("#id_lr_step_size", "3")
    page.wait_for_function("() => window.lrPreviewDrawn >= 2")
    wait_for(lambda: min(lr_values(page)) < 0.0001, 10, "the step policy's curve")
    stepped = lr_values(page)
    assert stepped[0] == 0.01 and len(set(stepped)) == 4  # 10 epochs, down every 3: four levels
    screenshot(page, "43-lr-preview-step")

    page.select_option("#id_lr_policy", "cosine")
    wait_for(lambda: len(set(lr_values(page))) > 100, 10, "the cosine curve")
    page.fill("#id_lr_gamma", "0")
    page.wait_for_selector("#lr-preview-error:not([hidden])")
    assert "lr_gamma" in page.inner_text("#lr-preview-error")
