"""Segmentation datasets: images and masks of class indices become aligned arrays, or a clear error
naming the file with nothing left behind."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import services
from datasets.ingest import IngestError
from datasets.ingest.pipeline import IngestOptions
from datasets.ingest.segmentation import run_segmentation_ingest
from datasets.models import Dataset
from tests.conftest import OUTCOME_SECONDS, wait_dataset, wait_for, zip_bytes

RGB_COLOURS = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]


# --- helpers --------------------------------------------------------------------------------

def png(array: np.ndarray, mode: str | None = None, palette: list[int] | None = None) -> bytes:
    img = Image.fromarray(array.astype(np.uint8))
    if mode == "P":
        img = img.convert("L").convert("P") if array.ndim == 3 else Image.fromarray(array.astype(np.uint8), "P")
        img.putpalette(palette or [])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def stripes_mask(width: int = 20, height: int = 16, classes: int = 3) -> np.ndarray:
    """Vertical bands of class 0, 1, 2...: a known pattern to follow through a resize."""
    return (np.arange(width)[None, :] * classes // width).repeat(height, axis=0).astype(np.uint8)


def image_for(mask: np.ndarray) -> np.ndarray:
    """An RGB image whose red channel shows the mask's class (class c: red 100 * c)."""
    rgb = np.zeros(mask.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = mask * 100
    return rgb


def sample_members(n: int = 6, prefix: str = "", mask_of=lambda m: png(m)) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    members = {}
    for i in range(n):
        mask = np.roll(stripes_mask(), i, axis=1)
        members[f"{prefix}images/{i}.png"] = png(image_for(mask))
        members[f"{prefix}masks/{i}.png"] = mask_of(mask)
    return members


def write_folder(root: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def options(**changes) -> IngestOptions:  # type: ignore[no-untyped-def]
    base = dict(width=10, height=8, channels=3, resize_mode="squash", val_percent=20, test_percent=20, seed=0,
                task="segmentation")
    return IngestOptions(**{**base, **changes})


def ingest(tmp_path: Path, members: dict[str, bytes], **changes):  # type: ignore[no-untyped-def]
    source = write_folder(tmp_path / "source", members)
    return run_segmentation_ingest(source, tmp_path / "out", options(**changes), max_pixels=10**7, workers=2)


def refused(tmp_path: Path, members: dict[str, bytes], **changes) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(IngestError) as caught:
        ingest(tmp_path, members, **changes)
    assert not list((tmp_path / "out").glob("*")), "a failed ingest left files behind"
    return str(caught.value)


def all_masks(out: Path) -> np.ndarray:
    return np.concatenate([np.load(out / f"{s}_masks.npy") for s in ("train", "val", "test")])


# --- happy paths ----------------------------------------------------------------------------

def test_it_ingests_single_channel_masks_into_aligned_arrays(tmp_path):
    result = ingest(tmp_path, sample_members(10) | {"classes.txt": b"sky\nroad\ncar\n"})

    out = tmp_path / "out"
    assert result.classes == ["sky", "road", "car"]
    assert result.split_counts == {"train": 6, "val": 2, "test": 2}
    assert np.load(out / "train_images.npy").shape == (6, 3, 8, 10)
    assert np.load(out / "train_masks.npy").shape == (6, 8, 10)
    assert np.load(out / "train_masks.npy").dtype == np.uint8
    assert json.loads((out / "classes.json").read_text()) == ["sky", "road", "car"]
    assert json.loads((out / "colormap.json").read_text()) == result.colormap
    assert (out / "mean.npy").exists()
    assert set(result.class_pixels) == {"train", "val", "test"}
    assert sum(result.class_pixels["train"].values()) == pytest.approx(1.0)
    assert result.class_pixels["train"]["sky"] == pytest.approx(0.4, abs=0.05)


def test_it_names_classes_after_the_largest_index_without_classes_txt(tmp_path):
    result = ingest(tmp_path, sample_members())

    assert result.classes == ["class_0", "class_1", "class_2"]
    assert result.colormap["class_0"] == [0, 0, 0] and len({tuple(c) for c in result.colormap.values()}) == 3


def test_it_reads_palette_masks_with_their_palette_as_the_colour_map(tmp_path):
    palette = [10, 20, 30, 200, 0, 0, 0, 200, 0]
    result = ingest(tmp_path, sample_members(mask_of=lambda m: png(m, "P", palette)))

    assert result.classes == ["class_0", "class_1", "class_2"]
    assert result.colormap == {"class_0": [10, 20, 30], "class_1": [200, 0, 0], "class_2": [0, 200, 0]}
    assert set(np.unique(all_masks(tmp_path / "out"))) == {0, 1, 2}


def test_it_maps_rgb_masks_through_colormap_txt(tmp_path):
    colormap = "".join(f"{r} {g} {b}\n" for r, g, b in RGB_COLOURS).encode()
    members = sample_members(mask_of=lambda m: png(np.array(RGB_COLOURS, dtype=np.uint8)[m]))
    result = ingest(tmp_path, members | {"colormap.txt": colormap, "classes.txt": b"bg\nred\nblue\n"})

    assert result.colormap == {"bg": [0, 0, 0], "red": [255, 0, 0], "blue": [0, 0, 255]}
    masks = all_masks(tmp_path / "out")
    assert set(np.unique(masks)) == {0, 1, 2}


def test_it_keeps_the_folders_splits_and_ignores_the_percentages(tmp_path):
    members = sample_members(4, "data/train/") | sample_members(2, "data/val/") | sample_members(1, "data/test/")
    result = ingest(tmp_path, members | {"data/classes.txt": b"a\nb\nc\n"}, val_percent=50, test_percent=0)

    assert result.split_counts == {"train": 4, "val": 2, "test": 1}
    assert result.classes == ["a", "b", "c"]


def test_it_splits_by_the_seed(tmp_path):
    first = ingest(tmp_path / "a", sample_members(10), seed=3)
    again = ingest(tmp_path / "b", sample_members(10), seed=3)

    assert first.split_counts == again.split_counts
    assert np.array_equal(np.load(tmp_path / "a/out/val_masks.npy"), np.load(tmp_path / "b/out/val_masks.npy"))


def test_ignore_index_pixels_stay_and_count_in_no_share(tmp_path):
    def with_ignore(mask: np.ndarray) -> bytes:
        mask = mask.copy()
        mask[:4] = 255
        return png(mask)

    result = ingest(tmp_path, sample_members(mask_of=with_ignore), width=20, height=16, val_percent=0, test_percent=0)

    assert 255 in np.unique(all_masks(tmp_path / "out"))
    assert sum(result.class_pixels["train"].values()) == pytest.approx(1.0)
    assert result.classes == ["class_0", "class_1", "class_2"]


def test_a_nearest_resize_makes_no_new_values(tmp_path):
    rng = np.random.default_rng(0)
    members = {}
    for i in range(4):
        mask = rng.choice([0, 3, 7], size=(37, 41)).astype(np.uint8)
        members |= {f"images/{i}.png": png(image_for(mask)), f"masks/{i}.png": png(mask)}
    ingest(tmp_path, members, width=13, height=11, val_percent=0, test_percent=0)

    assert set(np.unique(all_masks(tmp_path / "out"))) <= {0, 3, 7}


@pytest.mark.parametrize("resize_mode", ["squash", "crop", "fill", "half_crop"])
def test_the_mask_stays_aligned_with_its_image(tmp_path, resize_mode):
    mask = stripes_mask(60, 30)
    members = {"images/a.png": png(image_for(mask)), "masks/a.png": png(mask)}
    ingest(tmp_path, members, width=24, height=24, resize_mode=resize_mode, val_percent=0, test_percent=0)

    image = np.load(tmp_path / "out/train_images.npy")[0, 0].astype(int)
    stored = np.load(tmp_path / "out/train_masks.npy")[0]
    labelled = stored != 255
    # Away from the bands' edges (where bilinear blends two classes) the image shows the mask's class.
    interior = labelled & (np.abs(image - np.round(image / 100) * 100) < 5)
    assert interior.sum() > 0.5 * labelled.sum()
    assert np.array_equal(np.round(image[interior] / 100), stored[interior])
    if resize_mode == "fill":
        assert (stored == 255).any() and labelled.any()  # the padding is ignore_index, not a class


# --- bad input ------------------------------------------------------------------------------

def test_it_names_an_image_without_a_mask(tmp_path):
    members = sample_members(3)
    del members["masks/1.png"]
    assert refused(tmp_path, members) == "The image 'images/1.png' has no mask: expected masks/1.png."


def test_it_names_a_mask_without_an_image(tmp_path):
    members = sample_members(3)
    del members["images/2.png"]
    assert "The mask 'masks/2.png' has no image" in refused(tmp_path, members)


def test_it_names_a_mask_whose_size_differs_from_its_image(tmp_path):
    members = sample_members(3) | {"masks/0.png": png(stripes_mask(18, 16))}
    message = refused(tmp_path, members)
    assert "The mask 'masks/0.png' is 18x16 pixels but its image 'images/0.png' is 20x16" in message


def test_it_names_a_value_neither_a_class_nor_ignore_index(tmp_path):
    bad = stripes_mask()
    bad[0, 0] = 9
    members = sample_members(3) | {"masks/2.png": png(bad), "classes.txt": b"a\nb\nc\n"}
    message = refused(tmp_path, members)
    assert message == ("The mask 'masks/2.png' holds the value 9, which is neither a class (0..2) nor "
                       "ignore_index (255).")


def test_it_names_an_rgb_colour_not_in_the_colour_map(tmp_path):
    colormap = "".join(f"{r} {g} {b}\n" for r, g, b in RGB_COLOURS).encode()
    members = sample_members(3, mask_of=lambda m: png(np.array(RGB_COLOURS, dtype=np.uint8)[m]))
    odd = np.array(RGB_COLOURS, dtype=np.uint8)[stripes_mask()]
    odd[3, 3] = (1, 2, 3)
    message = refused(tmp_path, members | {"colormap.txt": colormap, "masks/1.png": png(odd)})
    assert "The mask 'masks/1.png' has the colour (1, 2, 3), which colormap.txt does not list." == message


def test_it_asks_for_colormap_txt_for_rgb_masks(tmp_path):
    members = sample_members(2, mask_of=lambda m: png(np.array(RGB_COLOURS, dtype=np.uint8)[m]))
    assert "The mask 'masks/0.png' is an RGB image, but there is no colormap.txt" in refused(tmp_path, members)


def test_it_says_when_there_are_no_masks_at_all(tmp_path):
    members = {name: data for name, data in sample_members(3).items() if name.startswith("images/")}
    assert refused(tmp_path, members) == ("No masks were found in masks/: every image needs a mask with its "
                                          "file stem.")


def test_it_says_when_a_split_folder_has_no_masks(tmp_path):
    members = sample_members(2, "train/") | {"val/images/0.png": sample_members(1)["images/0.png"]}
    assert refused(tmp_path, members).startswith("No masks were found in val/masks/")


def test_it_refuses_an_ignore_index_that_is_also_a_class(tmp_path):
    message = refused(tmp_path, sample_members(2), ignore_index=1)
    assert message.startswith("ignore_index 1 is also class 1")


# --- through the service and the API --------------------------------------------------------

VALID = {"name": "Stripes", "task": "segmentation", "image_width": 10, "image_height": 8, "channels": 3,
         "resize_mode": "squash", "val_percent": 20, "test_percent": 0, "seed": 0}


def post_archive(client, data: bytes, filename: str = "stripes.zip", **fields):  # type: ignore[no-untyped-def]
    archive = io.BytesIO(data)
    archive.name = filename
    return client.post("/api/v1/datasets/", {**VALID, **fields, "archive": archive}, format="multipart")


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ingested(response) -> Dataset:  # type: ignore[no-untyped-def]
    assert response.status_code == 201, response.content
    services.dataset_ingest(dataset_id=response.json()["id"])
    return Dataset.objects.get(pk=response.json()["id"])


@pytest.mark.django_db
@pytest.mark.parametrize(("pack", "filename"), [(zip_bytes, "stripes.zip"), (tar_bytes, "stripes.tar.gz")])
def test_an_uploaded_archive_becomes_a_ready_segmentation_dataset(alice_api, pack, filename):
    members = sample_members(5) | {"classes.txt": b"sky\nroad\ncar\n"}
    dataset = ingested(post_archive(alice_api, pack(members), filename, ignore_index=200))

    assert dataset.status == "ready", dataset.error
    body = alice_api.get(f"/api/v1/datasets/{dataset.pk}/").json()
    assert body["task"] == "segmentation" and body["ignore_index"] == 200
    assert body["classes"] == ["sky", "road", "car"]
    assert set(body["class_pixels"]) == {"train", "val", "test"}
    assert set(body["colormap"]) == {"sky", "road", "car"}
    assert sorted(p.name for p in dataset.folder.iterdir() if p.suffix == ".npy") == [
        "mean.npy", "test_images.npy", "test_masks.npy", "train_images.npy", "train_masks.npy",
        "val_images.npy", "val_masks.npy"]
    shutil.rmtree(dataset.folder, ignore_errors=True)


@pytest.mark.django_db
def test_a_bad_mask_ends_the_dataset_in_error_naming_it_with_nothing_left(alice_api):
    members = sample_members(3)
    del members["masks/1.png"]
    dataset = ingested(post_archive(alice_api, zip_bytes(members)))

    assert dataset.status == "error"
    assert dataset.error == "The image 'images/1.png' has no mask: expected masks/1.png."
    assert list(dataset.folder.iterdir()) == []


@pytest.mark.django_db
def test_a_classification_dataset_answers_no_segmentation_fields(alice_api, alice):
    dataset = Dataset.objects.create(owner=alice, name="c", source="example", source_name="x", image_width=8,
                                     image_height=8, channels=1, resize_mode="squash", val_percent=0, test_percent=0,
                                     seed=0)
    body = alice_api.get(f"/api/v1/datasets/{dataset.pk}/").json()
    assert body["class_pixels"] is None and body["colormap"] is None and body["ignore_index"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"ignore_index": 256}, "ignore_index", "less than or equal to 255"),
    ({"ignore_index": -1}, "ignore_index", "greater than or equal to 0"),
    ({"task": "classification", "ignore_index": 0}, "ignore_index", "for segmentation datasets only"),
    ({"task": "tracking"}, "task", '"tracking" is not a task'),
])
def test_a_bad_segmentation_option_is_a_400_naming_the_field(alice_api, fields, field, words):
    response = post_archive(alice_api, zip_bytes(sample_members(2)), **fields)

    assert response.status_code == 400
    assert field in response.json()["detail"] and words in str(response.json()["detail"][field])
    assert not Dataset.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_example_segmentation_dataset_is_generated_and_ingested(celery_worker, alice_api):
    # By the real worker: generating 480 images outlasts a heartbeat, which an in-process run inside
    # the test's open transaction would block on its own row's lock (PostgreSQL).
    response = alice_api.post("/api/v1/datasets/example/", {"example": "segmentation"}, format="json")
    assert response.status_code == 201, response.content
    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "ready", dataset.error
    assert dataset.task == "segmentation" and dataset.image_shape == [3, 64, 64]
    assert dataset.classes == ["background", "circle", "square", "triangle"]
    assert sum(dataset.split_counts.values()) == 480
    assert all(dataset.class_pixels["train"][c] > 0.02 for c in dataset.classes)
    wait_for(lambda: not (dataset.folder / services.EXTRACTED).exists(), OUTCOME_SECONDS,
             "the generated sources to be removed once the dataset is ready")


