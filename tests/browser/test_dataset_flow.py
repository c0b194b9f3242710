"""A person's path through the dataset pages, in real Chromium against the real server and worker."""
from __future__ import annotations

import io
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from datasets import services
from datasets.models import Dataset
from tests.browser.conftest import OUTCOME_MS, log_in
from tests.conftest import class_images, wait_dataset, zip_bytes

pytestmark = pytest.mark.django_db(transaction=True)


BIG_COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


@pytest.fixture
def alice_page(page, alice):  # type: ignore[no-untyped-def]
    log_in(page, "alice", "alice-password")
    return page


def big_colour_zip(path: Path, per_class: int = 200, distinct: int = 12, size: tuple[int, int] = (800, 600)) -> Path:
    """600 large PNGs over 3 classes: a few seconds of decoding, so the page shows the ingest running.

    Only `distinct` images per class are drawn and repeated, which keeps building the archive fast;
    the worker decodes every member all the same.
    """
    width, height = size
    ramp = np.linspace(0.45, 1.0, width)[None, :, None]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, colour in BIG_COLOURS.items():
            base = Image.fromarray(np.repeat(np.array(colour)[None, None, :] * ramp, height, 0).astype(np.uint8))
            drawn = [_with_disc(base, i) for i in range(distinct)]
            for i in range(per_class):
                archive.writestr(f"{name}/{name}_{i:03d}.png", drawn[i % distinct])
    return path


def _with_disc(base: Image.Image, i: int) -> bytes:
    image = base.copy()
    width, height = image.size
    r, cx, cy = height // 6 + (i * 23) % (height // 5), (i * 137) % width, (i * 89) % height
    ImageDraw.Draw(image).ellipse([cx - r, cy - r, cx + r, cy + r], fill=(250, 250, 250))
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def fill_dataset_form(page, archive: Path, **fields: str) -> None:  # type: ignore[no-untyped-def]
    values = {"name": "Colours", "image_width": "32", "image_height": "32", "val_percent": "20",
              "test_percent": "10", "seed": "7", **fields}
    page.goto("/datasets/new/")
    for field, value in values.items():
        page.fill(f"#id_{field}", value)
    page.select_option("#id_channels", "3")
    page.set_input_files("#id_archive", str(archive))


def submit(page) -> None:  # type: ignore[no-untyped-def]
    page.click("form.form-grid button[type=submit]")
    page.wait_for_load_state("load")


def watch_until_ready(page, screenshot) -> list[tuple[str, bool, str]]:  # type: ignore[no-untyped-def]
    """What the page showed while it ingested, read without the test ever reloading it."""
    seen: list[tuple[str, bool, str]] = []
    shot = False
    deadline = time.monotonic() + OUTCOME_MS / 1000
    while time.monotonic() < deadline:
        try:
            state = page.evaluate("""() => {
                const badge = document.getElementById('status-badge');
                const track = document.querySelector('[role=progressbar]');
                const bar = document.getElementById('progress-bar');
                return [badge ? badge.textContent.trim() : '', !!track && track.offsetWidth > 0 && !!bar,
                        bar ? bar.style.width : ''];
            }""")
        except Exception:  # the page's own reload replaced the document under us
            continue
        seen.append(tuple(state))
        if state[0] == "running" and state[2] not in ("", "0%") and not shot:
            screenshot(page, "04-dataset-running")
            shot = True
        if state[0] == "ready" and page.locator("#class-counts").count():
            return seen
        time.sleep(0.05)
    raise AssertionError(f"the dataset page never showed 'ready' by itself; it showed {seen[-5:]}")


# --- (a) logging in -------------------------------------------------------------------------

def test_it_shows_an_error_for_a_wrong_password(page, alice, screenshot):  # type: ignore[no-untyped-def]
    page.goto("/accounts/login/")
    screenshot(page, "01-login")

    log_in(page, "alice", "not-her-password")

    assert page.get_by_role("alert").inner_text().startswith("Your username and password didn't match")
    assert "/accounts/login/" in page.url


def test_it_lands_on_the_dashboard_with_the_user_name_after_logging_in(page, alice, web_server,  # type: ignore[no-untyped-def]
                                                                      screenshot):
    log_in(page, "alice", "alice-password")

    assert page.url == f"{web_server}/"
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.locator(".topbar .who").inner_text() == "alice"
    screenshot(page, "02-dashboard-empty")


def test_it_sends_an_anonymous_visitor_to_the_login_page(page):  # type: ignore[no-untyped-def]
    page.goto("/datasets/")

    assert re.search(r"/accounts/login/\?next=/datasets/$", page.url)
    assert page.locator("#id_username").is_visible()


# --- (b) upload with live progress ----------------------------------------------------------

def test_it_uploads_a_zip_and_follows_the_ingest_live_until_ready(alice_page, celery_worker, tmp_path,  # type: ignore[no-untyped-def]
                                                                 screenshot):
    page = alice_page
    fill_dataset_form(page, big_colour_zip(tmp_path / "colours.zip"), name="Big colours")
    submit(page)

    assert re.search(r"/datasets/\d+/$", page.url)
    first = page.locator("#status-badge").inner_text()
    assert first in ("queued", "running"), f"the page opened at {first!r}: the ingest was too quick to watch"
    assert page.get_by_role("progressbar").is_visible() and page.locator("#progress-bar").count() == 1

    seen = watch_until_ready(page, screenshot)

    statuses = [status for status, _, _ in seen]
    assert "running" in statuses, f"never saw the ingest running: {statuses[:3]}...{statuses[-3:]}"
    assert all(bar for status, bar, _ in seen if status in ("queued", "running"))
    assert any(width not in ("", "0%") for status, _, width in seen if status == "running"), "the bar moved"
    assert page.locator("#status-badge").inner_text() == "ready"
    assert page.get_by_role("progressbar").count() == 0
    assert [r.inner_text().split("\t")[0] for r in page.locator("#class-counts tbody tr").all()] == \
        ["blue", "green", "red"]
    assert page.locator("#class-counts tfoot th").last.inner_text() == "600"


