"""Archives are extracted member by member: nothing lands outside the dataset's own folder.

Most tests drive `extract_archive` and `run_ingest` directly on real files (no database, fast);
a few go through the API and the real Celery worker to show the user sees the reason and that
another user's dataset is left alone.
"""
from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from datasets.ingest import IngestError
from datasets.ingest.archive import ExtractLimits, extract_archive
from datasets.ingest.pipeline import IngestOptions, run_ingest, scan_classes
from datasets.models import Dataset
from tests.conftest import class_images, make_image, wait_dataset, wait_for, zip_bytes

PNG = make_image((220, 30, 30))
MiB = 1024**2


# --- helpers --------------------------------------------------------------------------------

def limits() -> ExtractLimits:
    caps = settings.WORKBENCH
    return ExtractLimits(caps["MAX_ARCHIVE_MEMBERS"], caps["MAX_EXTRACTED_BYTES"], caps["MAX_COMPRESSION_RATIO"])


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as archive:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def tar_member(name: str, data: bytes = PNG, kind: bytes = tarfile.REGTYPE,
               link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info, data


def tar_of(files: dict[str, bytes], mode: str = "w") -> bytes:
    return tar_bytes([tar_member(name, data) for name, data in files.items()], mode)


class Zeros(io.RawIOBase):
    """`size` bytes, mostly zeros with a sprinkle of noise, read lazily: big archives, little memory."""

    def __init__(self, size: int, noise_per_mib: int = 0) -> None:
        self.size, self.position = size, 0
        block = bytearray(MiB)
        block[:noise_per_mib] = np.random.default_rng(0).bytes(noise_per_mib)
        self.block = bytes(block) * 2

    def read(self, n: int = -1) -> bytes:
        n = min(MiB, self.size - self.position if n is None or n < 0 else n, self.size - self.position)
        start = self.position % MiB
        self.position += n
        return self.block[start : start + n]

    def readable(self) -> bool:
        return True


def zip_streamed(path: Path, sizes: dict[str, int], noise_per_mib: int = 0) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, size in sizes.items():
            with archive.open(name, "w", force_zip64=True) as out:
                shutil.copyfileobj(Zeros(size, noise_per_mib), out, MiB)


def tar_streamed(path: Path, sizes: dict[str, int], noise_per_mib: int = 0) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, size in sizes.items():
            info = tarfile.TarInfo(name)
            info.size = size
            archive.addfile(info, Zeros(size, noise_per_mib))


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(archive path, extraction folder) laid out like a dataset folder: datasets/7/extracted."""
    folder = tmp_path / "datasets" / "7"
    folder.mkdir(parents=True)
    return folder / "upload", folder / "extracted"


def files_outside(dest: Path, archive: Path) -> list[Path]:
    """Every file or link under the test's folder that is neither the archive nor extracted."""
    top = dest.parent.parent.parent
    return [p for p in top.rglob("*") if (p.is_file() or p.is_symlink()) and p != archive
            and not p.is_relative_to(dest)]


def extract(archive: Path, dest: Path, data: bytes | None = None):  # type: ignore[no-untyped-def]
    if data is not None:
        archive.write_bytes(data)
    return extract_archive(archive, dest, limits())


def rejected(archive: Path, dest: Path, data: bytes | None = None) -> str:
    with pytest.raises(IngestError) as caught:
        extract(archive, dest, data)
    return str(caught.value)


def options(**overrides: object) -> IngestOptions:
    values: dict[str, object] = dict(width=12, height=10, channels=3, resize_mode="squash", val_percent=20,
                                     test_percent=0, seed=3)
    return IngestOptions(**{**values, **overrides})  # type: ignore[arg-type]


def ingest(folder: Path, out: Path):  # type: ignore[no-untyped-def]
    out.mkdir(exist_ok=True)
    return run_ingest(folder, out, options(), max_pixels=settings.WORKBENCH["MAX_IMAGE_PIXELS"], workers=2)


# --- paths that lead out of the folder ------------------------------------------------------

@pytest.mark.parametrize("name, message", [
    ("../evil.png", "points outside its folder ('..')"),
    ("cats/../../evil.png", "points outside its folder ('..')"),
    ("..\\evil.png", "points outside its folder ('..')"),
    ("cats\\..\\..\\evil.png", "points outside its folder ('..')"),
    ("/tmp/x/evil.png", "has an absolute path"),
    ("C:/evil.png", "has an absolute path"),
    ("\\evil.png", "has an absolute path"),
])
def test_it_rejects_a_zip_member_that_leads_outside_the_folder(layout, name, message):
    archive, dest = layout
    data = zip_bytes({"cats/1.png": PNG, name: PNG, "dogs/1.png": PNG})

    error = rejected(archive, dest, data)

    assert message in error
    assert name in error, "the message names the member"
    assert files_outside(dest, archive) == []
    assert not Path("/tmp/x/evil.png").exists()
    assert not (dest / "dogs").exists(), "extraction stopped at the bad member"


def test_it_rejects_a_zip_member_with_an_absolute_path_into_a_real_folder(layout, tmp_path):
    archive, dest = layout
    target = tmp_path / "elsewhere" / "evil.png"

    error = rejected(archive, dest, zip_bytes({str(target): PNG}))

    assert f"The archive member '{target}' has an absolute path" in error
    assert not target.exists() and not target.parent.exists()


@pytest.mark.parametrize("name", ["../evil.png", "cats/../../evil.png", "./../evil.png"])
def test_it_rejects_a_tar_member_with_dot_dot(layout, name):
    archive, dest = layout

    error = rejected(archive, dest, tar_of({"cats/1.png": PNG, name: PNG}))

    assert "points outside its folder ('..')" in error
    assert files_outside(dest, archive) == []


def test_it_rejects_a_tar_member_with_an_absolute_path(layout, tmp_path):
    archive, dest = layout
    target = tmp_path / "elsewhere" / "evil.png"

    error = rejected(archive, dest, tar_of({str(target): PNG}))

    assert "has an absolute path" in error
    assert not target.exists()


def test_it_rejects_a_dot_dot_directory_member(layout):
    archive, dest = layout

    error = rejected(archive, dest, tar_bytes([tar_member("../outside", kind=tarfile.DIRTYPE)]))

    assert "points outside its folder ('..')" in error
    assert not (dest.parent / "outside").exists()


# --- links, devices, pipes ------------------------------------------------------------------

@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_it_rejects_a_tar_link_member_before_anything_is_written_through_it(layout, kind):
    archive, dest = layout
    victim = dest.parent / "victim.png"
    victim.write_bytes(b"precious")
    members = [tar_member("cats/1.png"), tar_member("cats/link.png", kind=kind, link="../../victim.png"),
               tar_member("cats/link.png", b"overwritten")]

    error = rejected(archive, dest, tar_bytes(members))

    assert "The archive member 'cats/link.png' is a link; links are not allowed." in error
    assert victim.read_bytes() == b"precious"
    assert not (dest / "cats" / "link.png").exists()
    assert files_outside(dest, archive) == [victim]


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("target", ["/etc/passwd", "../../victim.png"])
def test_it_rejects_a_zip_symlink_member(layout, target):
    archive, dest = layout
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("cats/link.png")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, target)
        zf.writestr("cats/link.png", b"overwritten")

    error = rejected(archive, dest, buf.getvalue())

    assert "The archive member 'cats/link.png' is a link; links are not allowed." in error
    assert not (dest / "cats" / "link.png").exists()
    assert files_outside(dest, archive) == []


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_it_rejects_a_tar_device_or_pipe_member(layout, kind):
    archive, dest = layout

    error = rejected(archive, dest, tar_bytes([tar_member("cats/1.png"), tar_member("cats/dev.png", kind=kind)]))

    assert "The archive member 'cats/dev.png' is a device or pipe; only files are allowed." in error
    assert not (dest / "cats" / "dev.png").exists()
    assert files_outside(dest, archive) == []