@pytest.mark.django_db
def test_an_unknown_example_is_a_400_naming_the_field(alice_api):
    response = alice_api.post("/api/v1/datasets/example/", {"example": "teleport"}, format="json")

    assert response.status_code == 400 and "example" in response.json()["detail"]



# --- the explore page -----------------------------------------------------------------------

@pytest.mark.django_db
def test_the_explore_page_shows_pixel_shares_samples_and_masks_to_the_owner_only(alice_api, alice, bob):
    from django.test import Client

    members = sample_members(5) | {"classes.txt": b"sky\nroad\ncar\n"}
    dataset = ingested(post_archive(alice_api, zip_bytes(members)))
    owner, stranger = Client(), Client()
    owner.force_login(alice)
    stranger.force_login(bob)

    page = owner.get(f"/datasets/{dataset.pk}/").content.decode()
    assert 'id="class-pixels"' in page and "road" in page and 'id="mask-opacity"' in page
    assert f"/datasets/{dataset.pk}/masks/train/0.png" in page and f"/datasets/{dataset.pk}/images/train/0.png" in page
    mask = owner.get(f"/datasets/{dataset.pk}/masks/train/0.png")
    assert mask["Content-Type"] == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(mask.content)))
    assert pixels.shape == (8, 10, 4)
    assert {tuple(p[:3]) for p in pixels.reshape(-1, 4)} <= {tuple(c) for c in dataset.colormap.values()}
    assert stranger.get(f"/datasets/{dataset.pk}/masks/train/0.png").status_code == 404
    assert owner.get(f"/datasets/{dataset.pk}/masks/train/99.png").status_code == 404
    shutil.rmtree(dataset.folder, ignore_errors=True)


@pytest.mark.django_db
def test_the_form_creates_a_segmentation_dataset_and_the_list_offers_its_example(alice):
    from django.test import Client

    browser = Client()
    browser.force_login(alice)
    assert 'value="segmentation"' in browser.get("/datasets/").content.decode()
    archive = io.BytesIO(zip_bytes(sample_members(3)))
    archive.name = "stripes.zip"
    response = browser.post("/datasets/new/", {**VALID, "ignore_index": 7, "archive": archive, "min_per_class": 1})

    assert response.status_code == 302, response.content.decode()[-2000:]
    dataset = Dataset.objects.get()
    assert dataset.task == "segmentation" and dataset.ignore_index == 7
    shutil.rmtree(dataset.folder, ignore_errors=True)
