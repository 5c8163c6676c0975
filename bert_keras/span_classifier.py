"""Extractive question answering: start and end logits over a BERT backbone's sequence output.

`BertSpanClassifier` maps the question-answering encoder's model inputs
(`serving.question_answering_encoder.QuestionAnsweringEncoder`: int32 `token_ids`,
`segment_ids`, `padding_mask` [windows, seq], each window "[CLS] question [SEP] context
[SEP]") to `start_logits` and `end_logits` [windows, seq] (float32): dropout, then one Dense
layer with two outputs on every token vector, as BERT's SQuAD head. Padding positions get a
very low logit, so a softmax over the sequence only spreads over real tokens. Train with
`span_loss()` on each output against the answer's first/last token position (0, the [CLS]
token, in windows that do not contain the answer); Keras adds the two losses, and the
`loss_weights` of 0.5 in `span_loss_weights()` make it BERT's mean of the two.

Example:

>>> import numpy as np
>>> from bert_keras.backbone import ConfigurableBertBackbone
>>> backbone = ConfigurableBertBackbone(
...     vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=16,
...     intermediate_dim=32, max_sequence_length=12)
>>> model = build_span_classifier(backbone)
>>> mask = np.ones((2, 12), "int32")
>>> mask[:, 10:] = 0
>>> outputs = model({"token_ids": np.ones((2, 12), "int32"),
...                  "segment_ids": np.zeros((2, 12), "int32"), "padding_mask": mask})
>>> sorted(outputs), tuple(outputs["start_logits"].shape)
(['end_logits', 'start_logits'], (2, 12))
>>> bool((np.asarray(outputs["end_logits"])[:, 10:] < -1e8).all())
True
"""

from __future__ import annotations

import keras
import keras_hub

from bert_keras.head_model import FEATURES, BertHeadModel, head_dtype

START_LOGITS = "start_logits"
END_LOGITS = "end_logits"
# What a padding position's logit becomes: far below any real logit, still finite in float32.
PADDING_LOGIT = -1e9


@keras.saving.register_keras_serializable(package="bert_keras")
class BertSpanClassifier(BertHeadModel):
    """A BERT backbone with BERT's SQuAD span head (start and end logit per token).

    Args:
        backbone: a `keras_hub.models.BertBackbone` (e.g. `ConfigurableBertBackbone`).
        dropout: dropout rate on the token vectors, before the Dense layer.
        initializer_range: stddev of the truncated-normal initializer of the Dense kernel.

    Inputs: dict of int32 `token_ids`, `segment_ids`, `padding_mask` [batch, seq].
    Outputs: dict of float32 `start_logits`, `end_logits` [batch, seq].
    """

    config_args = ("dropout", "initializer_range")

    def __init__(
        self,
        backbone: keras_hub.models.BertBackbone,
        dropout: float = 0.1,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        # === Layers ===
        self.backbone = backbone
        self.output_dropout = keras.layers.Dropout(dropout, name="output_dropout")
        self.output_dense = keras.layers.Dense(
            2,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
            # float32 logits under mixed precision, for a stable softmax and loss.
            dtype=head_dtype(backbone),
            name="span_logits",
        )
        # The [CLS] pooler gets no gradient; freezing it keeps Keras from warning about it.
        backbone.pooled_dense.trainable = False

        # === Functional model ===
        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name) for name in FEATURES
        }
        sequence = backbone(inputs)["sequence_output"]
        logits = keras.ops.cast(self.output_dense(self.output_dropout(sequence)), "float32")
        real = keras.ops.not_equal(inputs["padding_mask"], 0)
        start, end = (
            keras.ops.where(real, logits[:, :, i], PADDING_LOGIT) for i in range(2)
        )
        outputs = {START_LOGITS: start, END_LOGITS: end}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.dropout = dropout
        self.initializer_range = initializer_range


def build_span_classifier(
    backbone: keras_hub.models.BertBackbone, dropout: float = 0.1
) -> BertSpanClassifier:
    """A span classifier on `backbone` (from `bert_keras.checkpoint.load_backbone`, say)."""
    return BertSpanClassifier(backbone, dropout=dropout, name="bert_span_classifier")


def span_loss() -> dict[str, keras.losses.Loss]:
    """Per output: sparse cross-entropy of the logits against the gold token position."""
    return {
        name: keras.losses.SparseCategoricalCrossentropy(from_logits=True, name=f"{name}_loss")
        for name in (START_LOGITS, END_LOGITS)
    }


def span_loss_weights() -> dict[str, float]:
    """BERT's total loss is the mean of the start and end losses."""
    return {START_LOGITS: 0.5, END_LOGITS: 0.5}
