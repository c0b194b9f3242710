"""Detection datasets through HTTP: created by the API and the form, their figures answered by
GET datasets/{id}/, the example generated and ingested by the real worker, and the explore page."""
from __future__ import annotations

import io
import shutil
import tarfile

import numpy as np
import pytest
from django.test import Client
from PIL import Image

from datasets import services
from datasets.models import Dataset
from tests.conftest import OUTCOME_SECONDS, wait_dataset, wait_for, zip_bytes
from tests.datasets.test_detection_ingest import kitti, png, voc

VALID = {"name": "Cars", "task": "detection", "image_width": 40, "image_height": 20, "channels": 3,
         "resize_mode": "squash", "val_percent": 0, "test_percent": 0, "seed": 0}


def members() -> dict[str, bytes]:
    """Two train images with boxes (one of them clipped away by nothing), one without, one val image."""
    return {"train/images/a.png": png(), "train/images/b.png": png(), "train/images/c.png": png(),
            "val/images/d.png": png(),
            "train/labels/a.txt": (kitti("Car", 4, 2, 12, 10) + kitti("Van", 14, 0, 30, 20)).encode(),
            "train/labels/b.txt": (kitti("Car", 1, 1, 9, 9) + kitti("Car", 20, 5, 20, 9)).encode(),
            "val/labels/d.txt": (kitti("Van", 1, 1, 9, 9) + kitti("DontCare", 20, 0, 40, 20)).encode()}


def post_archive(client, data: bytes, filename: str = "cars.zip", **fields):  # type: ignore[no-untyped-def]
    archive = io.BytesIO(data)
    archive.name = filename
    return client.post("/api/v1/datasets/", {**VALID, **fields, "archive": archive}, format="multipart")


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ingested(response) -> Dataset:  # type: ignore[no-untyped-def]
    assert response.status_code == 201, response.content
    services.dataset_ingest(dataset_id=response.json()["id"])
    return Dataset.objects.get(pk=response.json()["id"])


# --- the API --------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize(("pack", "filename"), [(zip_bytes, "cars.zip"), (tar_bytes, "cars.tar.gz")])
def test_an_uploaded_archive_becomes_a_ready_detection_dataset_with_its_box_figures(alice_api, pack, filename):
    dataset = ingested(post_archive(alice_api, pack(members()), filename))

    assert dataset.status == "ready", dataset.error
    body = alice_api.get(f"/api/v1/datasets/{dataset.pk}/").json()
    assert body["task"] == "detection" and body["box_format"] == "kitti"
    assert body["classes"] == ["Car", "Van"]
    assert body["split_counts"] == {"train": 3, "val": 1, "test": 0}
    assert body["box_counts"] == {"train": {"Car": 2, "Van": 1}, "val": {"Car": 0, "Van": 1},
                                  "test": {"Car": 0, "Van": 0}}
    assert body["boxes_dropped"] == 1
    assert body["images_without_boxes"] == {"train": 1, "val": 0, "test": 0}
    assert body["ignore_index"] is None and set(body["colormap"]) == {"Car", "Van"}
    assert sorted(p.name for p in dataset.folder.iterdir() if p.suffix == ".npy") == [
        "mean.npy", "test_boxes.npy", "test_images.npy", "train_boxes.npy", "train_images.npy",
        "val_boxes.npy", "val_images.npy"]
    assert np.load(dataset.folder / "val_boxes.npy").shape == (1, 2, 6)
    assert not (dataset.folder / services.EXTRACTED).exists()
    shutil.rmtree(dataset.folder, ignore_errors=True)


@pytest.mark.django_db
def test_box_format_forces_the_format_through_the_api(alice_api):
    files = {"images/a.png": png(), "labels/a.xml": voc([("person", 5, 3, 12, 10, 1)])}
    dataset = ingested(post_archive(alice_api, zip_bytes(files), box_format="voc"))

    assert dataset.status == "ready", dataset.error
    assert dataset.box_format == "voc" and dataset.box_counts["train"] == {"person": 1}
    assert np.load(dataset.folder / "train_boxes.npy")[0, 0].tolist() == [0, 4, 2, 12, 10, 1]
    shutil.rmtree(dataset.folder, ignore_errors=True)


