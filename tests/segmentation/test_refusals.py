"""What a segmentation job cannot do yet is refused in words (a 409), never a server error."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from results.models import Compression
from tests.segmentation.conftest import segmentation_job

pytestmark = pytest.mark.django_db


def png() -> io.BytesIO:
    file = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(file, format="PNG")
    file.seek(0)
    file.name = "dark.png"
    return file


def test_inspect_is_refused_for_a_segmentation_job(alice, alice_api, trained):
    job = segmentation_job(alice, trained)

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/inspect/", {"image": png()}, format="multipart")

    assert response.status_code == 409
    assert response.json()["error"] == "Inspect is not available for segmentation yet."


def test_compression_is_refused_for_a_segmentation_job(alice, alice_api, client, trained):
    job = segmentation_job(alice, trained)

    response = alice_api.post(f"/api/v1/jobs/{job.pk}/compress/", {"method": "quantize_dynamic"}, format="json")
    client.force_login(alice)
    page = client.post(f"/jobs/{job.pk}/compress/", {"method": "quantize_dynamic"}, follow=True)

    assert response.status_code == 409
    assert response.json()["error"] == "Compression is not available for segmentation yet."
    assert "Compression is not available for segmentation yet." in page.content.decode()
    assert not Compression.objects.exists()
