"""The segmentation built-ins (unet, fcn_resnet18): per-pixel scores at any input size, built as
summarised, their default solver settings, a U-Net that learns, and which networks fit which task."""
from __future__ import annotations

import pytest
import torch

from datasets.models import Dataset
from networks.builtin import BUILTIN_NETWORKS, DEFAULT_SETTINGS, builtin_spec
from networks.errors import NetworkInputError
from networks.models import Network
from networks.selectors import network_list, network_resolve
from networks.spec import head_tasks, summarize
from training.torch.build import build_model

SEGMENTERS = ["unet", "fcn_resnet18"]
# Sizes a 16x downsampling does not divide, a 1-pixel image, grey and colour.
SHAPES = [(3, 96, 128), (1, 28, 28), (3, 60, 80), (1, 17, 33), (3, 1, 1)]


@pytest.mark.parametrize("name", SEGMENTERS)
@pytest.mark.parametrize("input_shape", SHAPES)
def test_a_segmentation_builtin_scores_every_pixel_of_any_input(name: str, input_shape: tuple[int, int, int]) -> None:
    spec = builtin_spec(name, input_shape, 5)
    summary = summarize(spec, input_shape, 5, "segmentation")
    model = build_model(spec, input_shape, 5, "segmentation").eval()
    assert sum(p.numel() for p in model.parameters()) == summary.total_params
    with torch.no_grad():
        assert tuple(model(torch.randn(2, *input_shape)).shape) == (2, 5, *input_shape[1:])


@pytest.mark.parametrize("name", SEGMENTERS)
def test_a_segmentation_builtin_heads_for_segmentation_and_has_a_title_and_settings(name: str) -> None:
    assert head_tasks(builtin_spec(name, (3, 64, 64), 2)) == ("segmentation",)
    assert BUILTIN_NETWORKS[name]
    assert {"optimizer", "learning_rate", "batch_size"} <= set(DEFAULT_SETTINGS[name])


def test_the_unet_has_four_levels_with_batch_norm_and_modest_widths() -> None:
    summary = summarize(builtin_spec("unet", (3, 96, 128), 2), (3, 96, 128), 2)
    skips = [row for row in summary.rows if row.type == "concat_skip"]
    assert [row.depth for row in skips] == [0, 1, 2, 3]
    assert [row.output_shape for row in skips] == [(32, 96, 128), (64, 48, 64), (128, 24, 32), (256, 12, 16)]
    assert sum(row.type == "batchnorm2d" for row in summary.rows) == 18
    assert summary.total_params == 1_942_594


def test_the_unet_keeps_only_the_levels_a_small_image_can_halve_to() -> None:
    summary = summarize(builtin_spec("unet", (1, 5, 9), 2), (1, 5, 9), 2)
    assert [row.output_shape for row in summary.rows if row.type == "maxpool2d"] == [(16, 2, 4), (32, 1, 2)]


def test_the_fcn_is_resnet18s_encoder_with_two_skips_and_a_bilinear_way_back() -> None:
    summary = summarize(builtin_spec("fcn_resnet18", (3, 96, 128), 21), (3, 96, 128), 21)
    types = [row.type for row in summary.rows]
    assert types.count("residual") == 8 and types.count("concat_skip") == 2
    assert [row.output_shape for row in summary.rows if row.type == "concat_skip"] == [(256, 12, 16), (512, 6, 8)]
    assert summary.rows[-1].type == "upsample" and summary.output_shape == (21, 96, 128)


@pytest.fixture
def one_thread():  # type: ignore[no-untyped-def]
    # Threads fighting over a few shared cores make each step seconds long instead of a tenth of one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_unet_learns_a_fixed_mask(one_thread) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    images = torch.randn(4, 1, 32, 32)
    mask = torch.zeros(32, 32, dtype=torch.long)
    mask[8:24, 4:20] = 1  # the same square on every image: the network must learn where it is
    masks = mask.expand(4, 32, 32)
    model = build_model(builtin_spec("unet", (1, 32, 32), 2), (1, 32, 32), 2, "segmentation")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(40):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), masks).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == masks).float().mean().item()
    assert accuracy > 0.9


# --- which networks fit which task ---------------------------------------------------------------

def _dataset(owner, task: str = "classification") -> Dataset:  # type: ignore[no-untyped-def]
    return Dataset.objects.create(owner=owner, name=f"{task} digits", task=task, source="example", source_name="x",
                                  image_width=28, image_height=28, channels=1, resize_mode="squash", val_percent=20,
                                  test_percent=0, seed=0, status="ready", classes=[str(i) for i in range(10)])


@pytest.mark.django_db
def test_a_custom_network_fits_the_task_its_head_ends_in(alice) -> None:  # type: ignore[no-untyped-def]
    Network.objects.create(owner=alice, name="tiny", spec={"layers": [
        {"type": "flatten"}, {"type": "linear", "out_features": "num_classes"}]})
    Network.objects.create(owner=alice, name="pixels", spec={"layers": [
        {"type": "conv2d", "out_channels": "num_classes", "kernel_size": 1}]})

    assert [e.name for e in network_list(user=alice, task="segmentation") if not e.builtin] == ["pixels"]
    assert [e.name for e in network_list(user=alice, task="classification") if not e.builtin] == ["tiny"]


@pytest.mark.django_db
def test_a_per_pixel_network_does_not_fit_a_classification_dataset(alice) -> None:  # type: ignore[no-untyped-def]
    Network.objects.create(owner=alice, name="pixels", spec={"layers": [
        {"type": "conv2d", "out_channels": "num_classes", "kernel_size": 1}]})
    with pytest.raises(NetworkInputError) as caught:
        network_resolve(user=alice, network="pixels", dataset=_dataset(alice))
    assert str(caught.value) == (
        "The network does not fit this dataset: Layer 0 (conv2d): the network ends with output 10x28x28 but must "
        'end with [10], one score per class; end with a flatten and a linear layer with out_features "num_classes".'
    )
    assert caught.value.field == "network"


@pytest.mark.django_db
def test_a_segmentation_builtin_does_not_fit_a_classification_dataset(alice) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NetworkInputError, match="The network 'unet' does not fit a classification dataset"):
        network_resolve(user=alice, network="unet", dataset=_dataset(alice))


@pytest.mark.django_db
@pytest.mark.parametrize("name", SEGMENTERS)
def test_the_network_page_summarises_a_segmentation_builtin(alice_api, client, alice, name: str) -> None:  # type: ignore[no-untyped-def]
    body = alice_api.get(f"/api/v1/networks/{name}/").json()
    assert body["layers"][-1]["output_shape"] == [10, 28, 28]
    client.force_login(alice)
    assert client.get(f"/networks/{name}/").status_code == 200
