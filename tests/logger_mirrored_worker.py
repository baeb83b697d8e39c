"""Run by test_attention_logger.py in a fresh process: AttentionLogger under
MirroredStrategy with two logical CPU devices (which must be set up before TensorFlow
initialises). Prints a JSON report: for every tag written, the steps it was written at."""

import glob
import json
import os
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_seqattn import AttentionLogger, SequenceAttention  # noqa: E402


def main(log_dir: str) -> None:
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, size=(16, 5)).astype("int32")
    for b in range(16):  # right padding of varying length: padded and masked input
        ids[b, rng.integers(2, 6) :] = 0
    y = rng.normal(size=(16, 1)).astype("float32")
    with strategy.scope():
        inputs = keras.Input((None,), dtype="int32")
        chars = keras.layers.Embedding(20, 8, mask_zero=True)(inputs)
        attended = SequenceAttention(name="attn")(chars, chars)
        outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(attended))
        model = keras.Model(inputs, outputs)
        model.compile(keras.optimizers.Adam(0.01), "mse")
    logger = AttentionLogger(log_dir, ids[:2])
    model.fit(ids, y, batch_size=4, epochs=3, verbose=0, callbacks=[logger])

    files = glob.glob(os.path.join(log_dir, "attention", "events.out.tfevents.*"))
    steps: dict[str, list[int]] = {}
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(int(event.step))
    print(
        json.dumps(
            {"replicas": strategy.num_replicas_in_sync, "event_files": len(files), "steps": steps}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
