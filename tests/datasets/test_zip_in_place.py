"""A zip is decoded where it lies: same arrays as extracting it first, nothing written beside them."""
from __future__ import annotations

import numpy as np
import pytest

from datasets.ingest import IngestError
from datasets.ingest.archive import ExtractLimits, ZipSource, extract_archive
from datasets.ingest.pipeline import IngestOptions, run_ingest
from datasets.ingest.store import open_split
from tests.conftest import class_images, make_image, zip_bytes

LIMITS = ExtractLimits(max_members=1000, max_bytes=64 * 1024**2, max_ratio=200)
OPTIONS = IngestOptions(width=10, height=12, channels=3, resize_mode="fill", val_percent=20, test_percent=10,
                        seed=5)


def ingest(source, out):  # type: ignore[no-untyped-def]
    return run_ingest(source, out, OPTIONS, max_pixels=10**7, workers=2)


def test_it_gives_the_same_arrays_as_extracting_first(tmp_path):
    files = {f"data/{k}": v for k, v in class_images(12).items()}
    files["data/red/broken.png"] = b"not a png"
    archive = tmp_path / "upload.zip"
    archive.write_bytes(zip_bytes(files))
    extract_archive(archive, tmp_path / "extracted", LIMITS)
    source = ZipSource(archive, LIMITS)

    in_place = ingest(source, tmp_path / "in-place")
    extracted = ingest(tmp_path / "extracted", tmp_path / "from-disk")
    source.close()

    assert in_place.split_counts == extracted.split_counts and in_place.classes == extracted.classes
    assert in_place.skipped["unreadable"] == 1 and in_place.skipped["examples"][0]["file"] == "data/red/broken.png"
    for split in ("train", "val", "test"):
        a_images, a_labels = open_split(tmp_path / "in-place", split)
        b_images, b_labels = open_split(tmp_path / "from-disk", split)
        assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)


def test_it_writes_nothing_but_the_dataset_outputs(tmp_path):
    archive = tmp_path / "upload.zip"
    archive.write_bytes(zip_bytes(class_images(6)))
    before = {p.name for p in tmp_path.iterdir()}
    source = ZipSource(archive, LIMITS)

    ingest(source, tmp_path / "out")
    source.close()

    assert {p.name for p in tmp_path.iterdir()} == before | {"out"}
    written = {p.relative_to(tmp_path / "out").parts[0] for p in (tmp_path / "out").rglob("*")}
    assert written <= {"thumbs", "mean.png", "mean.npy", "classes.json"} | {f"{s}_{k}.npy" for s in ("train", "val", "test") for k in ("images", "labels")}


@pytest.mark.parametrize("name,message", [
    ("../evil.png", "points outside its folder"),
    ("/abs/evil.png", "absolute path"),
])
def test_it_checks_every_member_before_reading_any(tmp_path, name, message):
    archive = tmp_path / "upload.zip"
    archive.write_bytes(zip_bytes({**class_images(2), name: make_image((1, 2, 3))}))

    with pytest.raises(IngestError, match=message):
        ZipSource(archive, LIMITS)


def test_it_refuses_a_zip_whose_images_expand_past_the_cap(tmp_path):
    archive = tmp_path / "upload.zip"
    archive.write_bytes(zip_bytes(class_images(4)))
    tiny = ExtractLimits(max_members=1000, max_bytes=1000, max_ratio=200)

    with pytest.raises(IngestError, match="expands to more than"):
        ZipSource(archive, tiny)
