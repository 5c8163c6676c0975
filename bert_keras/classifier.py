"""The fine-tuning model: a BERT backbone with a classification head on a sentence vector.

The sentence vector is either BERT's pooled [CLS] output (`pooling="cls"`, KerasHub's
`BertTextClassifier`) or the mean of the token vectors over the padding mask
(`pooling="mean"`), the vector sentence encoders such as all-MiniLM-L6-v2 were trained on.
On SST-2 the two scored within noise of each other (BUILD.md, "SST-2 accuracy").

The model maps the text encoder's output (`serving.text_encoder.BertTextEncoder`), a dict of
int32 `token_ids`, `segment_ids` and `padding_mask` [batch, seq], to LOGITS
[batch, num_classes]. The serving export (`serving.export`) applies the softmax; train with
`keras.losses.SparseCategoricalCrossentropy(from_logits=True)`.

Example:

>>> import numpy as np
>>> from bert_keras.backbone import ConfigurableBertBackbone
>>> backbone = ConfigurableBertBackbone(
...     vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
...     intermediate_dim=32, max_sequence_length=12)
>>> model = build_text_classifier(backbone, num_classes=3)
>>> logits = model({
...     "token_ids": np.ones((2, 12), "int32"),
...     "segment_ids": np.zeros((2, 12), "int32"),
...     "padding_mask": np.ones((2, 12), "int32")})
>>> tuple(logits.shape)
(2, 3)
"""

from __future__ import annotations

import keras
import keras_hub

POOLINGS = ("cls", "mean")


def build_text_classifier(
    backbone: keras_hub.models.BertBackbone,
    num_classes: int,
    dropout: float = 0.1,
    pooling: str = "cls",
) -> keras.Model:
    """A classifier on `backbone`, without preprocessor.

    Args:
        backbone: a BERT backbone, e.g. from `bert_keras.checkpoint.load_backbone`.
        num_classes: number of classes (>= 2; the export contract applies a softmax).
        dropout: dropout rate on the sentence vector, before the output Dense layer.
        pooling: "cls": a `keras_hub.models.BertTextClassifier` (the pooled [CLS] output);
            "mean": a functional model on the masked mean of `sequence_output`.

    Returns:
        The classifier: inputs `{token_ids, segment_ids, padding_mask}` int32 [batch, seq],
        output logits [batch, num_classes] (no activation).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if pooling == "cls":
        return keras_hub.models.BertTextClassifier(
            backbone=backbone,
            num_classes=num_classes,
            preprocessor=None,
            activation=None,
            dropout=dropout,
        )
    inputs = {
        name: keras.Input(shape=(None,), dtype="int32", name=name) for name in backbone.input
    }
    # The [CLS] pooler gets no gradient here; freezing it keeps Keras from warning about it.
    backbone.pooled_dense.trainable = False
    sequence = backbone(inputs)["sequence_output"]
    sentence = keras.layers.GlobalAveragePooling1D(name="mean_pooling")(
        sequence, mask=inputs["padding_mask"]
    )
    sentence = keras.layers.Dropout(dropout, name="output_dropout")(sentence)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        name="logits",
    )(sentence)
    return keras.Model(inputs, logits, name="bert_mean_pooled_classifier")
