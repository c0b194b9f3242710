"""Bad data and bad options: every one ends in a clear message, and nothing is left behind."""
from __future__ import annotations

import html
import http.client
import io
import json
import os
import select
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client
from PIL import Image

from datasets.ingest import IngestError
from datasets.ingest.pipeline import scan_classes
from datasets.models import Dataset
from tests.conftest import class_images, make_image, wait_dataset, zip_bytes

PNG = make_image((220, 30, 30))
MiB = 1024**2

VALID_OPTIONS = {"name": "Colours", "image_width": 12, "image_height": 10, "channels": 3, "resize_mode": "squash",
                 "val_percent": 20, "test_percent": 0, "seed": 0, "min_per_class": 1}


# --- helpers --------------------------------------------------------------------------------

def archive_file(data: bytes, name: str = "colours.zip") -> io.BytesIO:
    archive = io.BytesIO(data)
    archive.name = name
    return archive


def upload(client, data: bytes, filename: str = "colours.zip", **fields):  # type: ignore[no-untyped-def]
    drop_stale_dataset_folders()
    payload = {**VALID_OPTIONS, **fields, "archive": archive_file(data, filename)}
    return client.post("/api/v1/datasets/", payload, format="multipart")


def drop_stale_dataset_folders() -> None:
    """Remove dataset folders that no row owns.

    A rolled-back test leaves its folder behind while SQLite hands its id out again; the next
    dataset with that id would find a stranger's upload in its folder.
    """
    known = {str(pk) for pk in Dataset.objects.values_list("pk", flat=True)}
    for folder in Path(settings.DATA_DIR, "datasets").glob("*"):
        if folder.name not in known:
            shutil.rmtree(folder, ignore_errors=True)


def upload_dir() -> Path:
    return Path(settings.FILE_UPLOAD_TEMP_DIR)


@pytest.fixture
def no_stray_uploads() -> Iterator[None]:
    """Fails the test if a request leaves a staged or temporary upload behind."""
    before = set(upload_dir().iterdir())
    yield
    assert set(upload_dir().iterdir()) - before == set(), "an upload was left in FILE_UPLOAD_TEMP_DIR"


def assert_no_staged_uploads() -> None:
    assert not [p.name for p in upload_dir().iterdir() if p.name.startswith("staged-") or ".upload" in p.name]


def page_text(response) -> str:  # type: ignore[no-untyped-def]
    return html.unescape(response.content.decode())


@pytest.fixture
def alice_browser(alice) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def server_root() -> Path:
    return Path(settings.WORKBENCH["SERVER_ROOTS"][0])