@pytest.mark.django_db
def test_a_bad_label_ends_the_dataset_in_error_naming_it_with_nothing_left(alice_api):
    files = members() | {"train/labels/ghost.txt": kitti("Car", 1, 1, 5, 5).encode()}
    dataset = ingested(post_archive(alice_api, zip_bytes(files)))

    assert dataset.status == "error"
    assert dataset.error == ("The label file 'train/labels/ghost.txt' has no image: expected train/images/ghost "
                             "with any image extension.")
    assert list(dataset.folder.iterdir()) == []


@pytest.mark.django_db
@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"box_format": "pascal"}, "box_format", '"pascal" is not a box format; use kitti, yolo, voc or coco'),
    ({"task": "classification", "box_format": "yolo"}, "box_format", "for detection datasets only"),
    ({"task": "segmentation", "box_format": "coco"}, "box_format", "for detection datasets only"),
    ({"ignore_index": 3}, "ignore_index", "for segmentation datasets only"),
    ({"boxformat": "yolo"}, "boxformat", "did you mean box_format?"),
])
def test_a_bad_detection_option_is_a_400_naming_the_field(alice_api, fields, field, words):
    response = post_archive(alice_api, zip_bytes(members()), **fields)

    assert response.status_code == 400
    assert field in response.json()["detail"] and words in str(response.json()["detail"][field])
    assert not Dataset.objects.exists()


@pytest.mark.django_db
def test_other_tasks_answer_no_detection_fields(alice_api, alice):
    dataset = Dataset.objects.create(owner=alice, name="c", source="example", source_name="x", image_width=8,
                                     image_height=8, channels=1, resize_mode="squash", val_percent=0, test_percent=0,
                                     seed=0)
    body = alice_api.get(f"/api/v1/datasets/{dataset.pk}/").json()
    assert (body["box_format"], body["box_counts"], body["boxes_dropped"], body["images_without_boxes"]) == (
        None, None, None, None)


@pytest.mark.django_db
def test_the_form_creates_a_detection_dataset_with_its_box_format(alice):
    browser = Client()
    browser.force_login(alice)
    page = browser.get("/datasets/new/").content.decode()
    assert 'value="detection"' in page and 'name="box_format"' in page
    archive = io.BytesIO(zip_bytes(members()))
    archive.name = "cars.zip"
    response = browser.post("/datasets/new/", {**VALID, "box_format": "kitti", "archive": archive, "min_per_class": 1})

    assert response.status_code == 302, response.content.decode()[-2000:]
    dataset = Dataset.objects.get()
    assert dataset.task == "detection" and dataset.box_format == "kitti"
    shutil.rmtree(dataset.folder, ignore_errors=True)


# --- the example ----------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_the_example_detection_dataset_is_generated_as_a_yolo_zip_and_ingested(celery_worker, alice_api):
    # By the real worker, as the segmentation example is: generating 600 images outlasts a heartbeat.
    response = alice_api.post("/api/v1/datasets/example/", {"example": "detection"}, format="json")
    assert response.status_code == 201, response.content
    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "ready", dataset.error
    assert dataset.task == "detection" and dataset.box_format == "yolo" and dataset.image_shape == [3, 96, 128]
    assert dataset.classes == ["circle", "square", "triangle"]
    assert dataset.split_counts == {"train": 420, "val": 120, "test": 60}
    assert dataset.boxes_dropped == 0
    assert all(dataset.box_counts["train"][c] > 300 for c in dataset.classes)
    assert sum(dataset.images_without_boxes.values()) == 0
    boxes = np.load(dataset.folder / "train_boxes.npy")
    real = boxes[boxes[:, :, 0] >= 0]
    sides = np.sqrt((real[:, 3] - real[:, 1]) * (real[:, 4] - real[:, 2]))
    assert boxes.shape[1] == 6 and sides.min() >= 7.99 and sides.max() <= 40.01 and (sides < 16).mean() > 0.15
    wait_for(lambda: not list(dataset.folder.glob("upload*")), OUTCOME_SECONDS,
             "the generated archive to be removed once the dataset is ready")


