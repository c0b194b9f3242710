"""Detection datasets: every label format becomes images and boxes aligned row by row, the boxes moved
with the pixels by each resize mode; bad input is a clear error naming the file, with nothing left behind."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.ingest import IngestError
from datasets.ingest.detection import run_detection_ingest
from datasets.ingest.pipeline import IngestOptions
from tests.conftest import zip_bytes

# --- helpers --------------------------------------------------------------------------------


def png(width: int = 40, height: int = 20, boxes: list[tuple[int, int, int, int]] = (), value: int = 0) -> bytes:  # type: ignore[assignment]
    """A dark image with a white rectangle on each box's pixels (x1..x2-1, y1..y2-1)."""
    pixels = np.full((height, width, 3), value, dtype=np.uint8)
    for x1, y1, x2, y2 in boxes:
        pixels[y1:y2, x1:x2] = 255
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def kitti(name: str, x1: float, y1: float, x2: float, y2: float) -> str:
    return f"{name} 0.00 0 -1.0 {x1} {y1} {x2} {y2} 1.5 1.6 3.7 1.0 1.5 20.0 0.0\n"


def voc(objects: list[tuple[str, int, int, int, int, int]], width: int = 40, height: int = 20) -> bytes:
    xml = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                  f"<xmax>{c}</xmax><ymax>{e}</ymax></bndbox></object>" for n, a, b, c, e, d in objects)
    return (f"<annotation><filename>x.png</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{xml}</annotation>").encode()


def write_folder(root: Path, members: dict[str, bytes | str]) -> Path:
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return root


def options(**changes) -> IngestOptions:  # type: ignore[no-untyped-def]
    base = dict(width=20, height=20, channels=3, resize_mode="squash", val_percent=0, test_percent=0, seed=0,
                task="detection")
    return IngestOptions(**{**base, **changes})


def ingest(tmp_path: Path, members: dict[str, bytes | str], **changes):  # type: ignore[no-untyped-def]
    source = write_folder(tmp_path / "source", members)
    return run_detection_ingest(source, tmp_path / "out", options(**changes), max_pixels=10**7, workers=2)


def refused(tmp_path: Path, members: dict[str, bytes | str], **changes) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(IngestError) as caught:
        ingest(tmp_path, members, **changes)
    assert not list((tmp_path / "out").glob("*")), "a failed ingest left files behind"
    return str(caught.value)


def boxes(out: Path, split: str = "train") -> np.ndarray:
    return np.load(out / f"{split}_boxes.npy")


def real(rows: np.ndarray) -> list[list[float]]:
    """An image's rows without the padding, rounded for comparing."""
    return [[round(float(v), 4) for v in row] for row in rows if row[0] != -1]


# The two boxes of the geometry tests on a 40x20 image, and the third that a crop cuts away.
LEFT, WIDE, RIGHT = (4, 2, 12, 10), (14, 0, 30, 20), (32, 5, 38, 15)


def kitti_members() -> dict[str, bytes | str]:
    return {"images/a.png": png(boxes=[LEFT, WIDE, RIGHT]),
            "labels/a.txt": kitti("Car", *LEFT) + kitti("Van", *WIDE) + kitti("Car", *RIGHT)}


# --- the formats ----------------------------------------------------------------------------

