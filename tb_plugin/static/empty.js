// What the tab shows when the logdir holds no attention data yet: how to log some.

import { el, named } from "./dom.js";

const SNIPPET_SUMMARY = `import tensorflow as tf
from tb_plugin.summary import attention

with tf.summary.create_file_writer("runs/example").as_default():
    # weights: one example's (queries, inputs) matrix, or (heads, queries, inputs)
    attention("decoder_attention/0", weights, step=step,
              input_labels=["le", "chat", "noir", "."],
              query_labels=["the", "black", "cat", "."])`;

const SNIPPET_CALLBACK = `from keras_seqattn import AttentionLogger

model.fit(x, y, epochs=10, callbacks=[
    AttentionLogger("runs/example", probe=x_probe,
                    input_labels=source_tokens, query_labels=target_tokens),
])`;

const SNIPPET_SERVE = `tensorboard --logdir runs --samples_per_plugin attention=0`;

export function emptyState() {
  return named(
    "div",
    "empty-state",
    { class: "empty", hidden: "" },
    el("h2", { text: "No attention data in this logdir yet" }),
    el("p", {
      text:
        "This tab shows attention weights written with the attention summary, as heatmaps " +
        "labelled with their tokens. Log the weights of a few fixed examples during training:",
    }),
    named("pre", "empty-snippet", { text: SNIPPET_SUMMARY }),
    el("p", { text: "or, with a Keras model holding SequenceAttention layers, add the callback:" }),
    el("pre", { text: SNIPPET_CALLBACK }),
    el("p", {
      text:
        "New data appears here on its own while training runs. TensorBoard keeps only a " +
        "sample of the steps by default; to browse every logged step, start it with:",
    }),
    el("pre", { text: SNIPPET_SERVE }),
  );
}
