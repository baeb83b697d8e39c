"""Run by test_distribute.py in a fresh process: logical devices must be set up
before TensorFlow initialises, which a pytest process has long done."""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_seqattn import SequenceAttention  # noqa: E402


def padded_masked_model(scoring):
    ids_in = keras.Input((None,), dtype="int32")
    ids_q = keras.Input((None,), dtype="int32")
    embed = keras.layers.Embedding(30, 8, mask_zero=True)
    attended = SequenceAttention(scoring, mask="causal")(embed(ids_in), embed(ids_q))
    pooled = keras.layers.GlobalAveragePooling1D()(attended)
    return keras.Model([ids_in, ids_q], keras.layers.Dense(1)(pooled))


def main():
    report = {}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report["replicas"] = strategy.num_replicas_in_sync
    rng = np.random.default_rng(0)
    count = 32
    ids_in = rng.integers(1, 30, size=(count, 6))
    ids_q = rng.integers(1, 30, size=(count, 4))
    for b in range(count):  # right padding of varying length
        ids_in[b, rng.integers(1, 7) :] = 0
        ids_q[b, rng.integers(1, 5) :] = 0
    target = rng.normal(size=(count, 1)).astype("float32")

    with strategy.scope():
        model = padded_masked_model("bilinear")
        model.compile(keras.optimizers.Adam(0.01), "mse")
    history = model.fit([ids_in, ids_q], target, batch_size=8, epochs=3, verbose=0)
    report["losses"] = [float(x) for x in history.history["loss"]]
    # The distributed model computes what the same weights compute on one device.
    single = padded_masked_model("bilinear")
    single.set_weights(model.get_weights())
    report["max_prediction_difference"] = float(
        np.max(
            np.abs(
                model.predict([ids_in, ids_q], verbose=0)
                - single.predict([ids_in, ids_q], verbose=0)
            )
        )
    )

    # Ragged symbolic inputs under the strategy: a clear error at model construction.
    with strategy.scope():
        try:
            SequenceAttention()(keras.Input((None, 4), ragged=True), keras.Input((3, 4)))
            report["ragged_error"] = None
        except ValueError as err:
            report["ragged_error"] = str(err)

    # The documented way around it: ragged data, padded at the dataset boundary.
    lengths = rng.integers(1, 7, size=count)
    ragged_ids = tf.RaggedTensor.from_row_lengths(
        rng.integers(1, 30, size=int(lengths.sum())), lengths
    )
    dataset = tf.data.Dataset.from_tensor_slices(((ragged_ids, ids_q), target)).batch(8)
    dataset = dataset.map(lambda x, y: ((x[0].to_tensor(), x[1]), y))
    with strategy.scope():
        model = padded_masked_model("additive")
        model.compile("adam", "mse")
    history = model.fit(dataset, epochs=2, verbose=0)
    report["ragged_dataset_losses"] = [float(x) for x in history.history["loss"]]
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
