"""The one policy for token labels, shared by the summary writer, the logger and the plots.

A label list names the positions of one axis of an attention matrix (its inputs or its
queries). Whoever takes labels from a user (`tb_plugin.summary.attention`,
`keras_seqattn.AttentionLogger`, `keras_seqattn.plot_attention`) checks them here, so that
all three accept and refuse the same things, with the same messages:

* a sequence (list, tuple, 1-D numpy array, anything indexable with a length) of labels;
  a single `str` or `bytes` is refused (it is one label, not a list; for characters,
  pass `list(text)`);
* each label a `str` (numpy's `str_` included) or `bytes`; bytes are decoded as UTF-8 with
  U+FFFD for undecodable bytes, because byte-level tokenizers (GPT-2's BPE, for one) split
  multi-byte characters across tokens, so a single token's bytes need not be valid UTF-8;
* text that UTF-8 can encode (no lone surrogates, which e.g. a half of an emoji cut from
  a UTF-16 string leaves behind), so that it can be stored and served;
* at most `MAX_LABEL_CHARS` characters per label;
* when the axis length is known, exactly that many labels; `None` gives the positions
  "0", "1", ....

Imports nothing but numpy and the standard library: TensorBoard loads it without Keras.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Longest token label, in characters.
MAX_LABEL_CHARS = 1000


def describe(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters, for error messages about user input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def positions(length: int) -> tuple[str, ...]:
    """The default labels of an axis: its positions as text."""
    return tuple(str(i) for i in range(length))


def check_labels(labels: Any, length: int | None, name: str) -> tuple[str, ...]:
    """Returns `labels` as a tuple of strings, checked against the policy above.

    Args:
      labels: the labels of one axis, or None for the positions.
      length: the axis length the labels must match; None when it is not known yet (then
        `labels` must not be None).
      name: how the caller's user calls this argument, for error messages (for example
        "input_labels" or "query_labels[2]").

    Returns:
      A tuple of `length` strings.

    Raises:
      TypeError: when `labels` is not a sequence of strings (or bytes).
      ValueError: for the wrong number of labels, a lone surrogate or an overlong label.
    """
    if labels is None:
        if length is None:
            raise TypeError(f"{name}: expected a sequence of strings, got None")
        return positions(length)
    expected = "a sequence of " + (f"{length} strings" if length is not None else "strings")
    if isinstance(labels, (str, bytes)):
        raise TypeError(
            f"{name}: expected {expected}, one per position, got a single "
            f"{type(labels).__name__} {describe(labels)} (for characters, pass list(text))"
        )
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1:
            raise ValueError(
                f"{name}: expected a 1-D sequence of strings, got an array of shape {labels.shape}"
            )
        labels = labels.tolist()
    if not isinstance(labels, Sequence):
        raise TypeError(f"{name}: expected {expected}, got {type(labels).__name__}")
    if length is not None and len(labels) != length:
        raise ValueError(f"{name}: expected {length} labels, one per position, got {len(labels)}")
    result = []
    for i, label in enumerate(labels):
        if isinstance(label, bytes):
            label = label.decode("utf-8", errors="replace")
        elif not isinstance(label, str):
            raise TypeError(
                f"{name}[{i}]: expected a string, got {type(label).__name__} {describe(label)}"
            )
        if len(label) > MAX_LABEL_CHARS:
            raise ValueError(
                f"{name}[{i}]: expected at most {MAX_LABEL_CHARS} characters, got {len(label)}"
            )
        result.append(str(label))
    _check_encodable(result, name)
    return tuple(result)


def _check_encodable(labels: list[str], name: str) -> None:
    i = find_unencodable(labels)
    if i is None:
        return
    label = labels[i]
    at = next(k for k, char in enumerate(label) if "\ud800" <= char <= "\udfff")
    raise ValueError(
        f"{name}[{i}]: expected text that UTF-8 can encode, got a lone surrogate "
        f"{label[at]!r} at character {at} of {describe(label)}; decode the token's bytes "
        "with errors='replace', or drop the half character"
    )


def find_unencodable(labels: Sequence[str]) -> int | None:
    """The index of the first label that UTF-8 cannot encode, or None (for stored data)."""
    try:
        "".join(labels).encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    for i, label in enumerate(labels):
        try:
            label.encode("utf-8")
        except UnicodeEncodeError:
            return i
    return None
