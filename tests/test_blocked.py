"""The blocked additive scores equal the all-at-once ones, values and gradients, every backend."""

import keras
import numpy as np
import pytest
from gradients import value_and_grads
from keras import ops

from keras_seqattn import blocked as blocked_module
from keras_seqattn.blocked import additive_scores

pytestmark = pytest.mark.all_backends


@pytest.fixture(params=["in blocks", "at once"])
def way(request, monkeypatch):
    # PyTorch forms small tensors at once (`ALL_AT_ONCE_BYTES`); test both ways everywhere.
    limit = {} if request.param == "in blocks" else {keras.backend.backend(): 2**40}
    monkeypatch.setattr(blocked_module, "ALL_AT_ONCE_BYTES", limit)
    return request.param


def all_at_once(query_proj, input_proj, score_vector):
    # The (..., m, n, units) tensor that blocking avoids.
    hidden = ops.tanh(ops.expand_dims(query_proj, -2) + ops.expand_dims(input_proj, -3))
    v = ops.expand_dims(ops.expand_dims(score_vector, -2), -2)
    return ops.sum(hidden * v, axis=-1)


@pytest.mark.parametrize(
    ("query_shape", "input_shape", "vector_shape", "per_block"),
    [
        ((3, 5, 12), (3, 7, 12), (12,), 4),  # three blocks of four
        ((2, 4, 7), (2, 6, 7), (7,), 4),  # 7 units: blocks of one (the divisor that fits)
        ((2, 4, 8), (2, 1, 8), (8,), 8),  # one block; a single input
        ((2, 3, 5, 8), (2, 3, 6, 8), (3, 8), 2),  # a head axis with a vector per head
        ((1, 1, 6), (1, 9, 6), (6,), 3),  # a single query
    ],
)
def test_blocked_scores_and_gradients_equal_the_all_at_once_computation(
    query_shape, input_shape, vector_shape, per_block, way
):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype("float32") for s in (query_shape, input_shape)]
    arrays.append(rng.standard_normal(vector_shape).astype("float32"))

    def blocked(pq, pe, v):
        return additive_scores(pq, pe, v, units_per_block=per_block)

    got, got_grads = value_and_grads(blocked, arrays)
    want, want_grads = value_and_grads(all_at_once, arrays)
    assert got.shape == query_shape[:-1] + (input_shape[-2],)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for name, g, w, a in zip(
        ("query_proj", "input_proj", "v"), got_grads, want_grads, arrays, strict=True
    ):
        assert g.shape == a.shape, name
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=name)


def test_blocked_scores_refuse_projections_of_different_units():
    pq, pe, v = np.zeros((1, 2, 4), "float32"), np.zeros((1, 3, 5), "float32"), np.zeros(4)
    with pytest.raises(ValueError, match="same, known last axis"):
        additive_scores(ops.convert_to_tensor(pq), ops.convert_to_tensor(pe), v)


def test_only_pytorch_forms_the_whole_tensor_and_only_up_to_its_limit():
    def small(m, n, units=64):
        pq = ops.zeros((32, m, units))
        pe = ops.zeros((32, n, units))
        return blocked_module._small_enough(pq, pe, units)

    on_torch = keras.backend.backend() == "torch"
    # 32 x 128 x 128 x 64 float32: 128 MiB; 32 x 256 x 256 x 64: 512 MiB.
    assert small(128, 128) == on_torch
    assert not small(256, 256)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="about JAX's compilation cache")
def test_eager_calls_on_jax_compile_the_blocks_loop_once_per_shape(monkeypatch):
    # Outside jit, each lax.fori_loop call would compile its loop anew (0.24 s a call).
    monkeypatch.setattr(blocked_module, "ALL_AT_ONCE_BYTES", {})
    compiled = blocked_module._jax_blocked()
    before = compiled._cache_size()
    rng = np.random.default_rng(2)
    pq, pe, v = (rng.standard_normal(s).astype("float32") for s in ((2, 3, 8), (2, 5, 8), (8,)))
    first = additive_scores(ops.convert_to_tensor(pq), ops.convert_to_tensor(pe), v)
    again = additive_scores(ops.convert_to_tensor(pq * 2), ops.convert_to_tensor(pe), v)
    assert compiled._cache_size() == before + 1
    assert not np.allclose(ops.convert_to_numpy(first), ops.convert_to_numpy(again))
