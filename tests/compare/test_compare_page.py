"""The Compare page: the charts' frame and a table of only the settings that differ."""
from __future__ import annotations

import re

import pytest

from tests.compare.test_compare_api import job_with_curves
from tests.workbench.test_lists import dataset_of, logged_in

pytestmark = pytest.mark.django_db


def header_cells(page: str) -> list[str]:
    table = page.split('id="compare-table"')[1].split("</thead>")[0]
    return re.findall(r"<th>([^<]*)</th>", table)


def test_it_shows_only_the_settings_that_differ(alice):
    dataset = dataset_of(alice)
    a = job_with_curves(alice, dataset, "a", lr=0.1)
    b = job_with_curves(alice, dataset, "b", lr=0.01, batch_size=16)

    page = logged_in(alice).get(f"/compare/?jobs={a.pk},{b.pk}").content.decode()

    assert header_cells(page) == ["Job", "Status", "Batch size", "Learning rate", "Best val accuracy",
                                  "Best val loss"]
    assert f'data-api="/api/v1/compare/?jobs={a.pk},{b.pk}&amp;max_points=1000"' in page
    assert page.count('class="swatch" style="background: #1f77b4"') == 2  # the first job's colour: legend and table


def test_it_opens_a_group(alice):
    dataset = dataset_of(alice)
    a = job_with_curves(alice, dataset, "a", group="g1")
    job_with_curves(alice, dataset, "other")

    page = logged_in(alice).get("/compare/?group=g1").content.decode()

    assert f'data-api="/api/v1/compare/?jobs={a.pk}&amp;max_points=1000"' in page and "other" not in page


def test_it_is_a_404_for_another_users_job_and_a_400_for_bad_ids(alice, bob):
    job = job_with_curves(alice, dataset_of(alice), "a")

    assert logged_in(bob).get(f"/compare/?jobs={job.pk}").status_code == 404
    bad = logged_in(alice).get("/compare/?jobs=a,b")
    assert bad.status_code == 400 and "numbers separated by commas" in bad.content.decode()


def test_it_explains_how_to_pick_jobs_when_none_are_named(alice):
    page = logged_in(alice).get("/compare/").content.decode()

    assert "Pick up to 20 jobs" in page


def test_it_sends_an_anonymous_visitor_to_the_login_page(client):
    response = client.get("/compare/?jobs=1")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/compare/")


def test_a_job_in_a_group_links_to_comparing_its_group(alice):
    job = job_with_curves(alice, dataset_of(alice), "a", group="lr search")

    page = logged_in(alice).get(f"/jobs/{job.pk}/").content.decode()

    assert 'href="/compare/?group=lr%20search">compare this group</a>' in page