def test_the_example_boxes_are_exact_around_the_drawn_shapes(tmp_path):
    import zipfile

    from datasets.example import DETECTION_HEIGHT, DETECTION_WIDTH, write_detection_zip

    write_detection_zip(tmp_path / "shapes.zip", count=8, seed=5)
    with zipfile.ZipFile(tmp_path / "shapes.zip") as archive:
        for index in range(8):
            image = np.asarray(Image.open(io.BytesIO(archive.read(f"shapes/images/{index:04d}.png")))).astype(int)
            lines = archive.read(f"shapes/labels/{index:04d}.txt").decode().splitlines()
            assert image.shape == (DETECTION_HEIGHT, DETECTION_WIDTH, 3) and 1 <= len(lines) <= 6
            # The last shape drawn lies on top of the others: its colour reaches each edge of its box
            # and no further.
            _, cx, cy, w, h = (float(v) for v in lines[-1].split())
            x1, x2 = round((cx - w / 2) * DETECTION_WIDTH), round((cx + w / 2) * DETECTION_WIDTH)
            y1, y2 = round((cy - h / 2) * DETECTION_HEIGHT), round((cy + h / 2) * DETECTION_HEIGHT)
            shape = (image == image[(y1 + y2) // 2, (x1 + x2) // 2]).all(axis=2)
            ys, xs = np.nonzero(shape)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)


@pytest.mark.django_db
def test_the_datasets_page_offers_the_detection_example(alice):
    browser = Client()
    browser.force_login(alice)
    assert 'value="detection"' in browser.get("/datasets/").content.decode()


# --- the explore page -----------------------------------------------------------------------

@pytest.mark.django_db
def test_the_explore_page_shows_boxes_per_class_sizes_and_drawn_samples_to_the_owner_only(alice_api, alice, bob):
    dataset = ingested(post_archive(alice_api, zip_bytes(members())))
    owner, stranger = Client(), Client()
    owner.force_login(alice)
    stranger.force_login(bob)

    page = owner.get(f"/datasets/{dataset.pk}/").content.decode()
    table = page[page.index('id="box-counts"') : page.index("</table>", page.index('id="box-counts"'))]
    cells = [c.split("<")[0] for c in table.split("<td>")[1:]]
    assert "0: Car" in table and "1: Van" in table
    assert cells[1:5] == ["2", "0", "0", "2"] and cells[6:10] == ["1", "1", "0", "2"]  # Car, then Van
    assert cells[10:13] == ["1", "0", "0"]  # images with no box per split
    assert "1 box" in page and "dropped" in page
    assert 'id="box-chart"' in page and 'id="size-chart"' in page and 'id="box-sizes-data"' in page
    assert f"/datasets/{dataset.pk}/boxes/train/0.png" in page and f"/datasets/{dataset.pk}/boxes/val/0.png" in page

    drawn = owner.get(f"/datasets/{dataset.pk}/boxes/val/0.png")
    assert drawn["Content-Type"] == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(drawn.content)).convert("RGB"))
    assert pixels.shape == (20 * 7, 40 * 7, 3)  # enlarged 7 times to at least 256 wide
    van = tuple(dataset.class_colours[1])
    assert tuple(pixels[5 * 7, 5 * 7 - 1]) == (0, 0, 0)
    assert tuple(pixels[5 * 7, 1 * 7]) == van  # the left edge of the Van box, 1..9 by 1..9
    assert stranger.get(f"/datasets/{dataset.pk}/boxes/val/0.png").status_code == 404
    assert owner.get(f"/datasets/{dataset.pk}/boxes/val/5.png").status_code == 404
    shutil.rmtree(dataset.folder, ignore_errors=True)


@pytest.mark.django_db
def test_the_box_sizes_are_each_class_widths_and_heights(alice_api):
    from datasets.selectors import dataset_box_sizes

    dataset = ingested(post_archive(alice_api, zip_bytes(members())))
    sizes = dataset_box_sizes(dataset=dataset)
    assert sorted(zip(sizes["Car"]["width"], sizes["Car"]["height"])) == [(8, 8), (8, 8)]
    assert sorted(zip(sizes["Van"]["width"], sizes["Van"]["height"])) == [(8, 8), (16, 20)]
    shutil.rmtree(dataset.folder, ignore_errors=True)
