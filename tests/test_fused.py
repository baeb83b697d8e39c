"""The fused kernel path equals the explicit path: outputs and gradients, every option.

`SequenceAttention` with "dot" or "bilinear" scoring computes its outputs with
`keras.ops.dot_product_attention` when no weights are asked for; asking for the weights
(`return_attention_scores=True`) always takes the explicit path. So comparing the outputs
of the two calls compares the two paths, on every backend.
"""

import itertools

import keras
import numpy as np
import pytest
from backend_tools import float64_enabled
from gradients import value_and_grads

from keras_seqattn import SequenceAttention, fused

pytestmark = pytest.mark.all_backends


@pytest.fixture(autouse=True)
def fused_on_every_backend(monkeypatch):
    # TensorFlow keeps the explicit path by default (no fused kernel there); compare the
    # two paths there too.
    monkeypatch.setattr(fused, "FUSED_BACKENDS", ("jax", "torch", "tensorflow"))
    monkeypatch.setattr(fused, "FUSED_ON_CPU", ("jax", "torch", "tensorflow"))


B, N, M, D = 3, 7, 5, 4
INPUT_LENGTHS = [7, 3, 0]  # the last example has no inputs: its queries see nothing
QUERY_LENGTHS = [5, 2, 4]


def masks(kind):
    in_mask = np.arange(N)[None, :] < np.array(INPUT_LENGTHS)[:, None]
    q_mask = np.arange(M)[None, :] < np.array(QUERY_LENGTHS)[:, None]
    return {
        "none": None,
        "inputs": [in_mask, None],
        "query": [None, q_mask],
        "both": [in_mask, q_mask],
    }[kind]


def both_paths(layer, mask_kind, training=False):
    """(fused, explicit): functions of (inputs, query, *trainable weights) -> outputs."""
    mask = masks(mask_kind)

    def run(weights_too):
        def f(e, q, *trainable):
            out, _ = layer.stateless_call(
                list(trainable),
                [v.value for v in layer.non_trainable_variables],
                e,
                q,
                mask=mask,
                return_attention_scores=weights_too,
                training=training,
            )
            return out[0] if weights_too else out

        return f

    return run(False), run(True)


OPTIONS = list(
    itertools.product(
        ["dot", "bilinear"],
        [None, "causal", ("causal", 2)],
        [None, "length_sqrt", "dim_sqrt"],
        ["none", "inputs", "query", "both"],
    )
)


@pytest.mark.parametrize(("scoring", "mask", "rescaling", "mask_kind"), OPTIONS)
def test_fused_path_equals_explicit_path_in_outputs_and_gradients(
    scoring, mask, rescaling, mask_kind
):
    layer = SequenceAttention(scoring, mask=mask, score_rescaling=rescaling)
    layer.build((None, None, D), (None, None, D))
    rng = np.random.default_rng(7)
    arrays = [
        rng.standard_normal((B, N, D)).astype("float32"),
        rng.standard_normal((B, M, D)).astype("float32"),
    ] + [keras.ops.convert_to_numpy(v.value) for v in layer.trainable_variables]
    fused_fn, explicit_fn = both_paths(layer, mask_kind)
    got, got_grads = value_and_grads(fused_fn, arrays)
    want, want_grads = value_and_grads(explicit_fn, arrays)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    names = ["d inputs", "d query"] + [v.name for v in layer.trainable_variables]
    for name, g, w in zip(names, got_grads, want_grads, strict=True):
        assert np.isfinite(g).all(), name
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)


def test_fused_path_is_taken_only_where_the_kernel_computes_the_same(monkeypatch):
    assert fused.can_fuse("dot", return_attention_scores=False, dropout_active=False)
    assert fused.can_fuse("bilinear", return_attention_scores=False, dropout_active=False)
    assert not fused.can_fuse("bilinear", return_attention_scores=True, dropout_active=False)
    assert not fused.can_fuse("dot", return_attention_scores=False, dropout_active=True)
    assert not fused.can_fuse("additive", return_attention_scores=False, dropout_active=False)
    assert not fused.can_fuse(None, return_attention_scores=False, dropout_active=False)
    assert not fused.can_fuse("dot", False, False, dtype="float64")
    monkeypatch.setattr(fused, "FUSED_BACKENDS", ("no such backend",))
    assert not fused.can_fuse("dot", return_attention_scores=False, dropout_active=False)


def test_jax_on_cpu_keeps_the_explicit_path_and_torch_fuses_on_cpu_too(monkeypatch):
    monkeypatch.setattr(fused, "FUSED_BACKENDS", ("jax", "torch"))
    monkeypatch.setattr(fused, "FUSED_ON_CPU", ("torch",))
    fuses = fused.can_fuse("dot", return_attention_scores=False, dropout_active=False)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        assert fuses == (jax.default_backend() != "cpu")
    else:
        assert fuses == (backend == "torch")


def test_dropout_in_training_falls_back_to_the_explicit_path_and_inference_fuses(monkeypatch):
    calls = []
    original = keras.ops.dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(keras.ops, "dot_product_attention", counting)
    layer = SequenceAttention("dot", dropout=0.5, seed=1)
    e = np.random.default_rng(0).standard_normal((B, N, D)).astype("float32")
    q = e[:, :M]
    layer(e, q, training=True)
    assert calls == []
    inference = layer(e, q, training=False)
    assert calls == [1]
    explicit, _ = layer(e, q, training=False, return_attention_scores=True)
    assert calls == [1]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(inference),
        keras.ops.convert_to_numpy(explicit),
        rtol=1e-5,
        atol=1e-6,
    )


def test_a_float64_layer_keeps_float64_outputs_without_weights_asked_for():
    # Keras's fused kernel on JAX answers float64 operands in float32: float64 layers keep
    # the explicit path, and their precision (finite-difference gradients depend on it).
    with float64_enabled():
        e = np.random.default_rng(0).standard_normal((B, N, D))
        layer = SequenceAttention("bilinear", mask="causal", dtype="float64")
        out = layer(e, e[:, :M])
        explicit, _ = layer(e, e[:, :M], return_attention_scores=True)
        # (Keras on PyTorch computes float64 products in float32 on either path.)
        assert out.dtype == explicit.dtype
        assert keras.backend.backend() == "torch" or (
            keras.backend.standardize_dtype(out.dtype) == "float64"
        )
