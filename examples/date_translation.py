"""Translate dates written the way people write them into ISO dates, with attention.

The classic demonstration of attention (Bahdanau et al., 2015, on a toy task):
"Wednesday, November 25, 2026", "25.11.26" or "3rd of March 1999" in, "2026-11-25" out,
character by character. Everything is generated here; nothing is downloaded.

The model:

* the source characters arrive as a `tf.RaggedTensor` of ids (lengths vary per
  example); `RaggedToPadded` turns them into padded ids at the model's boundary,
  because Keras's `GRU` and `Dense` reject ragged tensors, and `Embedding(mask_zero=True)`
  carries the lengths on as a Keras mask;
* an encoder: a bidirectional GRU over the source characters;
* a decoder GRU over the ISO characters written so far (teacher forcing in training,
  greedy decoding at inference); its states are the queries of a `SequenceAttention`
  layer over the encoder states; context and state together predict the next character.

Run it:

    python examples/date_translation.py                  # train, evaluate, save, log
    python examples/date_translation.py --translate "3rd of March 1999"

Training logs the attention of a few fixed probe dates with `AttentionLogger`; watch
them in TensorBoard's Attention tab (`make demo` does all of this for you).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quiet_start import start_quietly  # noqa: E402

start_quietly()  # before TensorFlow is imported: no C++ start-up lines on the terminal

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_seqattn import AttentionLogger, SequenceAttention  # noqa: E402
from keras_seqattn.plotting import attention_png  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "output", "date_translation.keras")
DEFAULT_LOGDIR = "runs"  # TensorBoard's root; each training run gets a folder of its own
# The default run: >= 95% exact match on held-out dates in a few minutes on 2 cores.
DEFAULT_EPOCHS = 2
DEFAULT_SAMPLES = 40_000
DEFAULT_BATCH_SIZE = 128

# ---------------------------------------------------------------------------------------
# Data: dates in many formats, each character tagged with the date field it spells.
# ---------------------------------------------------------------------------------------

FIRST_DAY = datetime.date(1900, 1, 1).toordinal()
LAST_DAY = datetime.date(2099, 12, 31).toordinal()
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Each format is a template of fields in braces and literal text. Two-digit years
# ({Y2}) are read with a pivot: 50-99 -> 19xx, 00-49 -> 20xx, so those formats are only
# drawn for 1950-2049. Slashes are month first (US), dots day first (European), dashes
# and slashes after a four-digit year ISO-like: no string is ambiguous.
FORMATS = (
    "{D} {Mon} {Y4}",
    "{D} {Month} {Y4}",
    "{D} {Month}, {Y4}",
    "{Wkd}, {Month} {D}, {Y4}",
    "{Wkd}, {D} {Month} {Y4}",
    "{Wk} {D} {Mon} {Y4}",
    "{Month} {D}, {Y4}",
    "{Mon} {D}, {Y4}",
    "{Mon}. {D}, {Y4}",
    "{Month} {Dth}, {Y4}",
    "{Dth} of {Month} {Y4}",
    "the {Dth} of {Month}, {Y4}",
    "{Wkd} the {Dth} of {Month} {Y4}",
    "{D}-{Mon}-{Y4}",
    "{M}/{D}/{Y2}",
    "{MM}/{DD}/{Y4}",
    "{DD}.{MM}.{Y4}",
    "{D}.{M}.{Y2}",
    "{Y4}-{MM}-{DD}",
    "{Y4}/{MM}/{DD}",
    "{Y4}{MM}{DD}",
)
_FIELD_RE = re.compile(r"\{(\w+)\}")

# The ISO output: which date field each of its 10 characters comes from.
ISO_FIELDS = ("year",) * 4 + (None,) + ("month",) * 2 + (None,) + ("day",) * 2
OUTPUT_CHARS = "0123456789-"
START = "^"  # decoder input at the first step
TARGET_LEN = 10


def _ordinal_suffix(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _cased(word: str, case: str) -> str:
    return word.upper() if case == "upper" else word.lower() if case == "lower" else word


@dataclass(frozen=True)
class DateText:
    """One written date: its text, its ISO form and the field of every character."""

    text: str
    iso: str
    fields: tuple[str | None, ...]  # per character of `text`: "year", "month", "day", None


def render(date: datetime.date, template: str, case: str = "title") -> DateText:
    """Writes `date` with `template` (one of FORMATS); `case` of month/weekday names."""
    year, month, day = date.year, date.month, date.day
    values = {
        "Y4": (f"{year:04d}", "year"),
        "Y2": (f"{year % 100:02d}", "year"),
        "M": (str(month), "month"),
        "MM": (f"{month:02d}", "month"),
        "Mon": (_cased(MONTHS[month - 1][:3], case), "month"),
        "Month": (_cased(MONTHS[month - 1], case), "month"),
        "D": (str(day), "day"),
        "DD": (f"{day:02d}", "day"),
        "Dth": (f"{day}{_ordinal_suffix(day)}", "day"),
        "Wkd": (_cased(WEEKDAYS[date.weekday()], case), None),
        "Wk": (_cased(WEEKDAYS[date.weekday()][:3], case), None),
    }
    text, fields, position = [], [], 0
    for match in _FIELD_RE.finditer(template):
        literal = template[position : match.start()]
        text.append(literal)
        fields.extend([None] * len(literal))
        piece, field = values[match.group(1)]
        text.append(piece)
        fields.extend([field] * len(piece))
        position = match.end()
    text.append(template[position:])
    fields.extend([None] * (len(template) - position))
    return DateText("".join(text), date.isoformat(), tuple(fields))


def random_dates(
    count: int, rng: np.random.Generator, exclude: frozenset = frozenset()
) -> list[DateText]:
    """`count` random dates (1900-2099), each in a random format and case."""
    out = []
    while len(out) < count:
        date = datetime.date.fromordinal(int(rng.integers(FIRST_DAY, LAST_DAY + 1)))
        if date in exclude:
            continue
        template = FORMATS[int(rng.integers(len(FORMATS)))]
        if "{Y2}" in template and not 1950 <= date.year <= 2049:
            continue
        case = ("title", "title", "upper", "lower")[int(rng.integers(4))]
        out.append(render(date, template, case))
    return out


def split_dates(train: int, test: int, seed: int) -> tuple[list[DateText], list[DateText]]:
    """Training dates and held-out dates: no calendar day of the test set is trained on."""
    rng = np.random.default_rng(seed)
    test_set = random_dates(test, rng)
    held_out = frozenset(datetime.date.fromisoformat(d.iso) for d in test_set)
    return random_dates(train, rng, exclude=held_out), test_set


# Source characters: everything the formats can produce. Id 0 is padding.
SOURCE_CHARS = sorted(
    set("0123456789 ,./-")
    | set("".join(MONTHS + WEEKDAYS).lower())
    | set("".join(MONTHS + WEEKDAYS).upper())
    | set("theofstndr")
)
SOURCE_IDS = {c: i + 1 for i, c in enumerate(SOURCE_CHARS)}
OUTPUT_IDS = {c: i for i, c in enumerate(OUTPUT_CHARS)}
# Decoder input ids: 0 is the start symbol, then the output characters shifted by one.
DECODER_VOCAB = len(OUTPUT_CHARS) + 1


def encode_source(texts: Sequence[str]) -> tf.RaggedTensor:
    """Strings -> ragged (batch, None) int32 ids: the model's input format."""
    unknown = sorted({c for t in texts for c in t if c not in SOURCE_IDS})
    if unknown:
        raise ValueError(
            f"cannot translate characters {''.join(unknown)!r}: the model knows only "
            f"{''.join(SOURCE_CHARS)!r}"
        )
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    ids = np.fromiter(
        (SOURCE_IDS[c] for t in texts for c in t), dtype=np.int32, count=int(lengths.sum())
    )
    # From flat values and row lengths: tf.ragged.constant on 40,000 lists takes seconds.
    return tf.RaggedTensor.from_row_lengths(ids, lengths)


