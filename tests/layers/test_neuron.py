"""Every neuron layer (a NeuronLayer): top shaped like the bottom, and in place the same
values and gradients as with a top of its own."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run

import pipeline_lib.engine.layers  # noqa: F401  (registers every layer type)
from pipeline_lib.engine.layers.base import LAYER_TYPES
from pipeline_lib.engine.layers.neuron import NeuronLayer

NEURONS = sorted(t for t, cls in LAYER_TYPES.items() if issubclass(cls, NeuronLayer))


def test_the_elementwise_layers_are_neurons():
    assert {"ReLU", "Sigmoid", "TanH", "Dropout"} <= set(NEURONS)


@pytest.mark.parametrize("type_name", NEURONS)
def test_in_place_matches_a_separate_top(xp, type_name):
    rng = np.random.default_rng(0)
    u = rng.standard_normal((2, 3, 4, 5))
    x = np.sign(u) * (0.1 + np.abs(u))  # away from ReLU's kink
    dy = rng.standard_normal(x.shape)

    layer = make_layer(f'name: "n" type: "{type_name}" bottom: "x" top: "y"', xp)
    bottom = [blob(x, xp)]
    (top,) = run(layer, bottom)
    assert top.shape == x.shape
    top.diff[...] = xp.asarray(dy)
    layer.backward([top], [True], bottom)

    in_place = make_layer(f'name: "n" type: "{type_name}" bottom: "x" top: "x"', xp)
    b = blob(x, xp)
    in_place.setup([b], [b])
    in_place.reshape([b], [b])
    in_place.forward([b], [b])
    np.testing.assert_array_equal(host(b.data), host(top.data))
    b.diff[...] = xp.asarray(dy)
    in_place.backward([b], [True], [b])
    np.testing.assert_allclose(host(b.diff), host(bottom[0].diff), rtol=1e-15, atol=0)