def test_it_reads_kitti_labels_with_classes_sorted_by_name_and_dontcare_as_minus_two(tmp_path):
    members = {"images/a.png": png(), "images/b.png": png(),
               "labels/a.txt": kitti("Van", 4, 2, 12, 10) + kitti("DontCare", 0, 0, 10, 10),
               "labels/b.txt": kitti("Car", 20, 0, 40, 20)}
    result = ingest(tmp_path, members, width=40, height=20)

    out = tmp_path / "out"
    assert result.classes == ["Car", "Van"] and result.box_format == "kitti"
    assert json.loads((out / "classes.json").read_text()) == ["Car", "Van"]
    stored = boxes(out)
    assert stored.dtype == np.float32 and stored.shape == (2, 2, 6)
    b = 0 if stored[0, 0, 0] == 0 else 1  # the seeded split shuffles the images
    assert real(stored[1 - b]) == [[1, 4, 2, 12, 10, 0], [-2, 0, 0, 10, 10, 0]]
    assert real(stored[b]) == [[0, 20, 0, 40, 20, 0]]
    assert stored[b, 1].tolist() == [-1, 0, 0, 0, 0, 0]  # padding
    assert result.box_counts["train"] == {"Car": 1, "Van": 1}  # DontCare is no class
    assert np.load(out / "train_images.npy").shape == (2, 3, 20, 40)
    assert (out / "mean.npy").exists() and (out / "thumbs/0_0.png").exists() and (out / "thumbs/1_0.png").exists()


def test_it_reads_yolo_labels_normalised_with_names_from_classes_txt(tmp_path):
    members = {"images/a.png": png(), "classes.txt": "cat\ndog\n",
               "labels/a.txt": "1 0.2 0.3 0.2 0.4\n0 0.5 0.5 1.0 1.0\n"}
    result = ingest(tmp_path, members, width=40, height=20)

    assert result.classes == ["cat", "dog"] and result.box_format == "yolo"
    assert real(boxes(tmp_path / "out")[0]) == [[1, 4, 2, 12, 10, 0], [0, 0, 0, 40, 20, 0]]


@pytest.mark.parametrize("yaml", [
    "path: ../shapes\ntrain: images\nnames:\n  - cat\n  - dog\n",
    "names:\n  0: cat\n  1: dog\n",
    "nc: 2\nnames: ['cat', 'dog']\n",
])
def test_it_reads_yolo_names_from_data_yaml_as_a_list_or_a_mapping(tmp_path, yaml):
    members = {"images/a.png": png(), "data.yaml": yaml, "labels/a.txt": "1 0.5 0.5 0.5 0.5\n"}
    result = ingest(tmp_path, members)

    assert result.classes == ["cat", "dog"]
    assert real(boxes(tmp_path / "out")[0]) == [[1, 5, 5, 15, 15, 0]]


def test_it_reads_yolo_names_from_classes_txt_inside_labels_as_labelimg_writes_it(tmp_path):
    members = {"images/a.png": png(), "labels/classes.txt": "cat\ndog\n", "labels/a.txt": "0 0.5 0.5 0.5 0.5\n"}
    assert ingest(tmp_path, members).classes == ["cat", "dog"]


def test_it_reads_pascal_voc_one_based_boxes_and_marks_difficult_ones(tmp_path):
    members = {"images/a.png": png(),
               "labels/a.xml": voc([("person", 5, 3, 12, 10, 0), ("bike", 15, 1, 30, 20, 1)])}
    result = ingest(tmp_path, members, width=40, height=20)

    assert result.classes == ["bike", "person"] and result.box_format == "voc"
    assert real(boxes(tmp_path / "out")[0]) == [[1, 4, 2, 12, 10, 0], [0, 14, 0, 30, 20, 1]]
    assert result.box_counts["train"] == {"bike": 1, "person": 1}


def test_it_reads_coco_with_categories_in_id_order_crowds_flagged_and_unlabelled_images_kept(tmp_path):
    coco = {"images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 20},
                       {"id": 8, "file_name": "images/sub/b.png", "width": 40, "height": 20}],
            "categories": [{"id": 3, "name": "zebra"}, {"id": 1, "name": "yak"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [4, 2, 8, 8], "iscrowd": 0},
                            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [14, 0, 16, 20], "iscrowd": 1},
                            {"id": 3, "image_id": 8, "category_id": 1, "bbox": [0, 0, 10, 10]}]}
    members = {"images/a.png": png(), "images/sub/b.png": png(), "images/c.png": png(),
               "annotations.json": json.dumps(coco)}
    result = ingest(tmp_path, members, width=40, height=20)

    assert result.classes == ["yak", "zebra"] and result.box_format == "coco"
    stored = sorted(real(rows) for rows in boxes(tmp_path / "out"))  # the seeded split shuffles the images
    assert stored == [[], [[0, 0, 0, 10, 10, 0]], [[1, 4, 2, 12, 10, 0], [0, 14, 0, 30, 20, 1]]]
    assert result.images_without_boxes == {"train": 1, "val": 0, "test": 0}