@pytest.fixture
def server_folder(server_root: Path, request) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A folder of class folders under the allowed server root, removed afterwards."""
    folder = server_root / f"colours-{request.node.name[-20:].replace('[', '-').replace(']', '')}"
    for name, data in class_images(5, ("red", "blue")).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def big_blank_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, format="PNG")  # a few kB however many pixels
    return buf.getvalue()


# --- bad data: the ingest ends in "error" with the reason, or skips and reports ------------

@pytest.mark.parametrize("layout", ["cats/{i}.png", "mydata/cats/{i}.png", "cats/{i}.png|cats/.DS_Store"])
def test_it_names_the_only_class_folder(tmp_path, layout):
    for i in range(3):
        for name in layout.format(i=i).split("|"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(PNG)

    with pytest.raises(IngestError) as caught:
        scan_classes(tmp_path)

    assert str(caught.value) == "Only one class folder was found ('cats'); at least two are needed."


def test_it_says_a_folder_of_loose_images_has_no_class_folders(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(PNG)

    with pytest.raises(IngestError, match="No class folders found: the data must hold one folder per class"):
        scan_classes(tmp_path)


@pytest.mark.django_db(transaction=True)
def test_it_fails_a_dataset_with_only_one_class_naming_the_class(celery_worker, alice_api):
    response = upload(alice_api, zip_bytes(class_images(4, ("cats",))))
    assert response.status_code == 201

    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "error"
    assert dataset.error == "Only one class folder was found ('cats'); at least two are needed."
    assert not list(dataset.folder.glob("*.npy"))


@pytest.mark.django_db(transaction=True)
def test_it_fails_a_class_whose_images_are_all_corrupt(celery_worker, alice_api, alice_browser):
    members = {**class_images(4, ("red",)), "dogs/1.png": b"not a picture", "dogs/2.jpg": PNG[:60],
               "dogs/3.gif": b"GIF89a broken"}
    response = upload(alice_api, zip_bytes(members))

    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "error"
    assert dataset.error == "Class 'dogs' has no readable images: every file in it failed to decode."
    assert not list(dataset.folder.glob("*.npy")), "no half-written arrays are left"
    assert alice_api.get(f"/api/v1/datasets/{dataset.pk}/").json()["error"] == dataset.error
    assert dataset.error in page_text(alice_browser.get(f"/datasets/{dataset.pk}/"))


@pytest.mark.django_db(transaction=True)
def test_it_skips_corrupt_files_among_good_ones_and_lists_them(celery_worker, alice_api, alice_browser):
    members = {**class_images(5, ("red", "blue")), "red/garbage.png": b"definitely not a png",
               "blue/cut-short.png": PNG[: len(PNG) // 2], "blue/empty.jpg": b""}
    response = upload(alice_api, zip_bytes(members))

    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "ready", dataset.error
    assert sum(dataset.split_counts.values()) == 10
    assert dataset.skipped["unreadable"] == 3
    assert dataset.skipped["too_large"] == 0
    listed = {item["file"] for item in dataset.skipped["examples"]}
    assert listed == {"red/garbage.png", "blue/cut-short.png", "blue/empty.jpg"}
    assert all(item["kind"] == "unreadable" and item["reason"] for item in dataset.skipped["examples"])
    assert alice_api.get(f"/api/v1/datasets/{dataset.pk}/").json()["skipped"]["unreadable"] == 3
    page = page_text(alice_browser.get(f"/datasets/{dataset.pk}/"))
    assert "3 unreadable image files" in page
    assert all(name in page for name in listed)


@pytest.mark.django_db(transaction=True)
def test_it_skips_an_image_over_the_pixel_cap_and_reports_it(celery_worker, alice_api, alice_browser):
    cap = settings.WORKBENCH["MAX_IMAGE_PIXELS"]
    assert 2100 * 2000 > cap
    members = {**class_images(4, ("red", "blue")), "red/huge.png": big_blank_png(2100, 2000)}
    response = upload(alice_api, zip_bytes(members))

    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "ready", dataset.error
    assert sum(dataset.split_counts.values()) == 8
    assert dataset.skipped["too_large"] == 1 and dataset.skipped["unreadable"] == 0
    [example] = dataset.skipped["examples"]
    assert example["file"] == "red/huge.png" and example["kind"] == "too_large"
    assert example["reason"] == f"2100x2000 pixels is over the {cap:,} pixel cap"
    page = page_text(alice_browser.get(f"/datasets/{dataset.pk}/"))
    assert "1 over the pixel cap" in page and "red/huge.png" in page


# --- bad options: 400 with the field named --------------------------------------------------

BAD_OPTIONS = [
    # (fields, field named, API message, form message)
    ({"channels": 2}, "channels", '"2" is not a valid choice.', "Select a valid choice. 2 is not one of"),
    ({"resize_mode": "stretch"}, "resize_mode", '"stretch" is not a valid choice.',
     "Select a valid choice. stretch is not one of"),
    ({"val_percent": 60, "test_percent": 40}, "test_percent",
     "Validation and test together may take at most 90% of the images.", None),
    ({"val_percent": 95}, "val_percent", "Ensure this value is less than or equal to 90.", None),
    ({"image_width": 4}, "image_width", "Ensure this value is greater than or equal to 8.", None),
    ({"image_width": 2000}, "image_width", "Ensure this value is less than or equal to 1024.", None),
    ({"image_height": "tall"}, "image_height", "A valid integer is required.", "Enter a whole number."),
    ({"seed": -1}, "seed", "Ensure this value is greater than or equal to 0.", None),
    ({"min_per_class": 5, "max_per_class": 2}, "max_per_class",
     "The maximum images per class must not be below the minimum.", None),
    ({"min_per_class": 0}, "min_per_class", "Ensure this value is greater than or equal to 1.", None),
    ({"name": ""}, "name", "This field may not be blank.", "This field is required."),
]
BAD_OPTION_IDS = [f"{field}-{list(fields.values())[-1]}" for fields, field, _, _ in BAD_OPTIONS]


@pytest.mark.django_db
@pytest.mark.parametrize("fields, field, message, _", BAD_OPTIONS, ids=BAD_OPTION_IDS)
def test_it_answers_400_naming_the_field_for_a_bad_option(alice_api, no_stray_uploads, fields, field, message, _):
    response = upload(alice_api, zip_bytes(class_images(2, ("red", "blue"))), **fields)

    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == f"{field}: {message}"
    assert body["detail"] == {field: [message]}
    assert Dataset.objects.count() == 0
    assert_no_staged_uploads()


@pytest.mark.django_db
@pytest.mark.parametrize("fields, field, message, form_message", BAD_OPTIONS, ids=BAD_OPTION_IDS)
def test_it_shows_the_bad_option_on_the_form(alice_browser, no_stray_uploads, fields, field, message, form_message):
    payload = {**VALID_OPTIONS, **fields, "archive": archive_file(zip_bytes(class_images(2, ("red", "blue"))))}

    response = alice_browser.post("/datasets/new/", payload)

    assert response.status_code == 400
    assert response.context["form"].errors.keys() == {field}
    assert (form_message or message) in page_text(response)
    assert Dataset.objects.count() == 0
    assert_no_staged_uploads()


@pytest.mark.django_db
def test_it_refuses_both_an_archive_and_a_server_folder(alice_api, alice_browser, server_folder):
    data = zip_bytes(class_images(2, ("red", "blue")))
    message = "Give either an archive or a server folder, not both."

    response = upload(alice_api, data, server_path=server_folder.name)
    form = alice_browser.post("/datasets/new/", {**VALID_OPTIONS, "archive": archive_file(data),
                                                 "server_path": server_folder.name})

    assert response.status_code == 400
    assert response.json() == {"error": f"server_path: {message}", "detail": {"server_path": [message]}}
    assert form.status_code == 400 and message in page_text(form)
    assert Dataset.objects.count() == 0
    assert_no_staged_uploads()


@pytest.mark.django_db
@pytest.mark.parametrize("server_path", ["", "   "])
def test_it_asks_for_an_archive_or_a_server_folder(alice_api, alice_browser, server_path):
    message = "Upload an archive (zip, tar, tar.gz) or name a server folder."

    response = alice_api.post("/api/v1/datasets/", {**VALID_OPTIONS, "server_path": server_path},
                              format="multipart")
    form = alice_browser.post("/datasets/new/", {**VALID_OPTIONS, "server_path": server_path})

    assert response.status_code == 400
    assert response.json() == {"error": f"archive: {message}", "detail": {"archive": [message]}}
    assert form.status_code == 400 and message in page_text(form)
    assert Dataset.objects.count() == 0


@pytest.mark.django_db
def test_it_accepts_json_without_an_archive_as_a_missing_source(alice_api):
    response = alice_api.post("/api/v1/datasets/", {"name": "No source"}, format="json")

    assert response.status_code == 400
    assert "archive" in response.json()["detail"]


# --- server folders -------------------------------------------------------------------------

@pytest.fixture
def escape_link(server_root: Path, tmp_path: Path) -> Iterator[Path]:
    """A link inside the allowed root that points at a folder of class folders outside it."""
    outside = tmp_path / "outside"
    for name, data in class_images(3, ("red", "blue")).items():
        (outside / name).parent.mkdir(parents=True, exist_ok=True)
        (outside / name).write_bytes(data)
    link = server_root / f"escape-{os.getpid()}"
    link.symlink_to(outside, target_is_directory=True)
    yield link
    link.unlink()


@pytest.mark.django_db
@pytest.mark.parametrize("server_path", ["/etc", "../../etc", "/", "..", "~", "LINK", "LINK/red"])
def test_it_refuses_a_server_folder_outside_the_allowed_roots(alice_api, alice_browser, escape_link, server_path):
    server_path = server_path.replace("LINK", escape_link.name)

    response = alice_api.post("/api/v1/datasets/", {**VALID_OPTIONS, "server_path": server_path},
                              format="multipart")
    form = alice_browser.post("/datasets/new/", {**VALID_OPTIONS, "server_path": server_path})

    assert response.status_code == 400
    body = response.json()
    assert "is outside the allowed server folders" in body["error"]
    assert list(body["detail"]) == ["server_path"]
    assert form.status_code == 400
    assert f"'{server_path}' is outside the allowed server folders" in page_text(form)
    assert Dataset.objects.count() == 0


@pytest.mark.django_db
def test_it_refuses_a_server_folder_that_does_not_exist(alice_api):
    response = alice_api.post("/api/v1/datasets/", {**VALID_OPTIONS, "server_path": "no-such-folder"},
                              format="multipart")

    assert response.status_code == 400
    assert response.json()["detail"] == {"server_path": ["'no-such-folder' is not a folder on the server."]}
    assert Dataset.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
def test_it_ingests_a_server_folder_inside_the_allowed_root(celery_worker, alice_api, server_folder, absolute):
    before = sorted(p.relative_to(server_folder) for p in server_folder.rglob("*"))
    server_path = str(server_folder) if absolute else server_folder.name

    drop_stale_dataset_folders()
    response = alice_api.post("/api/v1/datasets/", {**VALID_OPTIONS, "server_path": server_path},
                              format="multipart")
    assert response.status_code == 201, response.json()
    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "ready", dataset.error
    assert dataset.classes == ["blue", "red"]
    assert dataset.split_counts == {"train": 8, "val": 2, "test": 0}
    assert dataset.source_name == str(server_folder.resolve())
    assert sorted(p.relative_to(server_folder) for p in server_folder.rglob("*")) == before, "left untouched"


@pytest.mark.django_db(transaction=True)
def test_it_fails_a_server_folder_whose_root_was_withdrawn(celery_worker, alice, server_folder):
    """The worker checks the folder again: a row pointing outside the roots never ingests."""
    dataset = Dataset.objects.create(
        owner=alice, name="Sneaky", source=Dataset.Source.SERVER_PATH, source_name="/etc", image_width=8,
        image_height=8, channels=1, resize_mode="squash", val_percent=0, test_percent=0, seed=0)
    dataset.folder.mkdir(parents=True, exist_ok=True)
    from datasets.tasks import ingest_dataset

    ingest_dataset.delay(dataset.pk)
    dataset = wait_dataset(dataset.pk)

    assert dataset.status == "error"
    assert "'/etc' is outside the allowed server folders" in dataset.error


# --- uploads over the size cap --------------------------------------------------------------

def oversized() -> bytes:
    return b"\0" * (settings.MAX_UPLOAD_BYTES + 256 * 1024)


@pytest.mark.django_db
def test_it_answers_413_for_an_api_upload_over_the_cap(alice_api, no_stray_uploads):
    response = upload(alice_api, oversized(), "big.zip")

    assert response.status_code == 413
    assert response.json() == {"error": "The upload is larger than the configured limit.", "detail": {}}
    assert Dataset.objects.count() == 0
    assert_no_staged_uploads()


@pytest.mark.django_db
def test_it_accepts_an_api_upload_just_under_the_cap(alice_api, no_stray_uploads, django_capture_on_commit_callbacks):
    # An uncompressed zip padded with a large ignored member: still a valid archive.
    padding = settings.MAX_UPLOAD_BYTES - 512 * 1024
    data = zip_bytes({**class_images(2, ("red", "blue")), "padding.bin": b"\0" * padding})
    assert len(data) < settings.MAX_UPLOAD_BYTES

    response = upload(alice_api, data, "padded.zip")  # on_commit never fires: nothing is queued

    assert response.status_code == 201, response.json()
    dataset = Dataset.objects.get()
    assert (dataset.folder / "upload.zip").stat().st_size == len(data)
    shutil.rmtree(dataset.folder)


@pytest.mark.django_db
def test_it_shows_the_size_cap_on_the_form(alice_browser, no_stray_uploads):
    payload = {**VALID_OPTIONS, "archive": archive_file(oversized(), "big.zip")}

    response = alice_browser.post("/datasets/new/", payload)

    assert response.status_code == 400
    assert "The upload is larger than the configured limit" in page_text(response)
    assert Dataset.objects.count() == 0
    assert_no_staged_uploads()


def raw_post(base_url: str, headers: dict[str, str], body_chunks: list[bytes] = ()) -> tuple[int, str, bytes]:
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.putrequest("POST", "/api/v1/datasets/")
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        for chunk in body_chunks:
            # Stop sending once the server has answered, as curl does: it refuses a body over the cap
            # early and closes, and more data sent after that close draws a reset that loses the answer.
            if select.select([connection.sock], [], [], 0.05)[0]:
                break
            try:
                connection.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


@pytest.mark.django_db
def test_it_answers_413_json_from_the_asgi_server_for_a_declared_length_over_the_cap(web_server, no_stray_uploads):
    status, content_type, body = raw_post(web_server, {
        "Content-Type": "multipart/form-data; boundary=xyz",
        "Content-Length": str(settings.MAX_UPLOAD_BYTES + 2 * MiB)})

    assert status == 413
    assert content_type == "application/json"
    payload = json.loads(body)
    assert payload["error"].startswith("The upload is larger than the")
    assert payload["detail"]["limit_bytes"] >= settings.MAX_UPLOAD_BYTES
    assert Dataset.objects.count() == 0


@pytest.mark.django_db
def test_it_answers_413_json_from_the_asgi_server_for_a_chunked_body_over_the_cap(web_server, no_stray_uploads):
    chunk = b"\0" * MiB
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (settings.MAX_UPLOAD_BYTES // MiB + 3) + [b"0\r\n\r\n"]

    status, content_type, body = raw_post(web_server, {
        "Content-Type": "multipart/form-data; boundary=xyz", "Transfer-Encoding": "chunked"}, chunks)

    assert status == 413
    assert content_type == "application/json"
    assert json.loads(body)["error"].startswith("The upload is larger than the")
    assert Dataset.objects.count() == 0
