"""Token classification (NER): a tag per token on a BERT backbone's sequence output.

`BertTokenClassifier` maps the word encoder's model inputs
(`serving.word_encoder.BertWordEncoder`: int32 `token_ids`, `segment_ids`, `padding_mask`
[batch, seq]) to LOGITS [batch, seq, num_labels]: dropout, then one Dense layer, on every
token vector. Words are tagged on their first WordPiece; train with
`token_classification_loss()` and a per-token weight that is 1 on first pieces and 0 on
every other position (continuation pieces, [CLS], [SEP], padding), so those never count.

Example:

>>> import numpy as np
>>> from bert_keras.backbone import ConfigurableBertBackbone
>>> backbone = ConfigurableBertBackbone(
...     vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=16,
...     intermediate_dim=32, max_sequence_length=12)
>>> model = build_token_classifier(backbone, num_labels=5)
>>> inputs = {
...     "token_ids": np.ones((2, 12), "int32"),
...     "segment_ids": np.zeros((2, 12), "int32"),
...     "padding_mask": np.ones((2, 12), "int32")}
>>> logits = model(inputs)
>>> tuple(logits.shape)
(2, 12, 5)
>>> labels, weights = np.zeros((2, 12), "int32"), np.zeros((2, 12), "float32")
>>> weights[:, 1:4] = 1.0
>>> loss = token_classification_loss()(labels, logits, sample_weight=weights)
"""

from __future__ import annotations

import keras
import keras_hub

from bert_keras.head_model import FEATURES, BertHeadModel, head_dtype


@keras.saving.register_keras_serializable(package="bert_keras")
class BertTokenClassifier(BertHeadModel):
    """A BERT backbone with a per-token Dense head.

    Args:
        backbone: a `keras_hub.models.BertBackbone` (e.g. `ConfigurableBertBackbone`).
        num_labels: number of tags (>= 2), e.g. `len(pipeline.tasks.iob.tag_names(types))`.
        dropout: dropout rate on the token vectors, before the Dense layer.
        initializer_range: stddev of the truncated-normal initializer of the Dense kernel.

    Inputs: dict of int32 `token_ids`, `segment_ids`, `padding_mask` [batch, seq].
    Output: logits [batch, seq, num_labels] (no softmax; the serving export applies it).
    """

    config_args = ("num_labels", "dropout", "initializer_range")

    def __init__(
        self,
        backbone: keras_hub.models.BertBackbone,
        num_labels: int,
        dropout: float = 0.1,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, got {num_labels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        # === Layers ===
        self.backbone = backbone
        self.output_dropout = keras.layers.Dropout(dropout, name="output_dropout")
        self.output_dense = keras.layers.Dense(
            num_labels,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
            # float32 logits under mixed precision, for a stable softmax and loss.
            dtype=head_dtype(backbone),
            name="logits",
        )
        # The [CLS] pooler gets no gradient; freezing it keeps Keras from warning about it.
        backbone.pooled_dense.trainable = False

        # === Functional model ===
        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name) for name in FEATURES
        }
        sequence = backbone(inputs)["sequence_output"]
        logits = self.output_dense(self.output_dropout(sequence))
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.num_labels = num_labels
        self.dropout = dropout
        self.initializer_range = initializer_range


def build_token_classifier(
    backbone: keras_hub.models.BertBackbone, num_labels: int, dropout: float = 0.1
) -> BertTokenClassifier:
    """A token classifier on `backbone` (from `bert_keras.checkpoint.load_backbone`, say)."""
    return BertTokenClassifier(backbone, num_labels=num_labels, dropout=dropout,
                               name="bert_token_classifier")


def token_classification_loss() -> keras.losses.Loss:
    """Sparse cross-entropy on logits, averaged over the positions of non-zero weight.

    Pass labels [batch, seq] and `sample_weight` [batch, seq] (1 on the first piece of each
    labelled word, 0 elsewhere): the loss is sum(weight * CE) / sum(weight), so neither
    padding nor the number of continuation pieces in a batch changes its scale.
    """
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight", name="token_classification_loss"
    )

