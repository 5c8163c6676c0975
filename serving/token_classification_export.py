"""The token-classification (NER) export contract: a SavedModel TF Serving loads as-is.

Signatures:

* ``serving_default``: ``text`` (tf.string [None], raw sentences) -> the entities found:
  ``entity_start``, ``entity_end`` (int32 [None, E]: offsets into the input string in
  Unicode code points, end exclusive, so `text[start:end]` in Python is the entity),
  ``entity_label`` (tf.string [None, E]: the entity type, without B-/I-), ``entity_score``
  (float32 [None, E]: the mean over the entity's words of the probability of each word's
  predicted tag) and ``num_entities`` (int32 [None]). E is the batch's largest number of
  entities (possibly 0); a row's entries past its ``num_entities`` are -1, -1, "" and 0.
* ``from_examples``: ``examples`` (serialized tf.Example [None], the sentence's words in a
  bytes feature, one value per word) -> ``token_labels`` (tf.string [None, W]: one IOB2 tag
  per input word) and ``token_scores`` (float32 [None, W]: that tag's probability). W is the
  batch's longest sentence; past a sentence's end the label is "" and the score 0. Words cut
  by `max_seq_length` (no piece reached the model) are labelled "O" with score 0.

Text is split into words as BERT's basic tokenizer splits it
(`BertWordEncoder.split_words_with_offsets`); each word is tagged with the argmax of the
model's output at its first WordPiece; entities are decoded from the word tags with
seqeval's default IOB2 rules: B-X starts an entity; I-X continues the entity just before it
if that one is of type X and starts a new one otherwise; O ends it. An entity runs from the
start of its first word to the end of its last.

Only core TensorFlow and the tensorflow-text kernels TF Serving links end up in the graph
(`serving.export.graph_op_types`); every output is dense.

Example:

>>> export_token_classifier(model, BertWordEncoder(vocab, 128), tag_names(["PER", "LOC"]),
...                         "/tmp/ner/1")  # doctest: +SKIP
"""

from __future__ import annotations

import tensorflow as tf

from pipeline.tasks.iob import OUTSIDE, split_tag
from serving.model_call import ModelCall
from serving.warmup import filler_text, write_shape_warmup
from serving.word_encoder import BertWordEncoder

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "from_examples"
MODEL_INPUTS = ("token_ids", "segment_ids", "padding_mask")


class TokenClassifierServingModule(tf.Module):
    """Wraps a Keras 3 token classifier (model inputs -> logits [batch, seq, num_tags])."""

    def __init__(
        self,
        model,
        encoder: BertWordEncoder,
        tags: list[str],
        tokens_feature: str = "tokens",
        precision: str = "float32",
        jit_compile: bool = False,
    ):
        super().__init__(name="bert_token_serving")
        if OUTSIDE not in tags:
            raise ValueError(f"the tags must contain {OUTSIDE!r} (see tag_names), got {tags}")
        self.model = model
        self.call_model = ModelCall(model, precision, jit_compile, token_outputs=True,
                                    max_seq_length=encoder.max_seq_length)
        # The tf.Variables under Keras 3's variable wrappers, tracked directly: without them
        # a Session-based loader (TF Serving's C++ loader) restores nothing (serving.export).
        self.model_variables = [variable.value for variable in model.variables]
        self.encoder = encoder
        self.tag_list = list(tags)
        self.tags = tf.constant(self.tag_list, dtype=tf.string)
        self.outside_id = self.tag_list.index(OUTSIDE)
        self.tokens_feature = tokens_feature

    def predict_words(self, words: tf.RaggedTensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
        """Ragged [batch, (words)] strings -> per-word tag ids (int32) and their probability.

        Words cut by `max_seq_length` get the "O" tag and probability 0 (no prediction).
        """
        encoded = self.encoder.encode_words(words)
        logits = self.call_model({name: encoded[name] for name in MODEL_INPUTS})
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        first = tf.equal(encoded["first_piece"], 1)
        # First pieces come in word order, and the kept words are each sentence's first ones.
        tag_ids = tf.ragged.boolean_mask(tf.argmax(probabilities, -1, output_type=tf.int32), first)
        scores = tf.ragged.boolean_mask(tf.reduce_max(probabilities, -1), first)
        cut = words.row_lengths() - tf.cast(encoded["num_words_kept"], tf.int64)
        return (
            _append(tag_ids, cut, tf.constant(self.outside_id, tf.int32)),
            _append(scores, cut, tf.constant(0.0)),
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text: tf.Tensor) -> dict:
        words, starts, ends = self.encoder.split_words_with_offsets(text)
        tag_ids, scores = self.predict_words(words)
        return decode_entities(tag_ids, scores, starts, ends, self.tag_list)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples: tf.Tensor) -> dict:
        spec = {self.tokens_feature: tf.io.VarLenFeature(tf.string)}
        tokens = tf.io.parse_example(examples, spec)[self.tokens_feature]
        words = tf.RaggedTensor.from_sparse(tokens)
        tag_ids, scores = self.predict_words(words)
        return {
            "token_labels": tf.gather(self.tags, tag_ids).to_tensor(default_value=""),
            "token_scores": scores.to_tensor(default_value=0.0),
        }


