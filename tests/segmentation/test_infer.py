"""Segmenting one uploaded image: the API answers the mask at the upload's own size (a PNG, never
pixel lists) with its class areas, from the model the serving worker runs; the page shows the upload
with the mask over it. The serving worker's code runs in this process (conftest `served`)."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from tests.segmentation.conftest import CLASSES, segmentation_job
from training.torch.models import load_snapshot
from training.vision_tasks.segmentation.metrics import mask_from_png, mask_to_image

pytestmark = pytest.mark.django_db


def squares_png(width: int, height: int, box: tuple[int, int, int, int]) -> io.BytesIO:
    """A dark image with one bright rectangle (left, top, right, bottom): what the model learnt."""
    pixels = np.full((height, width, 3), 40, np.uint8)
    left, top, right, bottom = box
    pixels[top:bottom, left:right] = 230
    file = io.BytesIO()
    Image.fromarray(pixels).save(file, format="PNG")
    file.seek(0)
    file.name = "squares.png"
    return file


def model_mask(job, file: io.BytesIO) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The latest snapshot's own argmax on the file resized as the dataset was (squash to 16x16)."""
    model, mean = load_snapshot(job.folder / job.snapshots.order_by("-epoch").first().path)
    file.seek(0)
    pixels = np.asarray(Image.open(file).convert("RGB").resize((16, 16), Image.Resampling.BILINEAR))
    with torch.inference_mode():
        logits = model((torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float()[None] - mean) / 255)
    return logits.argmax(1)[0].numpy()


def test_it_answers_the_mask_at_the_uploaded_images_own_size(alice, alice_api, trained, served):
    job = segmentation_job(alice, trained)
    image = squares_png(48, 36, (12, 9, 36, 27))

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": image}, format="multipart")

    assert response.status_code == 200, response.json()
    answer = response.json()
    assert answer["task"] == "segmentation" and answer["classes"] == CLASSES
    assert (answer["width"], answer["height"], answer["epoch"]) == (48, 36, 12.0)
    mask = mask_from_png(answer["mask"])
    assert mask.shape == (36, 48)
    assert np.array_equal(mask, mask_to_image(model_mask(job, image).astype(np.uint8), 48, 36, (16, 16)))
    shares = np.bincount(mask.ravel(), minlength=2) / mask.size
    assert [answer["class_pixels"][name] for name in CLASSES] == pytest.approx(shares.tolist())
    assert answer["preprocessed"].startswith("data:image/png;base64,")
    assert set(answer) == {"task", "width", "height", "mask", "classes", "class_pixels", "epoch", "preprocessed"}


def test_the_mask_finds_the_bright_square(alice, alice_api, trained, served):
    job = segmentation_job(alice, trained)
    image = squares_png(64, 64, (16, 16, 48, 48))

    mask = mask_from_png(alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": image},
                                        format="multipart").json()["mask"])

    inside, outside = mask[20:44, 20:44], np.concatenate([mask[:8].ravel(), mask[-8:].ravel()])
    assert (inside == 1).mean() > 0.8 and (outside == 0).mean() > 0.8


def test_a_crop_dataset_lays_the_mask_back_over_the_whole_image(alice, alice_api, trained, served):
    """A wide image on a crop dataset: the network saw its middle square; the answer still covers it all."""
    job = segmentation_job(alice, trained, resize_mode="crop")
    image = squares_png(96, 48, (36, 12, 60, 36))

    answer = alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": image}, format="multipart").json()

    mask = mask_from_png(answer["mask"])
    assert mask.shape == (48, 96) and (answer["width"], answer["height"]) == (96, 48)
    assert (mask[14:34, 38:58] == 1).mean() > 0.8  # the square, where it is in the upload
    assert (mask[:, :20] == 0).mean() > 0.8  # the cut-off sides carry on the background at the edges


def test_an_answer_carries_no_pixel_lists(alice, alice_api, trained, served):
    job = segmentation_job(alice, trained)

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": squares_png(128, 96, (10, 10, 60, 60))},
                              format="multipart")

    assert response.status_code == 200
    assert len(response.content) < 8000  # a 128x96 mask as a PNG, not 12,288 numbers
    assert base64.b64decode(response.json()["mask"]).startswith(b"\x89PNG")


def test_another_users_job_is_not_found_and_an_anonymous_request_is_refused(alice, bob_api, trained, served, client):
    job = segmentation_job(alice, trained)

    assert bob_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": squares_png(16, 16, (4, 4, 8, 8))},
                        format="multipart").status_code == 404
    assert client.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": squares_png(16, 16, (4, 4, 8, 8))}).status_code in (401, 403)


def test_a_file_that_is_no_image_is_a_400_naming_the_field(alice, alice_api, trained, served):
    job = segmentation_job(alice, trained)
    junk = io.BytesIO(b"not an image")
    junk.name = "junk.png"

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/infer/", {"image": junk}, format="multipart")

    assert response.status_code == 400 and "not a usable image" in response.json()["error"]


# --- the page ---------------------------------------------------------------------------------

def test_the_segment_page_shows_the_upload_with_its_mask_the_legend_and_class_areas(alice, client, trained, served):
    job = segmentation_job(alice, trained)
    client.force_login(alice)

    empty = client.get(f"/jobs/{job.pk}/classify/")
    response = client.post(f"/jobs/{job.pk}/classify/", {"image": squares_png(48, 36, (12, 9, 36, 27)), "epoch": "8"})

    assert empty.status_code == 200 and "Segment with" in empty.content.decode()
    assert 'id="segment-result"' not in empty.content.decode()
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="segment-result"' in page and 'id="mask-opacity"' in page and "js/segment.js" in page
    assert "rgb(220, 40, 40)" in page and "square" in page  # the legend in the dataset's colours
    assert 'id="class-areas"' in page and "snapshot at epoch 8" in page and "48x36 pixels" in page
    assert page.count("data:image/jpeg;base64,") == 1 and page.count("data:image/png;base64,") == 2


def test_the_segment_page_shows_why_no_serving_worker_answered(alice, client, trained, monkeypatch):
    from serving.client import ServingUnavailable

    def unavailable(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ServingUnavailable("No serving worker is running.", 503)

    monkeypatch.setattr("jobs.inference.client.ask", unavailable)
    job = segmentation_job(alice, trained)
    client.force_login(alice)

    response = client.post(f"/jobs/{job.pk}/classify/", {"image": squares_png(16, 16, (4, 4, 8, 8))})

    assert response.status_code == 503
    page = response.content.decode()
    assert 'id="serving-unavailable">No serving worker is running.' in page and 'id="segment-result"' not in page
