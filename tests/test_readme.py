"""The README's Python snippets run as written (those marked `# illustration` excepted).

On every backend; on JAX and PyTorch the snippets that use TensorFlow itself (ragged
tensors, `tf.data`) are skipped: they show what only the TensorFlow backend does.
"""

import re
from pathlib import Path

import keras
import matplotlib
import pytest

pytestmark = pytest.mark.all_backends

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_snippets():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_snippet_runs(index, tmp_path, monkeypatch):
    block = BLOCKS[index]
    if block.lstrip().startswith("# illustration"):
        pytest.skip("a fragment of a larger program, not meant to run alone")
    if keras.backend.backend() != "tensorflow" and re.search(r"\btensorflow\b|\btf\.", block):
        pytest.skip("uses TensorFlow itself (ragged tensors): TensorFlow backend only")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
