"""BERT pretraining: masked language modelling (MLM) and next-sentence prediction (NSP).

`BertPretrainer` puts two heads on a BERT backbone:

* a masked-LM head (`keras_hub.layers.MaskedLMHead`) on the sequence output at
  `masked_lm_positions`: Dense + activation + LayerNorm, then a projection onto the
  vocabulary that is TIED to the backbone's token embedding (no [hidden, vocab] kernel of
  its own; only a [vocab] bias), as in BERT;
* a next-sentence head, `Dense(2)` on the pooled output.

Data. A pretraining example is a dict of: `token_ids`, `segment_ids`, `padding_mask`
[seq]; `masked_lm_positions`, `masked_lm_ids` [max_predictions] (padded with 0);
`masked_lm_weights` float [max_predictions] (1 for a real prediction, 0 for a padded slot);
`next_sentence_label` [] or [1] (0: B follows A, 1: B is random). Google's names, which
`components/pretraining_examples` writes, are accepted too: `input_ids` for `token_ids`,
`input_mask` for `padding_mask`. `split_pretraining_features` turns one example or a batch
into Keras's `(x, y, sample_weight)` (cast int64 features to int32 before, or in, `fit`):

* x: `{token_ids, segment_ids, padding_mask, masked_lm_positions}`
* y: `{"mlm_logits": masked_lm_ids, "nsp_logits": next_sentence_label}`
* sample_weight: `{"mlm_logits": masked_lm_weights, "nsp_logits": 1.0 per example}`

Losses. `compile()` defaults to `pretraining_losses()`: the MLM loss is the sparse
cross-entropy summed over real predictions / number of real predictions (the
`mean_with_sample_weight` reduction; padded slots weigh 0), plus the NSP cross-entropy (mean
over the batch). Metrics, weighted by the same sample weights: `mlm_logits_accuracy` over
real predictions only, and `nsp_logits_accuracy`.

Example:

>>> import numpy as np
>>> from bert_keras.backbone import ConfigurableBertBackbone
>>> backbone = ConfigurableBertBackbone(
...     vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
...     intermediate_dim=16, max_sequence_length=10)
>>> model = BertPretrainer(backbone)
>>> model.compile(optimizer="adam")
>>> features = {
...     "token_ids": np.full((4, 10), 7, "int32"),
...     "segment_ids": np.zeros((4, 10), "int32"),
...     "padding_mask": np.ones((4, 10), "int32"),
...     "masked_lm_positions": np.array([[1, 2, 0]] * 4, "int32"),
...     "masked_lm_ids": np.array([[5, 6, 0]] * 4, "int32"),
...     "masked_lm_weights": np.array([[1, 1, 0]] * 4, "float32"),
...     "next_sentence_label": np.zeros((4,), "int32")}
>>> x, y, sample_weight = split_pretraining_features(features)
>>> outputs = model(x)
>>> tuple(outputs["mlm_logits"].shape), tuple(outputs["nsp_logits"].shape)
((4, 3, 50), (4, 2))
>>> history = model.fit(x, y, sample_weight=sample_weight, epochs=1, verbose=0)
"""

from __future__ import annotations

import keras
import keras_hub

from bert_keras.backbone import GELU, get_activation
from bert_keras.head_model import FEATURES, head_dtype

MLM_OUTPUT = "mlm_logits"
NSP_OUTPUT = "nsp_logits"
# Model input name -> the name Google's pretraining data (and ours) gives it.
_FEATURE_ALIASES = {
    "token_ids": "input_ids",
    "segment_ids": "segment_ids",
    "padding_mask": "input_mask",
    "masked_lm_positions": "masked_lm_positions",
}