def test_box_format_forces_a_format_and_a_file_of_another_is_named(tmp_path):
    members = {"images/a.png": png(), "labels/a.xml": voc([("person", 5, 3, 12, 10, 0)])}
    message = refused(tmp_path, members, box_format="kitti")
    assert message.startswith("The label file 'labels/a.xml' is XML, but the labels are read as KITTI")


def test_labels_and_a_coco_file_side_by_side_need_box_format_to_choose(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "yak"}],
            "annotations": [{"image_id": 1, "category_id": 1, "bbox": [4, 2, 8, 8]}]}
    members = {"images/a.png": png(), "labels/a.txt": kitti("Car", 1, 1, 9, 9), "annotations.json": json.dumps(coco)}
    assert refused(tmp_path / "auto", members) == ("The top folder holds both labels/ and annotations.json; set "
                                                   "box_format to say which to read.")
    assert ingest(tmp_path / "coco", members, box_format="coco").classes == ["yak"]
    assert ingest(tmp_path / "kitti", members, box_format="kitti").classes == ["Car"]


def test_splits_mixing_coco_and_label_files_are_refused(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "yak"}],
            "annotations": [{"image_id": 1, "category_id": 1, "bbox": [4, 2, 8, 8]}]}
    members = {"train/images/a.png": png(), "train/annotations.json": json.dumps(coco),
               "val/images/b.png": png(), "val/labels/b.txt": kitti("Car", 1, 1, 9, 9)}
    assert refused(tmp_path, members) == ("The labels mix COCO ('train/annotations.json') and label files "
                                          "('val/labels/b.txt'); use one format.")


def test_mixed_label_formats_are_refused_naming_both_files(tmp_path):
    members = {"images/a.png": png(), "images/b.png": png(), "labels/a.xml": voc([("p", 5, 3, 12, 10, 0)]),
               "labels/b.txt": kitti("Car", 1, 1, 5, 5)}
    assert "'labels/a.xml'" in refused(tmp_path, members) and "'labels/b.txt'" in refused(tmp_path, members)


# --- boxes move with the pixels -------------------------------------------------------------

# A 40x20 image into 20x20, by hand from datasets.ingest.images: the scaled size, then the centre crop
# (left (w - 20) // 2) or the centre fill (top (20 - h) // 2).
#   squash    scaled 20x20: x / 2
#   crop      scaled 40x20 (ratio min(2, 1) = 1): x - 10; RIGHT lands at 22..28, outside: dropped
#   fill      scaled 20x10 (ratio max(2, 1) = 2): x / 2, y / 2 + 5
#   half_crop scaled 27x13 (ratio 1.5: 26.67 and 13.33 rounded): x * 27/40 - 3, y * 13/20 + 3
EXPECTED = {
    "squash": ([[0, 2, 2, 6, 10, 0], [1, 7, 0, 15, 20, 0], [0, 16, 5, 19, 15, 0]], 0),
    "crop": ([[0, 0, 2, 2, 10, 0], [1, 4, 0, 20, 20, 0]], 1),
    "fill": ([[0, 2, 6, 6, 10, 0], [1, 7, 5, 15, 15, 0], [0, 16, 7.5, 19, 12.5, 0]], 0),
    "half_crop": ([[0, 0, 4.3, 5.1, 9.5, 0], [1, 6.45, 3, 17.25, 16, 0], [0, 18.6, 6.25, 20, 12.75, 0]], 0),
}


