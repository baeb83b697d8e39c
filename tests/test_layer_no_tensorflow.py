"""On JAX and PyTorch the package never imports TensorFlow (issue 8).

Importing TensorFlow next to JAX or PyTorch lets it reserve GPU memory (NOTES §5), so
every step a user takes on those backends runs here in a fresh interpreter that records
each attempt to import TensorFlow, with its stack, and checks after each step that
`"tensorflow" not in sys.modules`.

One exception is Keras's, not ours: Keras 3.15's `.keras` serializer asks
`tf.available` for every object it saves (keras/src/saving/serialization_lib.py), which
imports TensorFlow whenever it is installed, for any model. The save/load step is
therefore checked for "no import from keras_seqattn or tb_plugin" and runs last; on a
machine without TensorFlow Keras skips that check and saving works the same.

`STEPS` is the list to extend as more of the package becomes backend-neutral (the
logger, `attention_summary`): put new steps before the save/load one.
"""

import os
import subprocess
import sys
import textwrap

import keras
import pytest

pytestmark = pytest.mark.all_backends

BACKEND = keras.backend.backend()

SETUP = """
import sys
import traceback

class RecordTensorFlowImports:
    # A meta path finder that only watches: it records who imports TensorFlow.
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow":
            self.attempts.append([f.filename for f in traceback.extract_stack()])
        return None

sys.meta_path.insert(0, RecordTensorFlowImports())

def check(step, keras_may_import_tensorflow=False):
    for stack in RecordTensorFlowImports.attempts:
        ours = [f for f in stack if "keras_seqattn" in f or "tb_plugin" in f]
        assert not ours, f"{step}: TensorFlow imported from {ours[-1]}"
    if not keras_may_import_tensorflow:
        assert "tensorflow" not in sys.modules, f"{step}: TensorFlow was imported"

import numpy as np
import keras
"""

# (what the step does, code, whether Keras itself may import TensorFlow there); the
# steps run in this order in one process.
STEPS = [
    (
        "import keras_seqattn",
        "import keras_seqattn\nfrom keras_seqattn import SequenceAttention",
        False,
    ),
    (
        "build a masked model",
        """
        tokens = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
        x = SequenceAttention(scoring="additive", mask="causal")(x, x)
        out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(x))
        model = keras.Model(tokens, out)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        """,
        False,
    ),
    (
        "train, evaluate and predict",
        """
        rng = np.random.default_rng(0)
        ids = rng.integers(1, 20, (16, 7))
        ids[:, 5:] = 0
        labels = rng.integers(0, 3, 16)
        model.fit(ids, labels, epochs=1, batch_size=8, verbose=0)
        model.evaluate(ids, labels, verbose=0)
        before = model.predict(ids, verbose=0)
        """,
        False,
    ),
    (
        "plot_attention",
        """
        import matplotlib
        matplotlib.use("Agg")
        from keras_seqattn import plot_attention
        plot_attention(np.full((3, 4), 0.25), input_labels=list("abcd"))
        """,
        False,
    ),
    (
        "attention_summary through an EventFileWriter, read back",
        """
        import os
        from keras_seqattn import attention_summary, read_attention_logs
        from tb_plugin.summary import event_file_writer
        LOGS = os.path.join(os.path.dirname(PATH), "logs")
        writer = event_file_writer(os.path.join(LOGS, "direct"))
        assert attention_summary("a/0", np.full((2, 3), 1 / 3), step=1, writer=writer)
        writer.close()
        assert [r.tag for r in read_attention_logs(LOGS)] == ["a/0"]
        """,
        False,
    ),
    (
        "the logger's writer: attention, heatmap images, scalars",
        """
        from types import SimpleNamespace
        from keras_seqattn.summary_writing import SummaryWriting
        writing = SummaryWriting(os.path.join(LOGS, "attention"))
        matrix = SimpleNamespace(
            tag="layer/0", weights=np.full((2, 2, 3), 1 / 3), input_labels=list("abc"),
            query_labels=list("xy"), description="",
        )
        writing.write_point(0, [matrix], {"layer": (1.0, 0.5)})
        writing.finish()
        assert [r.run for r in read_attention_logs(LOGS)] == ["attention", "direct"]
        """,
        False,
    ),
    (
        "train with AttentionLogger (attention, images, scalars), read back",
        """
        from keras_seqattn import AttentionLogger
        logger = AttentionLogger(os.path.join(LOGS, "fit"), ids[:2])
        model.fit(ids, labels, epochs=1, batch_size=8, verbose=0, callbacks=[logger])
        runs = {r.run for r in read_attention_logs(LOGS)}
        assert "fit/attention" in runs, runs
        before = model.predict(ids, verbose=0)  # trained further: the new reference
        """,
        False,
    ),
    (
        "save and load a .keras file",
        """
        model.save(PATH)
        after = keras.models.load_model(PATH).predict(ids, verbose=0)
        np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-6)
        """,
        True,
    ),
]


def no_tensorflow_script(path: str) -> str:
    parts = [SETUP, f"PATH = {path!r}"]
    for what, code, keras_may in STEPS:
        parts.append(textwrap.dedent(code))
        parts.append(f"check({what!r}, keras_may_import_tensorflow={keras_may})")
    parts.append("print('no tensorflow')")
    return "\n".join(parts)


@pytest.mark.skipif(BACKEND == "tensorflow", reason="TensorFlow is this run's backend")
def test_the_package_never_imports_tensorflow_on_jax_and_pytorch(tmp_path):
    script = no_tensorflow_script(str(tmp_path / "model.keras"))
    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no tensorflow" in done.stdout