def encode_target(isos: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """ISO strings -> (decoder input ids, target ids), both (batch, 10) int32."""
    target = np.array([[OUTPUT_IDS[c] for c in iso] for iso in isos], dtype=np.int32)
    decoder_input = np.zeros_like(target)
    decoder_input[:, 1:] = target[:, :-1] + 1
    return decoder_input, target


def source_labels(text: str) -> list[str]:
    """Axis labels of a source string: its characters, spaces shown as '␣'."""
    return [c if c != " " else "\u2423" for c in text]


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="date_translation")
class RaggedToPadded(keras.layers.Layer):
    """Ragged (batch, None) ids -> dense ids padded with 0, for layers that reject ragged."""

    def call(self, ids):
        if isinstance(ids, tf.RaggedTensor):
            return ids.to_tensor(default_value=0)
        return ids

    def compute_output_spec(self, ids):
        return keras.KerasTensor((ids.shape[0], ids.shape[1]), dtype=ids.dtype)


def build_model(units: int = 64, embed: int = 32) -> keras.Model:
    """Encoder (bidirectional GRU), decoder GRU, `SequenceAttention` with decoder queries."""
    source = keras.Input(shape=(None,), dtype="int32", ragged=True, name="source")
    decoder_input = keras.Input(shape=(TARGET_LEN,), dtype="int32", name="decoder_input")

    ids = RaggedToPadded(name="to_padded")(source)
    chars = keras.layers.Embedding(
        len(SOURCE_CHARS) + 1, embed, mask_zero=True, name="source_embedding"
    )(ids)
    encoded = keras.layers.Bidirectional(
        keras.layers.GRU(units, return_sequences=True), name="encoder"
    )(chars)

    written = keras.layers.Embedding(DECODER_VOCAB, embed, name="target_embedding")(decoder_input)
    states = keras.layers.GRU(2 * units, return_sequences=True, name="decoder")(written)
    # The weights are asked for here so that `attention_model` can return them too.
    context, _ = SequenceAttention(name="attention")(encoded, states, return_attention_scores=True)

    features = keras.layers.Concatenate(name="state_and_context")([states, context])
    hidden = keras.layers.Dense(2 * units, activation="tanh", name="hidden")(features)
    logits = keras.layers.Dense(len(OUTPUT_CHARS), name="logits")(hidden)
    return keras.Model([source, decoder_input], logits, name="date_translation")


