"""Network specs: what validation refuses (and says), and the summary table's exact numbers."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from networks.builtin import BUILTIN_NETWORKS, UnknownNetwork, builtin_spec
from networks.spec import LayerRow, NetworkSummary, SpecError, head_tasks, parse_spec_text, summarize, validate_spec

ROOT = Path(__file__).resolve().parents[2]
MNIST = (1, 28, 28)
# The segmentation built-ins have tests of their own (tests/networks/test_segmentation_networks.py).
CLASSIFIERS = sorted(n for n in BUILTIN_NETWORKS if head_tasks(builtin_spec(n, MNIST, 2)) == ("classification",))


def layers(*items: dict[str, Any]) -> dict[str, Any]:
    return {"layers": list(items)}


def conv(out: int | str, kernel: int | list[int], **args: Any) -> dict[str, Any]:
    return {"type": "conv2d", "out_channels": out, "kernel_size": kernel, **args}


def head() -> list[dict[str, Any]]:
    return [{"type": "flatten"}, {"type": "linear", "out_features": "num_classes"}]


def refusal(spec: object, input_shape: tuple[int, ...] = MNIST, num_classes: int = 10) -> SpecError:
    with pytest.raises(SpecError) as caught:
        summarize(spec, input_shape, num_classes)  # type: ignore[arg-type]
    return caught.value


# --- the whole spec ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [None, [], "lenet", 3, [{"type": "relu"}]])
def test_it_refuses_a_spec_that_is_not_an_object(spec: object) -> None:
    error = refusal(spec)
    assert error.layer is None
    assert 'JSON object with a "layers" list' in error.message


def test_it_refuses_a_spec_without_layers() -> None:
    assert refusal({}).message == 'The network spec has no "layers" list.'


@pytest.mark.parametrize("value", [[], {}, "relu", None])
def test_it_refuses_an_empty_or_non_list_layers(value: object) -> None:
    assert "non-empty list of layers" in refusal({"layers": value}).message


def test_it_refuses_unknown_top_level_keys() -> None:
    assert 'Unknown key "name"' in refusal({"layers": head(), "name": "x"}).message


# --- one layer's structure ----------------------------------------------------------------------

def test_it_refuses_a_layer_that_is_not_an_object() -> None:
    error = refusal(layers({"type": "flatten"}, "linear"))  # type: ignore[arg-type]
    assert (error.layer, error.message) == ("1", 'Layer 1: a layer must be an object with a "type", not "linear".')


def test_it_refuses_a_layer_without_a_type() -> None:
    error = refusal(layers({"out_features": 10}))
    assert error.layer == "0"
    assert error.message.startswith('Layer 0: "type" must be a string naming a layer type')


def test_it_refuses_an_unknown_layer_type_and_suggests_a_close_one() -> None:
    error = refusal(layers(conv(8, 3), {"type": "conv3d", "out_channels": 8}, *head()))
    assert error.layer == "1"
    assert error.message == 'Layer 1 (conv3d): unknown layer type "conv3d". Did you mean "conv2d"?'


def test_it_lists_the_allowed_types_when_nothing_is_close() -> None:
    message = refusal(layers({"type": "transformer"})).message
    assert message.startswith('Layer 0 (transformer): unknown layer type "transformer". Allowed types: conv2d, linear')


def test_it_refuses_an_unknown_argument() -> None:
    error = refusal(layers({"type": "flatten"}, {"type": "linear", "out_features": 10, "bais": False}))
    assert error.layer == "1"
    assert error.message == 'Layer 1 (linear): unknown argument "bais" (allowed: out_features, bias).'


def test_it_refuses_a_missing_required_argument() -> None:
    error = refusal(layers({"type": "conv2d", "kernel_size": 3}))
    assert error.message == "Layer 0 (conv2d): the required argument out_channels is missing."


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (conv("8", 3), 'out_channels must be a positive integer or "num_classes", not "8".'),
        (conv(8.0, 3), 'out_channels must be a positive integer or "num_classes", not 8.0.'),
        (conv(True, 3), 'out_channels must be a positive integer or "num_classes", not true.'),
        (conv(8, [3, 3, 3]), "kernel_size must be an integer or a [height, width] pair of integers, not [3, 3, 3]."),
        (conv(8, 3, padding="valid"), 'padding must be an integer, a [height, width] pair or "same", not "valid".'),
        (conv(8, 3, bias="yes"), 'bias must be true or false, not "yes".'),
        (conv(8, 3, groups=1.5), "groups must be an integer, not 1.5."),
        ({"type": "dropout", "p": "half"}, 'p must be a number, not "half".'),
        (
            {"type": "residual", "layers": [{"type": "relu"}], "activation": "gelu"},
            'activation must be "relu" or null, not "gelu".',
        ),
    ],
)
def test_it_refuses_an_argument_of_the_wrong_type(layer: dict[str, Any], message: str) -> None:
    error = refusal(layers({"type": "relu"}, layer))
    assert error.layer == "1"
    assert error.message == f"Layer 1 ({layer['type']}): {message}"


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (conv(0, 3), "out_channels 0 is out of range; it must be between 1 and 65536."),
        (conv(8, 0), "kernel_size 0 is out of range; it must be between 1 and 64."),
        (conv(8, [3, 65]), "kernel_size 65 is out of range; it must be between 1 and 64."),
        (conv(8, 3, padding=-1), "padding -1 is out of range; it must be between 0 and 64."),
        ({"type": "dropout", "p": 1}, "p 1 is out of range; it must be at least 0 and below 1."),
        ({"type": "dropout2d", "p": -0.1}, "p -0.1 is out of range; it must be at least 0 and below 1."),
        ({"type": "leaky_relu", "negative_slope": 2}, "negative_slope 2 is out of range; it must be between 0 and 1."),
        (
            {"type": "adaptive_avgpool2d", "output_size": [0, 1]},
            "output_size 0 is out of range; it must be between 1 and 1024.",
        ),
    ],
)
def test_it_refuses_an_argument_out_of_range(layer: dict[str, Any], message: str) -> None:
    error = refusal(layers(layer))
    assert error.message == f"Layer 0 ({layer['type']}): {message}"


def test_it_refuses_same_padding_with_a_stride() -> None:
    error = refusal(layers(conv(8, 3, padding="same", stride=2)))
    assert error.message == 'Layer 0 (conv2d): padding "same" needs stride 1, not 2.'


def test_it_refuses_pool_padding_over_half_the_kernel() -> None:
    error = refusal(layers({"type": "maxpool2d", "kernel_size": 2, "padding": 2}))
    assert error.message == "Layer 0 (maxpool2d): padding 2 is more than half of kernel_size 2."


def test_it_refuses_more_than_200_layers() -> None:
    error = refusal({"layers": [{"type": "relu"}] * 201})
    assert error.layer == "200"
    assert error.message == "Layer 200 (relu): the network has more than 200 layers (nested ones included)."


def test_it_counts_nested_layers_against_the_cap() -> None:
    block = {"type": "residual", "layers": [{"type": "relu"}] * 99}
    bigger = {"type": "residual", "layers": [{"type": "relu"}] * 100}
    smaller = {"type": "residual", "layers": [{"type": "relu"}] * 98}
    assert summarize(layers(block, smaller, {"type": "flatten"}), MNIST, 784).rows[-1].path == "2"  # 200 in all
    error = refusal(layers(block, bigger))
    assert error.layer == "1.layers.99"
    assert "more than 200 layers" in error.message


def test_it_refuses_residual_blocks_nested_deeper_than_4() -> None:
    block: dict[str, Any] = {"type": "relu"}
    for _ in range(5):
        block = {"type": "residual", "layers": [block]}
    error = refusal(layers(block))
    assert error.layer == "0.layers.0.layers.0.layers.0.layers.0"
    assert error.message == f"Layer {error.layer} (residual): residual blocks are nested more than 4 levels deep."


def test_it_allows_residual_blocks_nested_4_deep() -> None:
    block: dict[str, Any] = {"type": "relu"}
    for _ in range(4):
        block = {"type": "residual", "layers": [block]}
    assert summarize(layers(block, *head()), MNIST, 10).rows[4].path == "0.layers.0.layers.0.layers.0.layers.0"


def test_it_refuses_a_residual_block_with_an_empty_body() -> None:
    error = refusal(layers({"type": "residual", "layers": []}))
    assert error.message == 'Layer 0 (residual): "layers" must be a non-empty list of layers (the block\'s body).'


def test_it_names_a_nested_layer_by_its_path() -> None:
    block = {"type": "residual", "layers": [conv(1, 3, padding=1), {"type": "batchnorm2d", "eps": 1e-5}]}
    error = refusal(layers({"type": "relu"}, block))
    assert error.layer == "1.layers.1"
    assert error.message == 'Layer 1.layers.1 (batchnorm2d): unknown argument "eps" (allowed: none).'


# --- shapes --------------------------------------------------------------------------------------

def test_it_refuses_a_kernel_larger_than_its_input() -> None:
    spec = layers(conv(4, 3), {"type": "maxpool2d", "kernel_size": 2}, conv(4, 3), conv(4, 7), *head())
    error = refusal(spec, (1, 16, 16))
    assert error.layer == "3"
    assert error.message == "Layer 3 (conv2d): kernel_size 7 is larger than its 5x5 input."


def test_it_counts_padding_when_comparing_kernel_and_input() -> None:
    assert summarize(layers(conv(4, 7, padding=1), *head()), (1, 5, 5), 10).rows[0].output_shape == (4, 1, 1)
    error = refusal(layers(conv(4, [3, 9], padding=[0, 1]), *head()), (1, 5, 5))
    assert error.message == "Layer 0 (conv2d): kernel_size 3x9 is larger than its 5x5 input padded by 0x1."


def test_it_refuses_a_pool_that_would_leave_nothing() -> None:
    spec = layers(conv(4, 3), {"type": "maxpool2d", "kernel_size": 2}, {"type": "maxpool2d", "kernel_size": 2}, *head())
    error = refusal(spec, (1, 5, 5))
    assert error.message == "Layer 2 (maxpool2d): kernel_size 2 is larger than its 1x1 input."


def test_it_does_not_flatten_automatically_before_a_linear_layer() -> None:
    error = refusal(layers(conv(4, 3), {"type": "linear", "out_features": "num_classes"}))
    assert error.layer == "1"
    assert error.message == (
        'Layer 1 (linear): expects a flat input but gets 4x26x26; add a {"type": "flatten"} layer before it.'
    )


@pytest.mark.parametrize("layer_type", ["conv2d", "maxpool2d", "batchnorm2d", "dropout2d", "adaptive_avgpool2d"])
def test_it_refuses_an_image_layer_after_flatten(layer_type: str) -> None:
    layer = conv(4, 3) if layer_type == "conv2d" else {"type": layer_type}
    if layer_type == "maxpool2d":
        layer["kernel_size"] = 2
    error = refusal(layers({"type": "flatten"}, layer, *head()))
    assert error.message.startswith(
        f"Layer 1 ({layer_type}): expects an image-shaped input (channels x height x width) but gets a flat [784]"
    )


def test_it_refuses_batchnorm1d_on_an_image() -> None:
    assert refusal(layers({"type": "batchnorm1d"})).message.startswith(
        "Layer 0 (batchnorm1d): expects a flat input but gets 1x28x28"
    )


def test_it_refuses_groups_that_do_not_divide_the_channels() -> None:
    error = refusal(layers(conv(4, 3, groups=3), *head()), (3, 8, 8))
    assert error.message == "Layer 0 (conv2d): groups 3 must divide both its 3 input channels and its 4 output channels."


def test_it_refuses_a_residual_body_that_ends_flat() -> None:
    error = refusal(layers({"type": "residual", "layers": [{"type": "flatten"}]}, *head()))
    assert error.message.startswith("Layer 0 (residual): its body ends with a flat [784]")


def test_it_refuses_a_residual_body_that_grows_the_image() -> None:
    error = refusal(layers({"type": "residual", "layers": [conv(1, 3, padding=[1, 2])]}, *head()))
    assert error.message.startswith("Layer 0 (residual): its body grows its 28x28 input to 28x30")


def test_it_refuses_a_residual_body_no_projection_can_match() -> None:
    error = refusal(layers({"type": "residual", "layers": [conv(1, 4)]}, *head()), (1, 10, 10))
    assert error.message == (
        "Layer 0 (residual): its body shrinks its 10x10 input to 7x7, which no strided 1x1 projection shortcut matches."
    )


def test_it_refuses_a_network_that_does_not_end_in_one_score_per_class() -> None:
    error = refusal(layers({"type": "flatten"}, {"type": "linear", "out_features": 5}))
    assert error.layer == "1"
    assert error.message.startswith("Layer 1 (linear): the network ends with output [5] but must end with [10]")


def test_it_refuses_a_network_that_ends_image_shaped() -> None:
    error = refusal(layers(conv("num_classes", 3)))
    assert error.message.startswith("Layer 0 (conv2d): the network ends with output 10x26x26 but must end with [10]")


def test_it_refuses_a_layer_with_too_many_values_per_image() -> None:
    error = refusal(layers(conv(4096, 1), *head()), (3, 224, 224))
    assert error.message == (
        "Layer 0 (conv2d): its output 4096x224x224 holds 205,520,896 values per image; the limit is 50,000,000."
    )


def test_it_refuses_a_network_with_too_many_parameters() -> None:
    spec = layers({"type": "flatten"}, {"type": "linear", "out_features": 65536}, *head()[1:])
    error = refusal(spec, (3, 224, 224))
    assert error.layer == "1"
    assert "the limit is 500,000,000" in error.message


@pytest.mark.parametrize("input_shape", [(1, 28), (0, 28, 28), (1, 28.0, 28), "1x28x28"])
def test_it_refuses_a_bad_input_shape(input_shape: Any) -> None:
    assert refusal(layers(*head()), input_shape).message.startswith("The input shape must be (channels, height, width)")


def test_it_refuses_a_bad_class_count() -> None:
    assert refusal(layers(*head()), MNIST, 0).message == "num_classes must be a positive integer, not 0."


# --- normalisation and the summary --------------------------------------------------------------

def test_it_fills_in_defaults_on_a_copy() -> None:
    spec = layers(
        conv(8, [3, 5]),
        {"type": "maxpool2d", "kernel_size": [2, 3]},
        {"type": "residual", "layers": [{"type": "dropout"}]},
    )
    normalised = validate_spec(spec)
    assert normalised == {"layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": [3, 5], "stride": 1, "padding": 0, "bias": True, "groups": 1},
        {"type": "maxpool2d", "kernel_size": [2, 3], "stride": [2, 3], "padding": 0},
        {"type": "residual", "layers": [{"type": "dropout", "p": 0.5}], "activation": "relu"},
    ]}
    normalised["layers"][0]["kernel_size"][0] = 7
    assert spec["layers"][0]["kernel_size"] == [3, 5]
    assert "stride" not in spec["layers"][0]


def test_it_summarises_a_small_network_exactly() -> None:
    spec = layers(
        conv(4, 3),  # 1*4*3*3 + 4 = 40 → 4x6x6
        {"type": "batchnorm2d"},  # 2*4 = 8
        {"type": "relu"},
        # 4*4*9 = 144, identity shortcut
        {"type": "residual", "activation": None, "layers": [conv(4, 3, padding="same", bias=False)]},
        {"type": "residual", "layers": [  # body 288 + 16, projection 4*8 + 2*8 = 48 → 352
            conv(8, 3, stride=2, padding=1, bias=False),  # 4*8*9 = 288 → 8x3x3
            {"type": "batchnorm2d"},  # 16
        ]},
        {"type": "maxpool2d", "kernel_size": 2},  # (3-2)//2+1 = 1 → 8x1x1
        {"type": "flatten"},
        {"type": "linear", "out_features": "num_classes"},  # 8*3 + 3 = 27
    )
    summary = summarize(spec, (1, 8, 8), 3)
    assert summary == NetworkSummary(
        rows=[
            LayerRow("0", "conv2d", (4, 6, 6), 40, 0),
            LayerRow("1", "batchnorm2d", (4, 6, 6), 8, 0),
            LayerRow("2", "relu", (4, 6, 6), 0, 0),
            LayerRow("3", "residual", (4, 6, 6), 144, 0),
            LayerRow("3.layers.0", "conv2d", (4, 6, 6), 144, 1),
            LayerRow("4", "residual", (8, 3, 3), 352, 0),
            LayerRow("4.layers.0", "conv2d", (8, 3, 3), 288, 1),
            LayerRow("4.layers.1", "batchnorm2d", (8, 3, 3), 16, 1),
            LayerRow("5", "maxpool2d", (8, 1, 1), 0, 0),
            LayerRow("6", "flatten", (8,), 0, 0),
            LayerRow("7", "linear", (3,), 27, 0),
        ],
        total_params=571,
        trainable_params=571,
        output_shape=(3,),
    )


def test_it_substitutes_num_classes_wherever_a_count_goes() -> None:
    spec = layers(conv("num_classes", 3), {"type": "flatten"}, {"type": "linear", "out_features": "num_classes"})
    summary = summarize(spec, (1, 5, 5), 7)
    assert [row.output_shape for row in summary.rows] == [(7, 3, 3), (63,), (7,)]
    assert summary.total_params == (7 * 9 + 7) + (63 * 7 + 7)
    assert validate_spec(spec)["layers"][0]["out_channels"] == "num_classes"  # the spec itself stays portable


def test_its_summary_is_frozen() -> None:
    summary = summarize(layers(*head()), MNIST, 10)
    with pytest.raises(AttributeError):
        summary.total_params = 0  # type: ignore[misc]


# --- JSON text -----------------------------------------------------------------------------------

def test_it_parses_json_text_into_a_validated_spec() -> None:
    assert parse_spec_text('{"layers": [{"type": "dropout"}]}') == {"layers": [{"type": "dropout", "p": 0.5}]}


def test_it_reports_where_json_text_is_broken() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec_text('{"layers": [\n  {"type": "relu"},\n  ]}')
    assert caught.value.layer is None
    assert caught.value.message == "The network spec is not valid JSON: Expecting value at line 3, column 3."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"layers": [{"type": "dropout", "p": NaN}]}',
            "The network spec is not valid JSON: NaN is not a number JSON allows.",
        ),
        ('{"layers": [{"type": "dropout", "p": 0.1, "p": 0.2}]}', 'The network spec repeats the key "p" in one object.'),
        ("[" * 100_000, "The network spec is nested too deeply to read."),
        ('{"layers": []}', 'The network spec\'s "layers" must be a non-empty list of layers.'),
    ],
)
def test_it_refuses_json_text_it_cannot_trust(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec_text(text)
    assert caught.value.message == message


def test_it_refuses_overlong_json_text() -> None:
    with pytest.raises(SpecError, match="the limit is 200000"):
        parse_spec_text(" " * 200_001)


# --- built-in networks ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("input_shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64), (3, 224, 224)])
@pytest.mark.parametrize("num_classes", [2, 10])
def test_every_builtin_fits_common_input_shapes(name: str, input_shape: tuple[int, int, int], num_classes: int) -> None:
    summary = summarize(builtin_spec(name, input_shape, num_classes), input_shape, num_classes)
    assert summary.output_shape == (num_classes,)


def test_the_builtins_have_their_textbook_sizes() -> None:
    # LeNet on MNIST and ResNet-18 on ImageNet are the counts every framework reports.
    assert summarize(builtin_spec("lenet", MNIST, 10), MNIST, 10).total_params == 431_080
    assert summarize(builtin_spec("resnet18", (3, 224, 224), 1000), (3, 224, 224), 1000).total_params == 11_689_512


def test_lenet_pools_large_images_to_a_small_classifier() -> None:
    spec = builtin_spec("lenet", (3, 224, 224), 10)
    summary = summarize(spec, (3, 224, 224), 10)
    assert [row.type for row in summary.rows][4:7] == ["adaptive_avgpool2d", "flatten", "linear"]
    assert summary.rows[5].output_shape == (800,)


def test_resnet18_uses_a_small_stem_for_small_images() -> None:
    small = [layer["type"] for layer in builtin_spec("resnet18", (3, 32, 32), 10)["layers"]]
    large = [layer["type"] for layer in builtin_spec("resnet18", (3, 224, 224), 10)["layers"]]
    assert small[:4] == ["conv2d", "batchnorm2d", "relu", "residual"]
    assert large[:4] == ["conv2d", "batchnorm2d", "relu", "maxpool2d"]
    assert builtin_spec("resnet18", (3, 32, 32), 10)["layers"][0]["kernel_size"] == 3


def test_it_refuses_an_unknown_builtin() -> None:
    with pytest.raises(UnknownNetwork) as caught:
        builtin_spec("vgg16", MNIST, 10)
    assert isinstance(caught.value, KeyError)
    assert str(caught.value) == "Unknown built-in network 'vgg16'; choose one of lenet, mlp, alexnet, resnet18, unet, fcn_resnet18, centernet."


def test_the_web_side_modules_do_not_import_torch() -> None:
    code = "import sys, networks.spec, networks.builtin; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