# --- size caps ------------------------------------------------------------------------------

@pytest.mark.parametrize("pack", [zip_bytes, tar_of])
def test_it_rejects_an_archive_over_the_member_count_cap(layout, pack):
    archive, dest = layout
    cap = settings.WORKBENCH["MAX_ARCHIVE_MEMBERS"]
    # Not images, so nothing is written: only the count matters.
    members = {f"notes/{i}.txt": b"" for i in range(cap + 1)}

    error = rejected(archive, dest, pack(members))

    assert f"The archive has more than {cap:,} members, over the limit." == error


def test_it_accepts_an_archive_at_the_member_count_cap(layout):
    archive, dest = layout
    cap = settings.WORKBENCH["MAX_ARCHIVE_MEMBERS"]
    members = {f"notes/{i}.txt": b"" for i in range(cap - 2)} | {"cats/1.png": PNG, "dogs/1.png": PNG}

    report = extract(archive, dest, zip_bytes(members))

    assert report.images == 2 and report.ignored == cap - 2


@pytest.mark.parametrize("write", [zip_streamed, tar_streamed])
def test_it_rejects_an_archive_that_expands_over_the_extracted_bytes_cap(layout, write):
    archive, dest = layout
    cap = settings.WORKBENCH["MAX_EXTRACTED_BYTES"]
    # Seven 7 MiB members: 49 MiB in all, each compressing well under the ratio cap.
    write(archive, {f"cats/{i}.png": 7 * MiB for i in range(7)}, noise_per_mib=8 * 1024)
    assert archive.stat().st_size * settings.WORKBENCH["MAX_COMPRESSION_RATIO"] > 49 * MiB

    error = rejected(archive, dest)

    assert error == f"The archive expands to more than {cap // MiB} MiB, over the limit."
    written = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert written <= cap + MiB
    assert files_outside(dest, archive) == []