@pytest.mark.parametrize("resize_mode", list(EXPECTED))
def test_boxes_are_scaled_shifted_and_clipped_as_each_resize_mode_moves_the_pixels(tmp_path, resize_mode):
    result = ingest(tmp_path, kitti_members(), resize_mode=resize_mode)

    expected, dropped = EXPECTED[resize_mode]
    assert real(boxes(tmp_path / "out")[0]) == expected
    assert result.boxes_dropped == dropped
    assert result.box_counts["train"] == {"Car": len(expected) - 1, "Van": 1}


@pytest.mark.parametrize("resize_mode", ["squash", "crop", "fill"])
def test_a_stored_box_covers_exactly_its_white_rectangle_in_the_stored_image(tmp_path, resize_mode):
    # 80x40 into 40x40 with boxes on even pixels: every mode's scale is a whole 1 or 1/2, so the
    # pixels of the stored image more white than black (a halved edge blends a quarter of its
    # neighbour in) fill the stored box and nothing outside it. Fill's noise differs per channel.
    box = (24, 8, 48, 32)
    members = {"images/a.png": png(80, 40, [box]), "labels/a.txt": kitti("Car", *box)}
    ingest(tmp_path, members, width=40, height=40, resize_mode=resize_mode)

    image = np.load(tmp_path / "out/train_images.npy")[0].astype(int)
    _, x1, y1, x2, y2, _ = boxes(tmp_path / "out")[0, 0]
    grey = (image[0] == image[1]) & (image[1] == image[2])
    white = np.argwhere((image[0] > 128) & grey)
    assert (white[:, 1].min(), white[:, 0].min(), white[:, 1].max() + 1, white[:, 0].max() + 1) == (x1, y1, x2, y2)


def test_boxes_follow_a_jpeg_read_at_a_reduced_scale(tmp_path):
    # A 400x200 JPEG read into 40x40 is decoded by libjpeg at a quarter of its size (draft mode): the
    # boxes are placed by the image's own size, not the reduced one.
    buf = io.BytesIO()
    Image.fromarray(np.zeros((200, 400, 3), dtype=np.uint8)).save(buf, format="JPEG")
    members = {"images/a.jpg": buf.getvalue(), "labels/a.txt": kitti("Car", 100, 50, 300, 150)}
    ingest(tmp_path, members, width=40, height=40)

    assert real(boxes(tmp_path / "out")[0]) == [[0, 10, 10, 30, 30, 0]]


def test_images_without_a_label_file_or_boxes_are_kept_and_counted_per_split(tmp_path):
    members = {f"{split}/images/{i}.png": png() for split, n in (("train", 3), ("val", 2)) for i in range(n)}
    members |= {"train/labels/0.txt": kitti("Car", 1, 1, 9, 9), "train/labels/1.txt": "",
                "val/labels/0.txt": kitti("Car", 1, 1, 9, 9) + kitti("Car", 39, 1, 40, 9)}
    result = ingest(tmp_path, members, width=40, height=20)

    assert result.split_counts == {"train": 3, "val": 2, "test": 0}
    assert result.images_without_boxes == {"train": 2, "val": 1, "test": 0}
    assert result.box_counts == {"train": {"Car": 1}, "val": {"Car": 2}, "test": {"Car": 0}}
    assert result.boxes_dropped == 0
    assert boxes(tmp_path / "out", "test").shape == (0, 2, 6)


def test_a_box_left_with_no_area_by_the_resize_is_dropped_and_counted(tmp_path):
    # 0.4 pixels wide at 40x20 is 0.2 at 20x10... still an area; 0 wide from the start is none.
    members = {"images/a.png": png(), "labels/a.txt": kitti("Car", 4, 2, 4, 10) + kitti("Car", 4, 2, 12, 10)}
    result = ingest(tmp_path, members)

    assert result.boxes_dropped == 1
    assert real(boxes(tmp_path / "out")[0]) == [[0, 2, 2, 6, 10, 0]]


