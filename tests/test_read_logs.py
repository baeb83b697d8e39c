"""`read_attention_logs`: a log directory back as labelled matrices, records and DataFrame."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tb_plugin import codec
from tb_plugin.read_logs import COLUMNS, AttentionRecord, read_attention_logs
from tb_plugin.summary import attention, event_file_writer
from tests import v1_fixture
from tests.attention_logs import stored_values


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _write_two_runs(logdir: str) -> dict:
    """Two runs, a single-head and a 2-head tag, steps written out of order; the truth."""
    rng = np.random.default_rng(0)
    truth = {}
    for run in ("attention", "eval/attention"):
        writer = event_file_writer(os.path.join(logdir, run))
        for step in (4, 0, 8):
            for tag, shape in (("enc/attn/0", (3, 4)), ("dec/mha/1", (2, 2, 3))):
                weights = _softmax(rng.normal(size=shape) * 3)
                inputs = [f"{run}-{tag}-in{i}-s{step}" for i in range(shape[-1])]
                queries = [f"q{i}" for i in range(shape[-2])]
                attention(tag, weights, step=step, input_labels=inputs, query_labels=queries,
                          writer=writer)  # fmt: skip
                truth[run, tag, step] = (weights, inputs, queries)
        writer.close()
    return truth


@pytest.mark.all_backends
def test_every_matrix_comes_back_with_its_run_tag_step_labels_and_values(tmp_path):
    truth = _write_two_runs(str(tmp_path))
    records = read_attention_logs(tmp_path)
    assert [(r.run, r.tag, r.step) for r in records] == sorted(truth)
    for record in records:
        weights, inputs, queries = truth[record.run, record.tag, record.step]
        assert isinstance(record, AttentionRecord)
        assert record.input_labels == tuple(inputs) and record.query_labels == tuple(queries)
        assert record.heads == (weights.shape[0] if weights.ndim == 3 else 1)
        assert record.values.dtype == np.float32 and record.values.shape == weights.shape
        np.testing.assert_array_equal(record.values, stored_values(weights).astype(np.float32))
        assert record.wall_time > 1.7e9


@pytest.mark.all_backends
def test_runs_and_tags_select_and_a_run_directory_reads_alone(tmp_path):
    _write_two_runs(str(tmp_path))
    only = read_attention_logs(tmp_path, runs=["eval/attention"], tags=["dec/mha/1"])
    assert {(r.run, r.tag) for r in only} == {("eval/attention", "dec/mha/1")}
    assert [r.step for r in only] == [0, 4, 8]
    alone = read_attention_logs(tmp_path / "attention")
    assert {r.run for r in alone} == {"."} and len(alone) == 6


@pytest.mark.all_backends
def test_dataframe_has_one_row_per_matrix(tmp_path):
    pd = pytest.importorskip("pandas")
    truth = _write_two_runs(str(tmp_path))
    frame = read_attention_logs(tmp_path, dataframe=True)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(COLUMNS) and len(frame) == len(truth)
    row = frame[(frame.run == "attention") & (frame.tag == "dec/mha/1") & (frame.step == 4)]
    (values,) = row["values"]
    weights, inputs, _ = truth["attention", "dec/mha/1", 4]
    np.testing.assert_array_equal(values, stored_values(weights).astype(np.float32))
    assert row["input_labels"].item() == tuple(inputs) and row["heads"].item() == 2


@pytest.mark.all_backends
def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_attention_logs(tmp_path / "nowhere")
    assert read_attention_logs(tmp_path) == []


@pytest.mark.all_backends
def test_a_record_cut_short_by_a_writer_still_writing_ends_the_file(tmp_path):
    truth = _write_two_runs(str(tmp_path))
    (path,) = (tmp_path / "attention").glob("events.out.tfevents.*")
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # the last record loses its tail
    records = read_attention_logs(tmp_path, runs=["attention"])
    assert len(records) == sum(run == "attention" for run, _, _ in truth) - 1


@pytest.mark.all_backends
def test_version_1_logs_still_read():
    records = read_attention_logs(v1_fixture.LOGDIR)
    expected = v1_fixture.expected()
    assert {(r.tag, r.step) for r in records} == {
        (tag, step) for tag, steps in expected.items() for step, *_ in steps
    }
    for record in records:
        (weights, inputs, queries) = next(
            (w, i, q) for step, w, i, q in expected[record.tag] if step == record.step
        )
        assert record.run == v1_fixture.RUN
        assert record.input_labels == tuple(inputs) and record.query_labels == tuple(queries)
        np.testing.assert_array_equal(record.values, weights.astype(np.float16).astype(np.float32))


def test_tensorflow_written_logs_with_metadata_on_the_first_value_only(tmp_path):
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    rng = np.random.default_rng(1)
    written = {}
    with writer.as_default():
        for step in range(3):
            weights = _softmax(rng.normal(size=(2, 5)))
            attention("layer/0", weights, step=step, input_labels=list("abcde"))
            tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
            written[step] = weights
    writer.close()
    records = read_attention_logs(tmp_path)
    assert [(r.run, r.tag, r.step) for r in records] == [("train", "layer/0", s) for s in range(3)]
    for record in records:
        np.testing.assert_array_equal(
            record.values, stored_values(written[record.step]).astype(np.float32)
        )


def test_corrupt_or_newer_summaries_raise_naming_what_to_do(tmp_path):
    import json

    import tensorflow as tf

    from tb_plugin import metadata

    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    newer = metadata.create_summary_metadata()
    with writer.as_default():
        header = json.dumps({"version": 99, "shape": [1, 1]}).encode()
        tf.summary.write("future/0", tf.constant([header, b""]), step=0, metadata=newer)
    writer.close()
    with pytest.raises(codec.DecodeError, match="upgrade|newer|version"):
        read_attention_logs(tmp_path)


@pytest.mark.all_backends
def test_dataframe_without_pandas_says_what_to_install(tmp_path, monkeypatch):
    _write_two_runs(str(tmp_path))
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install pandas"):
        read_attention_logs(tmp_path, dataframe=True)
    assert len(read_attention_logs(tmp_path)) == 12


@pytest.mark.all_backends
def test_a_record_whose_payload_checksum_fails_is_reported_naming_its_file(tmp_path):
    import struct

    _write_two_runs(str(tmp_path))
    run = tmp_path / "attention"
    (name,) = os.listdir(run)
    data = bytearray((run / name).read_bytes())
    # The second record (the first summary): skip the file version's record, then flip one
    # bit in the middle of the payload, between its 12 bytes of length and its checksum.
    (first,) = struct.unpack("<Q", data[:8])
    offset = 16 + first
    (length,) = struct.unpack("<Q", data[offset : offset + 8])
    data[offset + 12 + length // 2] ^= 0x01
    (run / name).write_bytes(bytes(data))
    with pytest.raises(codec.DecodeError, match="payload fails its checksum") as raised:
        read_attention_logs(tmp_path)
    assert name in str(raised.value) and f"at byte {offset} " in str(raised.value)
    assert "move this file out" in str(raised.value)