def decode_entities(
    tag_ids: tf.RaggedTensor,
    scores: tf.RaggedTensor,
    starts: tf.RaggedTensor,
    ends: tf.RaggedTensor,
    tags: list[str],
) -> dict[str, tf.Tensor]:
    """Word tags -> entities, in-graph, with seqeval's default (non-strict) IOB2 rules.

    Args:
        tag_ids: ragged [batch, (words)] indices into `tags`.
        scores: ragged [batch, (words)] float32: each word's tag probability.
        starts, ends: ragged [batch, (words)] int32: each word's offsets.
        tags: the tag names, "O", "B-X" or "I-X" (`pipeline.tasks.iob.tag_names`).

    Returns:
        The `serving_default` outputs (see the module docstring), dense and padded.
    """
    parsed = [split_tag(tag) for tag in tags]
    types = list(dict.fromkeys(kind for _, kind in parsed if kind is not None))
    type_of_tag = tf.constant([-1 if kind is None else types.index(kind) for _, kind in parsed],
                              tf.int32)
    begins = tf.constant([prefix == "B" for prefix, _ in parsed])

    flat_tags = tag_ids.flat_values
    word_type = tf.gather(type_of_tag, flat_tags)  # -1 for O
    # The type of the word before in the same sentence; -1 (as after O) for a first word.
    first_word = tf.equal(tf.ragged.range(tag_ids.row_lengths()).flat_values, 0)
    before = tf.concat([[-1], word_type[:-1]], axis=0)
    before = tf.where(first_word, -1, before)
    inside = word_type >= 0
    opens = inside & (tf.gather(begins, flat_tags) | tf.not_equal(word_type, before))

    # Entities numbered across the batch, in order; every word inside one belongs to the last
    # entity opened (an I- of another type opens its own, so none spans two types).
    entity_of_word = tf.boolean_mask(tf.cumsum(tf.cast(opens, tf.int32)) - 1, inside)
    count = tf.reduce_sum(tf.cast(opens, tf.int32))
    entity_start = tf.math.unsorted_segment_min(
        tf.boolean_mask(starts.flat_values, inside), entity_of_word, count)
    entity_end = tf.math.unsorted_segment_max(
        tf.boolean_mask(ends.flat_values, inside), entity_of_word, count)
    entity_score = tf.math.unsorted_segment_mean(
        tf.boolean_mask(tf.cast(scores.flat_values, tf.float32), inside), entity_of_word, count)
    entity_label = tf.gather(tf.constant(types or [""], tf.string),
                             tf.boolean_mask(word_type, opens))

    per_sentence = tf.reduce_sum(tf.cast(tag_ids.with_flat_values(opens), tf.int32), axis=1)

    def rows(values, padding):
        ragged = tf.RaggedTensor.from_row_lengths(values, tf.cast(per_sentence, tf.int64))
        return ragged.to_tensor(default_value=padding)

    return {
        "entity_start": rows(tf.cast(entity_start, tf.int32), -1),
        "entity_end": rows(tf.cast(entity_end, tf.int32), -1),
        "entity_label": rows(entity_label, ""),
        "entity_score": rows(entity_score, 0.0),
        "num_entities": per_sentence,
    }


def _append(rows: tf.RaggedTensor, counts: tf.Tensor, value: tf.Tensor) -> tf.RaggedTensor:
    """Appends `counts[i]` copies of `value` to row i."""
    counts = tf.cast(counts, tf.int64)
    extra = tf.RaggedTensor.from_row_lengths(tf.fill([tf.reduce_sum(counts)], value), counts)
    return tf.concat([rows.with_row_splits_dtype(tf.int64), extra], axis=1)


def export_token_classifier(
    model,
    encoder: BertWordEncoder,
    tags: list[str],
    export_dir: str,
    tokens_feature: str = "tokens",
    precision: str = "float32",
    jit_compile: bool = False,
) -> str:
    """Writes the token-classification SavedModel (the contract above); returns `export_dir`.

    Args:
        model: a Keras 3 model from `{token_ids, segment_ids, padding_mask}` to logits
            [batch, seq, len(tags)], e.g. `bert_keras.token_classifier.build_token_classifier`.
        encoder: the encoder the model was trained with (its vocabulary, casing and
            `max_seq_length`); requests are padded per batch whatever its padding setting.
        tags: the tag names in the model's output order (`pipeline.tasks.iob.tag_names`).
        export_dir: where to write the SavedModel.
        tokens_feature: the tf.Example feature `from_examples` reads the words from.
        precision, jit_compile: config `serving.precision` and `serving.jit_compile`
            (`serving.model_call`); the model's layers are left in `precision`.
    """
    if encoder.pad_to_max_length:
        # Requests are padded to their longest sentence, not to max_seq_length: the same
        # predictions at a fraction of the compute for short sentences.
        encoder = BertWordEncoder(encoder.vocabulary, encoder.max_seq_length,
                                  encoder.lower_case, pad_to_max_length=False)
    module = TokenClassifierServingModule(model, encoder, tags, tokens_feature, precision,
                                          jit_compile)
    signatures = {
        SERVING_SIGNATURE: module.serve_text.get_concrete_function(),
        EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    if jit_compile:  # TF Serving compiles every request shape before the version serves
        write_shape_warmup(export_dir, SERVING_SIGNATURE, encoder.max_seq_length,
                           lambda length: {"text": filler_text(length - 2)})  # [CLS] .. [SEP]
    return export_dir