def test_the_split_folders_are_the_splits_and_the_percentages_split_by_the_seed(tmp_path):
    label = kitti("Car", 1, 1, 9, 9)
    by_folder = {f"{s}/{kind}/{s}{i}.{ext}": (png() if kind == "images" else label)
                 for s, n in (("train", 4), ("val", 2), ("test", 1)) for i in range(n)
                 for kind, ext in (("images", "png"), ("labels", "txt"))}
    assert ingest(tmp_path / "a", by_folder, val_percent=50).split_counts == {"train": 4, "val": 2, "test": 1}

    flat = {f"{kind}/{i}.{ext}": (png(boxes=[(0, 0, i + 1, 2)]) if kind == "images" else kitti("Car", 0, 0, i + 1, 2))
            for i in range(10) for kind, ext in (("images", "png"), ("labels", "txt"))}
    first = ingest(tmp_path / "b", flat, val_percent=20, test_percent=10, seed=3)
    ingest(tmp_path / "c", flat, val_percent=20, test_percent=10, seed=3)
    assert first.split_counts == {"train": 7, "val": 2, "test": 1}
    assert np.array_equal(boxes(tmp_path / "b/out", "val"), boxes(tmp_path / "c/out", "val"))
    # Each image keeps its own boxes wherever the split puts it: the box's width names the image.
    for split in ("train", "val", "test"):
        images = np.load(tmp_path / f"b/out/{split}_images.npy")[:, 0]
        widths = boxes(tmp_path / "b/out", split)[:, 0, 3]
        assert all(abs((img[0] > 128).sum() - w) <= 1 for img, w in zip(images, widths))


def test_it_reads_a_zip_in_place_under_a_wrapping_folder(tmp_path):
    from datasets.ingest.archive import ExtractLimits, ZipSource

    members = {f"shapes/{k}": v for k, v in kitti_members().items()}
    (tmp_path / "a.zip").write_bytes(zip_bytes({k: v.encode() if isinstance(v, str) else v for k, v in members.items()}))
    source = ZipSource(tmp_path / "a.zip", ExtractLimits(1000, 10**8, 100))
    try:
        result = run_detection_ingest(source, tmp_path / "out", options(), max_pixels=10**7, workers=2)
    finally:
        source.close()
    assert result.classes == ["Car", "Van"] and real(boxes(tmp_path / "out")[0]) == EXPECTED["squash"][0]


# --- bad input ------------------------------------------------------------------------------

def test_it_names_a_label_file_without_its_image(tmp_path):
    members = kitti_members() | {"labels/ghost.txt": kitti("Car", 1, 1, 5, 5)}
    assert refused(tmp_path, members) == ("The label file 'labels/ghost.txt' has no image: expected images/ghost "
                                          "with any image extension.")


def test_it_names_the_file_and_line_of_an_unknown_yolo_class_id(tmp_path):
    members = {"images/a.png": png(), "classes.txt": "cat\ndog\n", "labels/a.txt": "0 0.5 0.5 0.1 0.1\n2 0.5 0.5 0.1 0.1\n"}
    assert refused(tmp_path, members) == ("Line 2 of 'labels/a.txt' has the class id 2, which is not a class: the "
                                          "names list 2 (ids 0..1).")


def test_yolo_without_class_names_is_refused(tmp_path):
    members = {"images/a.png": png(), "labels/a.txt": "0 0.5 0.5 0.1 0.1\n"}
    assert refused(tmp_path, members).startswith("YOLO labels need the class names: add classes.txt")