def test_it_rejects_a_zip_compression_bomb_before_writing_it(layout):
    archive, dest = layout
    zip_streamed(archive, {"a/x.png": 40 * MiB})
    assert archive.stat().st_size < MiB

    error = rejected(archive, dest)

    ratio = settings.WORKBENCH["MAX_COMPRESSION_RATIO"]
    assert error == (f"The archive member 'a/x.png' expands more than {ratio}x; "
                     "it looks like a compression bomb and was rejected.")
    assert not (dest / "a" / "x.png").exists()


def test_it_rejects_a_tar_gz_compression_bomb_while_streaming(layout):
    archive, dest = layout
    tar_streamed(archive, {"a/x.png": 40 * MiB})

    error = rejected(archive, dest)

    ratio = settings.WORKBENCH["MAX_COMPRESSION_RATIO"]
    assert f"The archive expands more than {ratio}x its size; it looks like a compression bomb" in error
    # Stopped once past the ratio, long before the 40 MiB were out.
    assert (dest / "a" / "x.png").stat().st_size < 16 * MiB
    assert files_outside(dest, archive) == []


# --- not an archive, corrupt archive --------------------------------------------------------

@pytest.mark.parametrize("data", [b"just some text\n" * 100, b"", PNG])
def test_it_rejects_a_file_that_is_not_an_archive(layout, data):
    archive, dest = layout

    error = rejected(archive, dest, data)

    assert error.startswith("The file is not a zip or tar archive")
    assert not dest.exists()


