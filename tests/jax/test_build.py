"""The Flax NNX builder makes the same network as the torch builder from the same spec: the same
weight names and shapes, and, given the same weights, the same outputs."""
from __future__ import annotations

import numpy as np
import pytest

from networks.builtin import builtin_spec
from networks.errors import SpecError

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")

from training.jax.backend import JaxBackend  # noqa: E402
from training.jax.build import build_model, load_weights, named_weights  # noqa: E402
from training.torch.build import build_model as torch_build  # noqa: E402

CUSTOM = {"layers": [
    {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "padding": "same", "groups": 1},
    {"type": "batchnorm2d"}, {"type": "leaky_relu"}, {"type": "avgpool2d", "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1},
                                    {"type": "gelu"}], "activation": "relu"},
    {"type": "dropout2d", "p": 0.2}, {"type": "adaptive_avgpool2d", "output_size": [3, 2]}, {"type": "flatten"},
    {"type": "linear", "out_features": 16}, {"type": "batchnorm1d"}, {"type": "elu"}, {"type": "tanh"},
    {"type": "dropout", "p": 0.3}, {"type": "linear", "out_features": "num_classes"}, {"type": "sigmoid"}]}


@pytest.mark.parametrize(("name", "shape"), [("lenet", (1, 28, 28)), ("mlp", (1, 28, 28)), ("resnet18", (3, 32, 32)),
                                             ("lenet", (3, 12, 10)), ("custom", (3, 11, 9))])
def test_it_builds_the_torch_network_with_the_same_names_and_outputs(name: str, shape: tuple[int, int, int]) -> None:
    spec = CUSTOM if name == "custom" else builtin_spec(name, shape, 10)
    reference = torch_build(spec, shape, 10).eval()
    state = {key: value.numpy() for key, value in reference.state_dict().items()
             if not key.endswith("num_batches_tracked")}
    model = build_model(spec, shape, 10, seed=3)
    ours = named_weights(model)
    assert {key: tuple(v.shape) for key, v in ours.items()} == {key: v.shape for key, v in state.items()}
    rng = np.random.default_rng(0)
    for key, value in state.items():  # batch statistics that are not the initial ones, so eval uses them
        if "running" in key:
            state[key] = (value + rng.uniform(0.1, 0.5, value.shape)).astype(np.float32)
    reference.load_state_dict({key: torch.from_numpy(v) for key, v in state.items()}, strict=False)
    load_weights(model, state)
    x = rng.normal(size=(4, *shape)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    got = np.asarray(model(jax.numpy.asarray(x), False, jax.random.key(0)))
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-3)


def test_it_starts_from_weights_its_seed_decides() -> None:
    spec = builtin_spec("lenet", (1, 28, 28), 10)
    first, again, other = (named_weights(build_model(spec, (1, 28, 28), 10, seed=s)) for s in (1, 1, 2))
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["0.weight"], other["0.weight"])


def test_it_names_the_first_layer_it_cannot_build() -> None:
    spec = {"layers": [{"type": "residual", "layers": [{"type": "upsample", "scale_factor": 1}]},
                       {"type": "flatten"}, {"type": "linear", "out_features": "num_classes"}]}
    assert JaxBackend.unbuildable_layer(spec) == ("0.layers.0", "upsample")
    assert JaxBackend.unbuildable_layer(builtin_spec("resnet18", (3, 32, 32), 10)) is None
    with pytest.raises(SpecError, match="Layer 0.layers.0 \\(upsample\\): the jax backend cannot build"):
        build_model(spec, (3, 8, 8), 2)
