"""The layers segmentation needs (upsample, conv_transpose2d, concat_skip) and the per-task head:
what validation refuses and says, the shapes and counts inferred, and the built modules agreeing."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from networks.spec import SpecError, check_head, head_tasks, summarize, validate_spec
from training.torch.build import ConcatSkip, build_model

MNIST = (1, 28, 28)


def layers(*items: dict[str, Any]) -> dict[str, Any]:
    return {"layers": list(items)}


def conv(out: int | str, kernel: int = 3, **args: Any) -> dict[str, Any]:
    return {"type": "conv2d", "out_channels": out, "kernel_size": kernel, **args}


def up(**args: Any) -> dict[str, Any]:
    return {"type": "upsample", **args}


def transposed(out: int | str, kernel: int = 2, **args: Any) -> dict[str, Any]:
    return {"type": "conv_transpose2d", "out_channels": out, "kernel_size": kernel, **args}


def skip(*body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "concat_skip", "layers": list(body)}


def pixels() -> dict[str, Any]:
    return conv("num_classes", 1)


def refusal(spec: object, input_shape: tuple[int, int, int] = MNIST, task: str | None = None) -> SpecError:
    with pytest.raises(SpecError) as caught:
        summarize(spec, input_shape, 10, task)
    return caught.value


def rows(spec: dict[str, Any], input_shape: tuple[int, int, int] = MNIST) -> dict[str, tuple[tuple[int, ...], int]]:
    return {row.path: (row.output_shape, row.params) for row in summarize(spec, input_shape, 10).rows}


def built_like_planned(spec: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int = 3) -> torch.Tensor:
    """The model's output on a batch of 2, after checking its parameters and every row's shape against the plan."""
    summary = summarize(spec, input_shape, num_classes)
    model = build_model(spec, input_shape, num_classes)
    assert sum(p.numel() for p in model.parameters()) == summary.total_params
    seen: dict[str, tuple[int, ...]] = {}
    for row in summary.rows:
        model.get_submodule(row.path).register_forward_hook(
            lambda _m, _i, output, path=row.path: seen.__setitem__(path, tuple(output.shape[1:])))
    output = model(torch.randn(2, *input_shape))
    assert seen == {row.path: row.output_shape for row in summary.rows}
    assert tuple(output.shape) == (2, *summary.output_shape)
    return output


# --- upsample ------------------------------------------------------------------------------------

def test_it_upsamples_by_a_scale_factor_or_back_to_the_input_size() -> None:
    spec = layers(conv(4, 2, stride=2), up(scale_factor=[2, 1]), up(size="input", mode="bilinear"), pixels())
    assert rows(spec) == {"0": ((4, 14, 14), 20), "1": ((4, 28, 14), 0), "2": ((4, 28, 28), 0), "3": ((10, 28, 28), 50)}


def test_it_fills_in_the_upsample_defaults_and_validates_a_normalised_spec_again() -> None:
    normalised = validate_spec(layers(up(scale_factor=2)))
    assert normalised["layers"][0] == {"type": "upsample", "scale_factor": 2, "size": None, "mode": "nearest"}
    assert validate_spec(normalised) == normalised


@pytest.mark.parametrize("args", [{}, {"scale_factor": 2, "size": "input"}])
def test_it_wants_exactly_one_of_scale_factor_and_size(args: dict[str, Any]) -> None:
    error = refusal(layers(up(**args), pixels()))
    assert error.layer == "0"
    assert error.message == (
        'Layer 0 (upsample): give exactly one of scale_factor and size (e.g. "scale_factor": 2 or "size": "input").'
    )


@pytest.mark.parametrize(("args", "message"), [
    ({"size": "output"}, 'size must be "input", an integer or a [height, width] pair of integers, not "output".'),
    ({"scale_factor": 0}, "scale_factor 0 is out of range; it must be between 1 and 64."),
    ({"scale_factor": 1.5}, "scale_factor must be an integer or a [height, width] pair of integers, not 1.5."),
    ({"size": 2, "mode": "bicubic"}, 'mode must be "nearest" or "bilinear", not "bicubic".'),
])
def test_it_refuses_bad_upsample_arguments(args: dict[str, Any], message: str) -> None:
    assert refusal(layers(conv(4), up(**args), pixels())).message == f"Layer 1 (upsample): {message}"


def test_it_refuses_to_upsample_a_flat_input() -> None:
    error = refusal(layers({"type": "flatten"}, up(scale_factor=2)))
    assert error.message.startswith("Layer 1 (upsample): expects an image-shaped input")


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_an_upsample_builds_as_planned_and_passes_gradients(mode: str) -> None:
    spec = layers(conv(4, 3, stride=2), up(scale_factor=2, mode=mode), up(size="input", mode=mode), pixels())
    model = build_model(spec, (3, 15, 17), 3)
    output = built_like_planned(spec, (3, 15, 17))
    model(torch.randn(2, 3, 15, 17)).square().sum().backward()

    assert tuple(output.shape) == (2, 3, 15, 17), "back to the input's size"
    first = next(model.parameters())
    assert first.grad is not None and float(first.grad.abs().sum()) > 0, "gradients reach the first convolution"


# --- conv_transpose2d ----------------------------------------------------------------------------

def test_it_infers_a_transposed_convolutions_shape_and_parameters() -> None:
    spec = layers(conv(8, 2, stride=2), transposed(4, 2, stride=2, output_padding=1), transposed(2, 3, padding=1),
                  up(size="input"), pixels())
    assert rows(spec, (3, 15, 15))["1"] == ((4, 15, 15), 8 * 4 * 2 * 2 + 4)
    assert rows(spec, (3, 15, 15))["2"] == ((2, 15, 15), 4 * 2 * 3 * 3 + 2)


def test_a_transposed_convolution_may_give_one_score_per_class_and_pixel() -> None:
    spec = layers(conv(8, 2, stride=2), transposed("num_classes", 2, stride=2, bias=False))
    assert summarize(spec, MNIST, 10, "segmentation").output_shape == (10, 28, 28)


def test_it_refuses_an_output_padding_not_below_the_stride() -> None:
    error = refusal(layers(transposed(4, 2, stride=2, output_padding=[0, 2])))
    assert error.message == "Layer 0 (conv_transpose2d): output_padding [0, 2] must be smaller than stride 2."


def test_it_refuses_a_transposed_convolution_that_leaves_nothing() -> None:
    error = refusal(layers(conv(4, 28), transposed(4, 1, padding=1), pixels()))
    assert error.message.startswith("Layer 1 (conv_transpose2d): padding 1 leaves no output of its 1x1 input")


def test_a_transposed_convolution_builds_as_planned_and_passes_gradients() -> None:
    spec = layers(conv(6, 3, stride=2), transposed(5, [3, 2], stride=[2, 2], padding=[1, 0], output_padding=[0, 1]),
                  up(size="input"), pixels())
    built_like_planned(spec, (1, 9, 9)).sum().backward()
    model = build_model(spec, (1, 9, 9), 3)
    model(torch.randn(2, 1, 9, 9)).sum().backward()
    assert model.get_submodule("1").weight.grad.abs().sum() > 0


# --- concat_skip ---------------------------------------------------------------------------------

def test_a_skip_concatenates_its_input_and_its_bodys_output_along_channels() -> None:
    spec = layers(conv(4, padding=1), skip({"type": "maxpool2d", "kernel_size": 2}, conv(6, padding=1),
                                          up(scale_factor=2)), pixels())
    assert rows(spec) == {
        "0": ((4, 28, 28), 40), "1": ((10, 28, 28), 222), "1.layers.0": ((4, 14, 14), 0),
        "1.layers.1": ((6, 14, 14), 222), "1.layers.2": ((6, 28, 28), 0), "2": ((10, 28, 28), 110),
    }


def test_it_refuses_a_skip_whose_body_changes_the_size_and_says_how_to_fix_it() -> None:
    error = refusal(layers(skip({"type": "maxpool2d", "kernel_size": 2}, conv(6, padding=1)), pixels()), (1, 29, 28))
    assert error.layer == "0"
    assert error.message == (
        "Layer 0 (concat_skip): its body ends at 14x14 but its input is 29x28; the two are concatenated along "
        'channels, so the body must come back to 29x28 (e.g. end it with an upsample with "size": [29, 28]).'
    )


def test_it_refuses_a_skip_whose_body_ends_flat() -> None:
    error = refusal(layers(skip({"type": "flatten"}), pixels()))
    assert error.message.startswith("Layer 0 (concat_skip): its body ends with a flat [784]")


def test_it_names_a_bad_layer_inside_a_skip_by_its_path() -> None:
    error = refusal(layers(conv(4), skip(conv(4), skip(transposed(2, 2, stride=1, output_padding=1)))))
    assert error.layer == "1.layers.1.layers.0"
    assert error.message.startswith("Layer 1.layers.1.layers.0 (conv_transpose2d): output_padding 1 must be smaller")


def test_it_refuses_a_skip_without_a_body() -> None:
    error = refusal(layers({"type": "concat_skip", "layers": []}, pixels()))
    assert error.message == "Layer 0 (concat_skip): \"layers\" must be a non-empty list of layers (the block's body)."


def test_it_refuses_skips_nested_too_deep() -> None:
    spec: dict[str, Any] = conv(2, padding=1)
    for _ in range(5):
        spec = skip(spec)
    error = refusal(layers(spec, pixels()))
    assert error.message == f"Layer {error.layer} (concat_skip): concat_skip blocks are nested more than 4 levels deep."


def test_a_skip_builds_as_planned_and_passes_gradients_through_both_paths() -> None:
    spec = layers(conv(4, padding=1), skip(conv(5, 2, stride=2), transposed(3, 2, stride=2, output_padding=1)),
                  up(size="input"), pixels())
    model = build_model(spec, (1, 7, 9), 3)
    assert isinstance(model.get_submodule("1"), ConcatSkip)
    built_like_planned(spec, (1, 7, 9))
    model(torch.randn(2, 1, 7, 9)).square().sum().backward()
    assert model.get_submodule("0").weight.grad.abs().sum() > 0
    assert model.get_submodule("1.layers.0").weight.grad.abs().sum() > 0


# --- the head a task needs -----------------------------------------------------------------------

def test_a_segmentation_head_is_one_score_per_class_for_each_pixel() -> None:
    check_head(layers(conv(4, padding=1), pixels()), MNIST, 10, "segmentation")
    error = refusal(layers(conv(4), pixels()), task="segmentation")
    assert error.layer == "1"
    assert error.message == (
        "Layer 1 (conv2d): the network ends with output 10x26x26 but must end with 10x28x28, one score per class "
        'for each pixel of the 28x28 input; end with a conv2d with out_channels "num_classes" at the input\'s '
        'height and width (an upsample with "size": "input" brings it back).'
    )


def test_a_classifier_does_not_fit_segmentation_nor_a_segmenter_classification() -> None:
    classifier = layers({"type": "flatten"}, {"type": "linear", "out_features": "num_classes"})
    segmenter = layers(pixels())
    assert "must end with 10x28x28" in refusal(classifier, task="segmentation").message
    assert refusal(segmenter, task="classification").message == (
        "Layer 0 (conv2d): the network ends with output 10x28x28 but must end with [10], one score per class; "
        'end with a flatten and a linear layer with out_features "num_classes".'
    )


def test_without_a_task_either_head_fits_and_the_refusal_names_both() -> None:
    assert summarize(layers(pixels()), MNIST, 10).output_shape == (10, 28, 28)
    message = refusal(layers(conv(3, 3))).message
    assert message.endswith("(Or, for segmentation, with 10x28x28: one score per class for each pixel.)")


def test_a_spec_heads_for_classification_when_it_flattens_and_for_segmentation_otherwise() -> None:
    assert head_tasks(layers(conv(4), {"type": "flatten"}, {"type": "linear", "out_features": 3})) == (
        "classification",)
    assert head_tasks(layers(conv(4), skip(conv(4, padding=1)), pixels())) == ("segmentation",)
    assert head_tasks({"layers": "not a list"}) == ("segmentation",)  # validation is plan_network's to say


def test_an_unknown_task_has_no_head_rule() -> None:
    with pytest.raises(ValueError, match="No head rule for the task 'teleport'"):
        check_head(layers(pixels()), MNIST, 10, "teleport")