# --- (c) the ready dataset page -------------------------------------------------------------

def test_it_shows_counts_chart_thumbnails_and_mean_of_a_ready_dataset(alice_page, celery_worker, tmp_path,  # type: ignore[no-untyped-def]
                                                                     screenshot):
    page = alice_page
    members = {**class_images(per_class=20, classes=("red",)), **class_images(per_class=10, classes=("green",)),
               **class_images(per_class=30, classes=("blue",))}
    archive = tmp_path / "colours.zip"
    archive.write_bytes(zip_bytes(members))
    fill_dataset_form(page, archive, image_width="24", image_height="20", val_percent="20", test_percent="10")
    submit(page)
    page.wait_for_selector("#class-counts", timeout=OUTCOME_MS)
    page.wait_for_function("() => document.querySelector('#class-chart .main-svg')")
    page.wait_for_function("() => [...document.images].every((img) => img.complete)")

    rows = [[c.inner_text() for c in row.locator("td").all()] for row in page.locator("#class-counts tbody tr").all()]
    assert rows == [["blue", "21", "6", "3", "30"], ["green", "7", "2", "1", "10"], ["red", "14", "4", "2", "20"]]
    assert page.locator("#class-chart .main-svg").count() >= 1
    assert page.locator("#class-chart g.trace.bars").count() == 3, "a bar trace per split"
    assert page.locator("#class-chart g.point path").count() == 9, "a bar per class and split"
    thumbs = page.locator(".thumbs img")
    assert thumbs.count() == 24, "eight samples for each of three classes"
    assert page.evaluate("() => [...document.querySelectorAll('.thumbs img')].every((i) => i.naturalWidth === 24)")
    assert page.evaluate("() => document.getElementById('mean-image').naturalWidth") == 24
    screenshot(page, "05-dataset-ready")


# --- (d) form errors ------------------------------------------------------------------------

def test_it_shows_an_error_when_validation_and_test_take_too_much(alice_page, tmp_path, screenshot):  # type: ignore[no-untyped-def]
    page = alice_page
    archive = tmp_path / "colours.zip"
    archive.write_bytes(zip_bytes(class_images(per_class=3)))
    fill_dataset_form(page, archive, val_percent="60", test_percent="40")
    submit(page)

    assert page.url.endswith("/datasets/new/")
    error = page.locator(".field.has-error .error")
    assert error.inner_text() == "Validation and test together may take at most 90% of the images."
    assert page.locator("#id_val_percent").input_value() == "60", "the form keeps what was typed"
    assert "Choose the archive again" in page.locator(".form-summary").inner_text()
    screenshot(page, "03-upload-form-error")
    assert not Dataset.objects.exists()


def test_it_refuses_a_file_that_is_not_an_archive(alice_page, tmp_path):  # type: ignore[no-untyped-def]
    page = alice_page
    notes = tmp_path / "notes.zip"
    notes.write_text("these are not images\n" * 50)
    fill_dataset_form(page, notes)
    submit(page)

    assert "not a zip or tar archive" in page.locator(".field.has-error .error").inner_text()
    assert not Dataset.objects.exists()


# --- (e) the example dataset ----------------------------------------------------------------

def test_it_creates_the_example_digits_from_an_empty_dashboard(alice_page, celery_worker, screenshot):  # type: ignore[no-untyped-def]
    page = alice_page
    page.get_by_role("button", name="Create the example digits dataset").click()

    page.wait_for_selector("#class-counts", timeout=OUTCOME_MS)
    page.wait_for_function("() => document.querySelector('#class-chart .main-svg')")
    page.wait_for_function("() => [...document.images].every((img) => img.complete && img.naturalWidth > 0)")

    assert page.locator("h1").inner_text() == "Handwritten digits (example)"
    assert page.locator("#status-badge").inner_text() == "ready"
    assert [c.inner_text() for c in page.locator("#class-counts tbody td:first-child").all()] == \
        [str(d) for d in range(10)]
    assert page.locator("#class-counts tfoot th").last.inner_text() == "1797"
    screenshot(page, "06-example-digits")


# --- (f) delete -----------------------------------------------------------------------------

def test_it_deletes_a_dataset_from_its_page(alice_page, alice, celery_worker, screenshot):  # type: ignore[no-untyped-def]
    page = alice_page
    keep = wait_dataset(services.dataset_create_example(owner=alice).pk)
    doomed = wait_dataset(services.dataset_create_example(owner=alice).pk)
    Dataset.objects.filter(pk=doomed.pk).update(name="Doomed digits")
    page.goto("/datasets/")
    screenshot(page, "07-dataset-list")

    page.goto(f"/datasets/{doomed.pk}/")
    dialogs: list[str] = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url("**/datasets/")

    assert dialogs == ["Delete this dataset and its files?"]
    assert page.locator(".flash").inner_text() == "Deleted dataset 'Doomed digits'."
    names = [a.inner_text() for a in page.locator("table.list tbody td:first-child a").all()]
    assert names == [keep.name]
    assert not Dataset.objects.filter(pk=doomed.pk).exists()
