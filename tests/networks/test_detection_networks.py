"""The detection built-in (centernet): CenterNet's head on a stride-4 map of any input, built as
summarised, its head rule and refusals, its default solver settings, and which networks fit detection."""
from __future__ import annotations

import pytest
import torch

from datasets.models import Dataset
from networks.builtin import BUILTIN_NETWORKS, DEFAULT_SETTINGS, builtin_spec
from networks.errors import NetworkInputError
from networks.models import Network
from networks.selectors import network_list, network_resolve
from networks.spec import SpecError, check_head, summarize
from training.torch.build import build_model
from training.vision_tasks import vision_task

# Sizes 32 does not divide (the head is ceil(size / 4)), grey and colour, a tiny image, and 320x240.
SHAPES = [(3, 96, 96), (3, 97, 130), (1, 33, 45), (3, 8, 8), (3, 240, 320), (1, 5, 3)]


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("input_shape", SHAPES)
def test_centernet_gives_classes_plus_four_channels_at_a_quarter_of_any_input(input_shape) -> None:  # type: ignore[no-untyped-def]
    outputs = vision_task("detection").outputs(["a", "b", "c"])
    spec = builtin_spec("centernet", input_shape, outputs)
    summary = summarize(spec, input_shape, outputs, "detection")
    model = build_model(spec, input_shape, outputs, "detection").eval()
    cells = (-(-input_shape[1] // 4), -(-input_shape[2] // 4))
    assert outputs == 7 and summary.output_shape == (7, *cells)
    assert sum(p.numel() for p in model.parameters()) == summary.total_params
    with torch.no_grad():
        assert tuple(model(torch.randn(2, *input_shape)).shape) == (2, 7, *cells)


def test_centernet_is_resnet18s_encoder_with_a_three_level_pyramid_back_to_stride_4() -> None:
    summary = summarize(builtin_spec("centernet", (3, 96, 128), 6), (3, 96, 128), 6, "detection")
    types = [row.type for row in summary.rows]
    assert types.count("residual") == 8 and types.count("concat_skip") == 3
    # Each pyramid level: the stage's features beside the deeper level's, brought up to their size.
    assert [row.output_shape for row in summary.rows if row.type == "concat_skip"] == [
        (128, 24, 32), (256, 12, 16), (384, 6, 8)]
    assert [row.output_shape for row in summary.rows if row.type == "upsample"] == [(128, 6, 8), (128, 12, 16), (64, 24, 32)]
    assert 11_000_000 < summary.total_params < 13_000_000


def test_centernet_is_detections_builtin_with_settings_that_train_it() -> None:
    assert vision_task("detection").networks == ("centernet",) and BUILTIN_NETWORKS["centernet"]
    assert DEFAULT_SETTINGS["centernet"] == {"optimizer": "adamw", "learning_rate": 0.002, "weight_decay": 0.0001,
                                             "batch_size": 8, "lr_policy": "cosine"}


def test_a_network_ending_anywhere_else_is_refused_for_detection_with_the_size_it_needs() -> None:
    per_pixel = {"layers": [{"type": "conv2d", "out_channels": "num_classes", "kernel_size": 1}]}
    with pytest.raises(SpecError) as caught:
        check_head(per_pixel, (3, 30, 41), 6, "detection")
    assert "must end with 6x8x11, the detection head" in str(caught.value)
    assert "centernet" in str(caught.value)
    check_head(builtin_spec("centernet", (3, 30, 41), 6), (3, 30, 41), 6, "detection")


# --- which networks fit detection ----------------------------------------------------------------

def _dataset(owner, task: str) -> Dataset:  # type: ignore[no-untyped-def]
    return Dataset.objects.create(owner=owner, name=f"{task} shapes", task=task, source="example", source_name="x",
                                  image_width=64, image_height=48, channels=3, resize_mode="squash", val_percent=20,
                                  test_percent=0, seed=0, status="ready", classes=["square", "disc"])


@pytest.mark.django_db
def test_only_centernet_is_offered_for_detection_and_it_fits_a_detection_dataset(alice) -> None:  # type: ignore[no-untyped-def]
    Network.objects.create(owner=alice, name="pixels", spec={"layers": [
        {"type": "conv2d", "out_channels": "num_classes", "kernel_size": 1}]})

    assert [e.name for e in network_list(user=alice, task="detection")] == ["centernet"]
    spec, custom = network_resolve(user=alice, network="centernet", dataset=_dataset(alice, "detection"))
    assert custom is None and summarize(spec, (3, 48, 64), 6, "detection").output_shape == (6, 12, 16)


@pytest.mark.django_db
def test_custom_and_other_tasks_networks_are_refused_for_detection_naming_the_field(alice) -> None:  # type: ignore[no-untyped-def]
    Network.objects.create(owner=alice, name="pixels", spec={"layers": [
        {"type": "conv2d", "out_channels": "num_classes", "kernel_size": 1}]})
    dataset = _dataset(alice, "detection")
    with pytest.raises(NetworkInputError, match="Custom networks do not fit a detection dataset yet: use one of centernet"):
        network_resolve(user=alice, network="pixels", dataset=dataset)
    with pytest.raises(NetworkInputError, match="The network 'unet' does not fit a detection dataset") as caught:
        network_resolve(user=alice, network="unet", dataset=dataset)
    assert caught.value.field == "network"
    with pytest.raises(NetworkInputError, match="The network 'centernet' does not fit a segmentation dataset"):
        network_resolve(user=alice, network="centernet", dataset=_dataset(alice, "segmentation"))


def test_centernet_halves_its_widths_above_160x160_so_a_large_image_costs_a_quarter_per_pixel() -> None:
    small = summarize(builtin_spec("centernet", (3, 160, 160), 6), (3, 160, 160), 6, "detection")
    large = summarize(builtin_spec("centernet", (3, 240, 320), 6), (3, 240, 320), 6, "detection")

    assert [row.output_shape[0] for row in small.rows if row.type == "concat_skip"] == [128, 256, 384]
    assert [row.output_shape[0] for row in large.rows if row.type == "concat_skip"] == [64, 128, 192]
    assert large.output_shape == (6, 60, 80) and large.total_params < small.total_params / 3


@pytest.mark.django_db
def test_the_new_network_form_says_detection_takes_its_builtin_only(client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)
    page = client.get("/networks/new/").content.decode()
    assert "Detection trains its built-in network, centernet, only." in page