@keras.saving.register_keras_serializable(package="bert_keras")
class BertPretrainer(keras.Model):
    """A BERT backbone with a tied masked-LM head and a next-sentence head.

    Args:
        backbone: a `keras_hub.models.BertBackbone` (e.g. `ConfigurableBertBackbone`).
        initializer_range: stddev of the truncated-normal initializer of the heads.

    Inputs: dict of int32 `token_ids`, `segment_ids`, `padding_mask` [batch, seq] and
    `masked_lm_positions` [batch, max_predictions].
    Outputs: dict `{"mlm_logits": [batch, max_predictions, vocab], "nsp_logits": [batch, 2]}`
    (logits; no softmax).
    """

    def __init__(
        self,
        backbone: keras_hub.models.BertBackbone,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        # === Layers ===
        self.backbone = backbone
        initializer = keras.initializers.TruncatedNormal(stddev=initializer_range)
        activation = get_activation(getattr(backbone, "hidden_activation", GELU))
        self.masked_lm_head = keras_hub.layers.MaskedLMHead(
            token_embedding=backbone.token_embedding,
            intermediate_activation=activation,
            layer_norm_epsilon=getattr(backbone, "layer_norm_epsilon", 1e-12),
            kernel_initializer=initializer,
            # float32 heads under mixed precision: the tied projection's bfloat16 output is
            # cast up before the float32 bias is added, and the losses see float32 logits.
            dtype=head_dtype(backbone),
            name="masked_lm_head",
        )
        self.next_sentence_head = keras.layers.Dense(
            2,
            kernel_initializer=initializer,
            dtype=head_dtype(backbone),
            name="next_sentence_head",
        )

        # === Functional model ===
        inputs = {name: backbone.input[name] for name in FEATURES}
        inputs["masked_lm_positions"] = keras.Input(
            shape=(None,), dtype="int32", name="masked_lm_positions"
        )
        encoded = backbone({name: inputs[name] for name in FEATURES})
        mlm_logits = self.masked_lm_head(
            encoded["sequence_output"], mask_positions=inputs["masked_lm_positions"]
        )
        nsp_logits = self.next_sentence_head(encoded["pooled_output"])
        super().__init__(
            inputs=inputs,
            outputs={MLM_OUTPUT: mlm_logits, NSP_OUTPUT: nsp_logits},
            **kwargs,
        )

        # === Config ===
        self.initializer_range = initializer_range

    def __setattr__(self, name, value):
        # As KerasHub's Task: on torch, layers are set before `Module.__init__` has run; the
        # functional graph tracks all the state anyway.
        uninitialized = not hasattr(self, "_initialized")
        if keras.config.backend() == "torch" and uninitialized:
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

    def compile(
        self,
        optimizer="adam",
        loss="auto",
        weighted_metrics="auto",
        **kwargs,
    ):
        """`keras.Model.compile` with the pretraining losses and metrics as defaults."""
        if loss == "auto":
            loss = pretraining_losses()
        if weighted_metrics == "auto":
            weighted_metrics = pretraining_metrics()
        super().compile(optimizer=optimizer, loss=loss, weighted_metrics=weighted_metrics, **kwargs)

    def get_config(self) -> dict:
        # Not the functional config: the constructor arguments, as KerasHub tasks do.
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.layers.serialize(self.backbone),
            "initializer_range": self.initializer_range,
        }

    @classmethod
    def from_config(cls, config: dict) -> BertPretrainer:
        config = dict(config)
        if isinstance(config.get("backbone"), dict):
            config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)


def masked_lm_loss() -> keras.losses.Loss:
    """Sparse cross-entropy over the vocabulary, averaged over real (weight 1) predictions."""
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight", name="masked_lm_loss"
    )


def next_sentence_loss() -> keras.losses.Loss:
    """Sparse cross-entropy over {is next, is random}, averaged over the batch."""
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, name="next_sentence_loss"
    )


def pretraining_losses() -> dict:
    """`compile(loss=...)` for `BertPretrainer`: total loss = MLM loss + NSP loss."""
    return {MLM_OUTPUT: masked_lm_loss(), NSP_OUTPUT: next_sentence_loss()}


def pretraining_metrics() -> dict:
    """`compile(weighted_metrics=...)`: MLM accuracy over real predictions, NSP accuracy."""
    return {
        MLM_OUTPUT: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        NSP_OUTPUT: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    }


def split_pretraining_features(features: dict) -> tuple[dict, dict, dict]:
    """A pretraining example (or batch) dict -> `(x, y, sample_weight)` for `fit`.

    Only indexing and arithmetic: works on NumPy arrays, and on tensors inside
    `tf.data.Dataset.map`.
    """
    x = {
        name: features[name if name in features else alias]
        for name, alias in _FEATURE_ALIASES.items()
    }
    weights = features["masked_lm_weights"]
    labels = features["next_sentence_label"]
    if len(labels.shape) == len(weights.shape):  # [1] per example, as in tf.Examples
        labels = labels[..., 0]
    y = {MLM_OUTPUT: features["masked_lm_ids"], NSP_OUTPUT: labels}
    # 1.0 of the weights' float dtype for every example, [] or [batch] like the labels.
    ones = weights[..., 0] * 0 + 1
    return x, y, {MLM_OUTPUT: weights, NSP_OUTPUT: ones}