def compile_model(model: keras.Model, learning_rate: float = 3e-3) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=False,  # XLA does not take ragged tensors
    )


def attention_model(model: keras.Model) -> keras.Model:
    """The same graph, also returning the attention weights (batch, 10, source length)."""
    _, weights = model.get_layer("attention").output
    return keras.Model(model.inputs, [model.output, weights])


def dataset(
    dates: Sequence[DateText], batch_size: int, shuffle: bool, seed: int = 0
) -> tf.data.Dataset:
    """Batches of ({"source": ragged ids, "decoder_input": ids}, target ids)."""
    source = encode_source([d.text for d in dates])
    decoder_input, target = encode_target([d.iso for d in dates])

    def gather(index):
        inputs = {
            "source": tf.gather(source, index),
            "decoder_input": tf.gather(decoder_input, index),
        }
        return inputs, tf.gather(target, index)

    # Shuffle example numbers and gather whole batches: shuffling the ragged rows
    # themselves costs seconds per epoch to refill the buffer.
    order = tf.data.Dataset.range(len(dates))
    if shuffle:
        order = order.shuffle(len(dates), seed=seed, reshuffle_each_iteration=True)
    return order.batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------


def greedy_translate(
    viewer: keras.Model, texts: Sequence[str], batch_size: int = 1000
) -> tuple[list[str], list[np.ndarray]]:
    """Greedy decoding, one character per pass; returns ISO strings and their weights.

    The weights of example b are (10, len(texts[b])): one row per written character.
    """
    isos, weights = [], []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        source = encode_source(chunk)
        decoder_input = np.zeros((len(chunk), TARGET_LEN), dtype=np.int32)
        predict = tf.function(viewer, reduce_retracing=True)
        for j in range(TARGET_LEN):
            logits, attention = predict({"source": source, "decoder_input": decoder_input})
            chars = np.argmax(logits[:, j].numpy(), axis=-1)
            if j + 1 < TARGET_LEN:
                decoder_input[:, j + 1] = chars + 1
            else:
                last = chars
        written = np.concatenate([decoder_input[:, 1:] - 1, last[:, None]], axis=1)
        attention = attention.numpy()
        for b, text in enumerate(chunk):
            isos.append("".join(OUTPUT_CHARS[i] for i in written[b]))
            weights.append(attention[b, :, : len(text)])
    return isos, weights


def alignment_share(dates: Sequence[DateText], weights: Sequence[np.ndarray]) -> float:
    """Share of output digits whose largest weight is on a source character of their field.

    The year digits should look at the year, the month digits at the month (digits or
    name), the day digits at the day; the ISO dashes come from no field and are skipped.
    """
    hits = total = 0
    for date, w in zip(dates, weights, strict=True):
        for j, field in enumerate(ISO_FIELDS):
            if field is None:
                continue
            total += 1
            hits += date.fields[int(np.argmax(w[j]))] == field
    return hits / max(total, 1)


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------

# Fixed probe dates for the AttentionLogger: different formats, the same every time.
PROBES = (
    (datetime.date(2026, 11, 25), "{Wkd}, {Month} {D}, {Y4}", "title"),
    (datetime.date(1999, 3, 3), "{Dth} of {Month} {Y4}", "title"),
    (datetime.date(2026, 11, 25), "{M}/{D}/{Y2}", "title"),
    (datetime.date(1969, 7, 20), "{DD}.{MM}.{Y4}", "title"),
    (datetime.date(1976, 7, 4), "{D} {Mon} {Y4}", "upper"),
)


def probe_dates() -> list[DateText]:
    return [render(date, template, case) for date, template, case in PROBES]


def run_name() -> str:
    """A new run folder name per training, so that runs never mix their steps."""
    return f"date_translation-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def attention_logger(log_dir: str, every_n_steps: int | None = None) -> AttentionLogger:
    """An `AttentionLogger` for the probe dates, labelled with their characters."""
    probes = probe_dates()
    decoder_input, _ = encode_target([d.iso for d in probes])
    return AttentionLogger(
        log_dir,
        probe={"source": encode_source([d.text for d in probes]), "decoder_input": decoder_input},
        input_labels=[source_labels(d.text) for d in probes],
        # Query j is the decoder state that writes ISO character j.
        query_labels=[list(d.iso) for d in probes],
        every_n_steps=every_n_steps,
    )