def test_it_rejects_a_zip_with_a_broken_directory_with_a_message(layout):
    archive, dest = layout
    data = zip_bytes(class_images(per_class=3, classes=("red", "blue")))

    error = rejected(archive, dest, data[: len(data) // 2] + data[-22:])

    assert error == "The zip archive could not be read: Bad magic number for central directory"


def test_it_rejects_a_zip_with_a_corrupt_member_with_a_message(layout):
    archive, dest = layout
    data = bytearray(zip_bytes(class_images(per_class=3, classes=("red", "blue"))))
    data[200] ^= 0xFF  # inside the first member's stored bytes

    error = rejected(archive, dest, bytes(data))

    assert error == "The zip archive could not be read: Bad CRC-32 for file 'red/0.png'"


def test_it_rejects_a_truncated_tar_gz_with_a_message(layout):
    archive, dest = layout
    data = tar_of(class_images(per_class=3, classes=("red", "blue")), "w:gz")

    error = rejected(archive, dest, data[: len(data) // 2])

    assert error.startswith("The tar archive could not be read")


# --- what is taken and what is left ---------------------------------------------------------

def test_it_ignores_hidden_files_and_macos_metadata(layout, tmp_path):
    archive, dest = layout
    members = {**class_images(per_class=3, classes=("red", "blue")), "__MACOSX/red/._0.png": b"junk",
               "red/._1.png": b"junk", "red/.DS_Store": b"junk", ".hidden/3.png": PNG, "blue/.cache/9.png": PNG,
               "__MACOSX/._red": b"junk", "notes.txt": b"hello"}

    report = extract(archive, dest, zip_bytes(members))
    result = ingest(dest, tmp_path / "out")

    assert report.images == 6
    assert report.ignored == 7
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == ["0.png", "0.png", "1.png", "1.png",
                                                                     "2.png", "2.png"]
    assert result.classes == ["blue", "red"]
    assert result.skipped["unreadable"] == 0


def test_it_flattens_nested_folders_into_their_top_class(layout, tmp_path):
    archive, dest = layout
    members = {"cats/a/b/1.png": PNG, "cats/a/2.png": PNG, "cats/3.png": PNG, "dogs/x/1.png": PNG,
               "dogs/2.png": PNG}

    extract(archive, dest, zip_bytes(members))
    result = ingest(dest, tmp_path / "out")

    assert result.classes == ["cats", "dogs"]
    assert {c: sum(result.class_counts[s][c] for s in result.class_counts) for c in result.classes} == {
        "cats": 3, "dogs": 2}


@pytest.mark.parametrize("wrapping", ["mydata/", "outer/mydata/"])
def test_it_looks_through_single_wrapping_folders(layout, tmp_path, wrapping):
    archive, dest = layout
    members = {f"{wrapping}{name}": data for name, data in class_images(3, ("red", "blue")).items()}
    members[f"{wrapping}README.txt"] = b"about this data"

    extract(archive, dest, zip_bytes(members))
    result = ingest(dest, tmp_path / "out")

    assert result.classes == ["blue", "red"]
    assert sum(result.split_counts.values()) == 6


def test_it_reports_class_folders_without_images(tmp_path):
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "notes.txt").write_text("no pictures here")

    with pytest.raises(IngestError, match=r"The class folders hold no image files \(JPEG, PNG, BMP, GIF or WebP\)"):
        scan_classes(tmp_path)


def test_it_names_the_class_folder_without_images(tmp_path):
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
    (tmp_path / "cats" / "1.png").write_bytes(PNG)
    (tmp_path / "dogs" / "1.txt").write_text("no picture")

    with pytest.raises(IngestError, match="Class 'dogs' has no image files"):
        scan_classes(tmp_path)


def test_it_reports_a_folder_without_class_folders(tmp_path):
    (tmp_path / "1.png").write_bytes(PNG)

    with pytest.raises(IngestError, match="No class folders found"):
        scan_classes(tmp_path)


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_it_extracts_plain_and_compressed_tars(layout, tmp_path, mode):
    archive, dest = layout

    report = extract(archive, dest, tar_of(class_images(3, ("red", "blue")), mode))
    result = ingest(dest, tmp_path / "out")

    assert report.images == 6
    assert result.classes == ["blue", "red"]


def test_it_decodes_every_allowed_format_and_upper_case_extensions(layout, tmp_path):
    archive, dest = layout
    colours = {"red": (220, 30, 30), "blue": (30, 40, 220)}
    formats = [("JPEG", "jpg"), ("JPEG", "jpeg"), ("PNG", "png"), ("BMP", "bmp"), ("GIF", "gif"),
               ("WEBP", "webp"), ("JPEG", "JPG"), ("PNG", "PNG"), ("WEBP", "WebP")]
    members = {f"{name}/{i}.{ext}": make_image(colour, fmt=fmt, noise_seed=i)
               for name, colour in colours.items() for i, (fmt, ext) in enumerate(formats)}

    extract(archive, dest, zip_bytes(members))
    out = tmp_path / "out"
    result = ingest(dest, out)

    assert result.skipped["unreadable"] == 0 and result.skipped["too_large"] == 0, result.skipped
    assert sum(result.split_counts.values()) == 2 * len(formats)
    images = np.concatenate([np.load(out / f"{s}_images.npy") for s in ("train", "val")]).astype(float)
    labels = np.concatenate([np.load(out / f"{s}_labels.npy") for s in ("train", "val")])
    red = images[labels == result.classes.index("red")]
    blue = images[labels == result.classes.index("blue")]
    assert red[:, 0].mean() > red[:, 2].mean() + 100
    assert blue[:, 2].mean() > blue[:, 0].mean() + 100


def test_it_refuses_to_decode_a_format_outside_the_allowlist(layout, tmp_path):
    archive, dest = layout
    tiff = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiff, format="TIFF")
    # A TIFF wearing a .png name: opened with the allowlist, it is unreadable, not decoded.
    members = {**class_images(2, ("red", "blue")), "red/sneaky.png": tiff.getvalue()}

    extract(archive, dest, zip_bytes(members))
    result = ingest(dest, tmp_path / "out")

    assert result.skipped["unreadable"] == 1
    assert result.skipped["examples"][0]["file"] == "red/sneaky.png"


# --- through the API and the worker ---------------------------------------------------------

def upload(client, data: bytes, filename: str):  # type: ignore[no-untyped-def]
    drop_stale_dataset_folders()
    archive = io.BytesIO(data)
    archive.name = filename
    payload = {"name": "Upload", "archive": archive, "image_width": 12, "image_height": 10, "val_percent": 20}
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


def staged_files() -> list[str]:
    return [p.name for p in Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir()]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def bystander(bob) -> Iterator[Dataset]:  # type: ignore[no-untyped-def]
    """Another user's ready dataset, whose files an evil archive would love to overwrite."""
    dataset = Dataset.objects.create(
        owner=bob, name="Bob's", status=Dataset.Status.READY, source=Dataset.Source.ARCHIVE, source_name="b.zip",
        image_width=8, image_height=8, channels=1, resize_mode="squash", val_percent=0, test_percent=0, seed=0)
    dataset.folder.mkdir(parents=True, exist_ok=True)
    (dataset.folder / "mean.png").write_bytes(PNG)
    (dataset.folder / "classes.json").write_text('["a", "b"]')
    yield dataset
    shutil.rmtree(dataset.folder, ignore_errors=True)


def evil_zip_dot_dot(victim: Path) -> tuple[bytes, str]:
    members = {**class_images(2, ("red", "blue")), f"../../{victim.parent.name}/{victim.name}": b"pwned"}
    return zip_bytes(members), "points outside its folder ('..')"


def evil_zip_absolute(victim: Path) -> tuple[bytes, str]:
    return zip_bytes({**class_images(2, ("red", "blue")), str(victim): b"pwned"}), "has an absolute path"


def evil_tar_symlink(victim: Path) -> tuple[bytes, str]:
    members = [tar_member("red/0.png"), tar_member("blue/0.png"),
               tar_member("red/link.png", kind=tarfile.SYMTYPE, link=str(victim)),
               tar_member("red/link.png", b"pwned")]
    return tar_bytes(members, "w:gz"), "is a link; links are not allowed"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("evil, name", [(evil_zip_dot_dot, "evil.zip"), (evil_zip_absolute, "evil.zip"),
                                        (evil_tar_symlink, "evil.tar.gz")])
def test_it_fails_an_evil_upload_and_leaves_other_datasets_alone(celery_worker, alice_api, bystander, evil, name):
    victim = bystander.folder / "mean.png"
    before = snapshot(bystander.folder)
    data, message = evil(victim)

    response = upload(alice_api, data, name)
    assert response.status_code == 201, response.json()
    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "error"
    assert message in dataset.error
    assert snapshot(bystander.folder) == before
    # The row turns "error" just before the worker clears the upload away.
    wait_for(lambda: not any(dataset.folder.iterdir()), 10, "the upload and extracted files to be cleaned")
    assert not list(Path(settings.DATA_DIR, "datasets").glob("*.png"))
    assert alice_api.get(f"/api/v1/datasets/{dataset.pk}/").json()["error"] == dataset.error


@pytest.mark.django_db
def test_it_answers_400_for_an_upload_that_is_not_an_archive(alice_api):
    response = upload(alice_api, b"Dear workbench, these are my images.\n" * 50, "images.zip")

    assert response.status_code == 400
    body = response.json()
    assert "not a zip or tar archive" in body["error"]
    assert "not a zip or tar archive" in body["detail"]["archive"][0]
    assert Dataset.objects.count() == 0
    assert not [n for n in staged_files() if n.startswith("staged-")]


@pytest.mark.django_db
def test_it_shows_the_not_an_archive_message_on_the_form(alice, client):
    client.force_login(alice)
    text = io.BytesIO(b"hello")
    text.name = "images.tar.gz"

    response = client.post("/datasets/new/", {"name": "Text", "archive": text, "image_width": 32,
                                              "image_height": 32, "channels": 3, "resize_mode": "squash",
                                              "val_percent": 20, "test_percent": 0, "seed": 0,
                                              "min_per_class": 1})

    assert response.status_code == 400
    assert "The file is not a zip or tar archive" in response.content.decode()
    assert Dataset.objects.count() == 0
    assert not [n for n in staged_files() if n.startswith("staged-")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("members", [
    {"readme.txt": b"nothing to see"},
    {"cats/readme.txt": b"no cats", "dogs/notes.md": b"no dogs", "dogs/": b""},
    {"__MACOSX/cats/._1.png": b"junk", ".hidden/1.png": PNG},
], ids=["no-images", "class-folders-without-images", "only-hidden-images"])
def test_it_fails_an_archive_without_images_with_a_reason(celery_worker, alice_api, members):
    response = upload(alice_api, zip_bytes(members), "empty.zip")
    assert response.status_code == 201

    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "error"
    assert dataset.error == "The archive holds no image files (JPEG, PNG, BMP, GIF or WebP)."
    wait_for(lambda: not any(dataset.folder.iterdir()), 10, "the upload to be cleaned")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode, name", [("w:gz", "colours.tar.gz"), ("w:gz", "colours.tgz"),
                                        ("w:bz2", "colours.tar.bz2")])
def test_it_accepts_compressed_tar_uploads(celery_worker, alice_api, mode, name):
    response = upload(alice_api, tar_of(class_images(5, ("red", "blue")), mode), name)
    assert response.status_code == 201, response.json()

    dataset = wait_dataset(response.json()["id"])

    assert dataset.status == "ready", dataset.error
    assert dataset.classes == ["blue", "red"]
    assert dataset.split_counts == {"train": 8, "val": 2, "test": 0}
    assert dataset.source_name == name
    # The sources go once the dataset is ready (the upload stays until then, for a retry).
    wait_for(lambda: not (dataset.folder / "extracted").exists() and not list(dataset.folder.glob("upload*")), 10,
             "the extracted files and the upload to be removed")


@pytest.mark.parametrize("pack", ["zip", "tar"])
def test_it_names_a_class_whose_archive_folder_holds_only_non_images(pack, tmp_path):
    files = {**class_images(3, classes=("red", "green")), "blue/readme.txt": b"no images here",
             "blue/notes.csv": b"a,b"}
    archive = tmp_path / f"upload.{pack}"
    archive.write_bytes(zip_bytes(files) if pack == "zip" else tar_of(files))
    extract_archive(archive, tmp_path / "extracted", limits())

    with pytest.raises(IngestError, match="Class 'blue' has no image files"):
        scan_classes(tmp_path / "extracted")