@pytest.mark.parametrize(("members", "words"), [
    ({"labels/a.txt": kitti("Car", 1, 1, 5, 5) + "Car 0 0 1 2 3\n"},
     "Line 2 of 'labels/a.txt' has 6 columns; a KITTI label line has 15"),
    ({"labels/a.txt": kitti("Car", 1, 1, 5, 5).replace("1.6", "wide")},
     "Line 1 of 'labels/a.txt' has a value that is not a number"),
    ({"classes.txt": "cat\n", "labels/a.txt": "0 0.5 0.5 0.1 0.1\n0 0.5 nan 0.1 0.1\n"},
     "Line 2 of 'labels/a.txt' has a value that is not a number"),
    ({"classes.txt": "cat\n", "labels/a.txt": "0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1\n"},
     "Line 2 of 'labels/a.txt' has 4 columns; a YOLO label line has 5"),
    ({"labels/a.txt": "what is this\n"}, "Line 1 of 'labels/a.txt' is neither KITTI (15 columns"),
    ({"labels/a.xml": b"<annotation><object><name>p</name>"}, "'labels/a.xml' is not well-formed XML"),
    ({"labels/a.xml": b"<annotation><object><name>p</name><bndbox><xmin>1</xmin></bndbox></object></annotation>"},
     "Object 1 ('p') of 'labels/a.xml' has no <bndbox> with numeric xmin"),
    ({"labels/a.xml": b"<html></html>"}, "'labels/a.xml' is not a Pascal VOC annotation"),
    ({"annotations.json": "{not json"}, "'annotations.json' is not valid JSON"),
    ({"annotations.json": json.dumps({"images": [], "annotations": []})}, "'annotations.json' is not a COCO"),
    ({"annotations.json": json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}],
                                      "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]})},
     "annotations[0] of 'annotations.json' needs a bbox of four numbers"),
    ({"annotations.json": json.dumps({"images": [{"id": 1, "file_name": "zz.png"}], "categories": [],
                                      "annotations": []})},
     "'annotations.json' labels the image 'zz.png', which is not in images/"),
    ({"data.yaml": "names: [a, b\n", "labels/a.txt": "0 0.5 0.5 0.1 0.1\n"}, "'data.yaml' is not valid YAML"),
    ({"classes.txt": "a\n", "labels/a.txt": kitti("Truck", 1, 1, 5, 5)},
     "The class 'Truck' (line 1 of 'labels/a.txt') is not one of the classes named: a."),
])
def test_a_malformed_label_is_named_with_its_file(tmp_path, members, words):
    assert words in refused(tmp_path, {"images/a.png": png()} | members)


def test_it_names_a_box_outside_its_image_by_more_than_its_size(tmp_path):
    members = {"images/a.png": png(), "labels/a.txt": kitti("Car", 1, 1, 5, 5) + kitti("Car", 50, 2, 55, 8)}
    assert refused(tmp_path, members) == ("The box (50, 2, 55, 8) at line 2 of 'labels/a.txt' lies outside its "
                                          "image 'images/a.png' (40x20 pixels) by more than its own size.")


def test_a_box_partly_outside_is_clipped_not_refused(tmp_path):
    members = {"images/a.png": png(), "labels/a.txt": kitti("Car", -3, -2, 5, 8) + kitti("Car", 38, 15, 42, 22)}
    ingest(tmp_path, members, width=40, height=20)
    assert real(boxes(tmp_path / "out")[0]) == [[0, 0, 0, 5, 8, 0], [0, 38, 15, 40, 20, 0]]


@pytest.mark.parametrize("labels", [
    {"labels/a.txt": "", "labels/b.txt": "\n"},
    {"labels/a.txt": kitti("DontCare", 1, 1, 5, 5)},
    {"classes.txt": "cat\n", "labels/a.txt": ""},
])
def test_a_dataset_with_no_boxes_at_all_is_refused(tmp_path, labels):
    members = {"images/a.png": png(), "images/b.png": png()} | labels
    assert refused(tmp_path, members).startswith("No boxes were found")


def test_a_dataset_whose_every_box_the_crop_cuts_away_is_refused(tmp_path):
    members = {"images/a.png": png(), "labels/a.txt": kitti("Car", 0, 0, 8, 20)}
    assert refused(tmp_path, members, resize_mode="crop").startswith("Every box was dropped")


def test_an_unreadable_image_is_named(tmp_path):
    members = kitti_members() | {"images/a.png": b"not a png"}
    assert refused(tmp_path, members).startswith("The image 'images/a.png' could not be used")


def test_no_images_folder_is_refused_with_the_layouts(tmp_path):
    assert "a detection archive holds images/ with labels/" in refused(tmp_path, {"pics/a.png": png()})