@dataclass
class Result:
    accuracy: float
    alignment: float
    train_seconds: float
    model_path: str


def train(
    epochs: int = DEFAULT_EPOCHS,
    samples: int = DEFAULT_SAMPLES,
    test_samples: int = 1000,
    batch_size: int = DEFAULT_BATCH_SIZE,
    units: int = 64,
    seed: int = 0,
    log_dir: str | None = None,
    log_every_steps: int | None = None,
    model_path: str | None = DEFAULT_MODEL,
    verbose: int | str = "auto",
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> Result:
    """Trains, evaluates on held-out dates, saves; prints the figures.

    `log_dir`: the run folder for TensorBoard (the logger writes `<log_dir>/attention`);
    None logs nothing.
    """
    keras.utils.set_random_seed(seed)
    train_dates, test_dates = split_dates(samples, test_samples, seed)
    model = build_model(units=units)
    compile_model(model)
    callbacks = list(extra_callbacks)
    if log_dir:
        callbacks.append(attention_logger(log_dir, every_n_steps=log_every_steps))

    batches = dataset(train_dates, batch_size, shuffle=True, seed=seed)
    started = time.perf_counter()
    model.fit(batches, epochs=epochs, callbacks=callbacks, verbose=verbose)
    train_seconds = time.perf_counter() - started

    isos, weights = greedy_translate(attention_model(model), [d.text for d in test_dates])
    accuracy = float(np.mean([p == d.iso for p, d in zip(isos, test_dates, strict=True)]))
    alignment = alignment_share(test_dates, weights)
    print(f"training time: {train_seconds:.1f} s ({epochs} epochs, {samples} dates)")
    print(f"exact match on {len(test_dates)} held-out dates: {accuracy:.2%}")
    print(f"alignment: {alignment:.2%} of output digits look hardest at their source field")
    for date, iso in list(zip(test_dates, isos, strict=True))[:5]:
        print(f"  {date.text!r:34} -> {iso}  ({'ok' if iso == date.iso else 'want ' + date.iso})")
    if model_path:
        os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
        model.save(model_path)
        print(f"model saved to {model_path}")
    if log_dir:
        print(f"attention logged under {os.path.join(log_dir, 'attention')}")
    return Result(accuracy, alignment, train_seconds, model_path or "")


def translate(
    text: str, model_path: str = DEFAULT_MODEL, png_path: str | None = None
) -> tuple[str, str]:
    """Loads the saved model; returns the ISO date and the path of its heatmap PNG."""
    if not os.path.exists(model_path):
        raise FileNotFoundError(
            f"no trained model at {model_path}; train one first: python {os.path.relpath(__file__)}"
        )
    model = keras.saving.load_model(model_path)
    (iso,), (weights,) = greedy_translate(attention_model(model), [text])
    if png_path is None:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "date"
        png_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), f"{slug}.png")
    with open(png_path, "wb") as f:
        f.write(attention_png(weights, source_labels(text), list(iso), title=f"{text} -> {iso}"))
    return iso, png_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--translate",
        metavar="TEXT",
        help="translate one date with the saved model, and draw its attention",
    )
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="training dates")
    parser.add_argument("--test-samples", type=int, default=1000, help="held-out dates")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--units", type=int, default=64, help="encoder GRU units per direction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--logdir",
        default=DEFAULT_LOGDIR,
        help="TensorBoard log directory: the run goes to a new "
        "date_translation-<date>-<time> folder in it ('' to log nothing)",
    )
    parser.add_argument(
        "--log-every-steps",
        type=int,
        default=None,
        help="log the probes every N steps (default: every epoch)",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="where to save / load the model")
    parser.add_argument("--png", default=None, help="heatmap path for --translate")
    parser.add_argument(
        "--verbose",
        type=int,
        default=None,
        help="Keras fit verbosity (default: progress bar on a terminal)",
    )
    args = parser.parse_args(argv)

    if args.translate is not None:
        try:
            iso, png = translate(args.translate, args.model, args.png)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(iso)
        print(f"attention heatmap: {png}")
        return 0
    for name in ("epochs", "samples", "test_samples", "batch_size", "units"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    train(
        epochs=args.epochs,
        samples=args.samples,
        test_samples=args.test_samples,
        batch_size=args.batch_size,
        units=args.units,
        seed=args.seed,
        log_dir=os.path.join(args.logdir, run_name()) if args.logdir else None,
        log_every_steps=args.log_every_steps,
        model_path=args.model or None,
        verbose="auto" if args.verbose is None else args.verbose,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
