"""What a BERT task model computes in: the encoder in float32 or bfloat16, the head in float32.

`set_precision(model, "mixed_bfloat16")` switches the dtype policy of every layer of the
model's backbone (the encoder) to Keras's `mixed_bfloat16` (bfloat16 compute, float32
variables) and of every other layer (the task head) to `float32`; `"float32"` puts every
layer in float32. The variables are not touched (float32 under both policies), so a model
trained in one precision is served or trained further in the other without copying weights;
a layer reads its policy when it is called, so the switch takes effect at the next call or
trace. The head stays float32 so that logits, softmax and losses keep full precision: a
bfloat16 logit has 8 bits of mantissa, enough to flip an argmax between close classes.

Keras only (no TensorFlow), so it holds on every Keras backend.

Example:

>>> from bert_keras.backbone import ConfigurableBertBackbone
>>> from bert_keras.classifier import build_text_classifier
>>> backbone = ConfigurableBertBackbone(
...     vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=16,
...     intermediate_dim=32, max_sequence_length=12)
>>> model = build_text_classifier(backbone, num_classes=2)
>>> set_precision(model, "mixed_bfloat16")
>>> backbone.compute_dtype, model.output_dense.compute_dtype
('bfloat16', 'float32')
"""

from __future__ import annotations

import keras

PRECISIONS = ("float32", "mixed_bfloat16")


def encoder_of(model: keras.Model) -> keras.Layer:
    """The model's BERT backbone: its `backbone` attribute (KerasHub tasks and
    `bert_keras.head_model.BertHeadModel`) or its one layer that is a KerasHub backbone (a
    functional model built on one, e.g. the mean-pooled classifier)."""
    import keras_hub

    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, keras.Layer):
        return backbone
    found = [layer for layer in model.layers if isinstance(layer, keras_hub.models.Backbone)]
    if len(found) != 1:
        raise ValueError(f"{model.name}: expected one BERT backbone layer, found {len(found)}")
    return found[0]


def set_precision(model: keras.Model, precision: str) -> None:
    """Sets the encoder's layers to `precision` and every other layer to float32 (in place).

    Raises:
        ValueError: `precision` is not one of PRECISIONS, or it is bfloat16 and the model has
            no backbone.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":  # every layer, so a model without a backbone is fine too
        encoder_layers: set[int] = set()
    else:
        encoder = encoder_of(model)
        encoder_layers = {id(layer) for layer in encoder._flatten_layers(include_self=True)}
    for layer in model._flatten_layers(include_self=True):
        layer.dtype_policy = precision if id(layer) in encoder_layers else "float32"


def encoder_compute_dtype(model: keras.Model) -> str:
    """What the encoder computes in now ("float32" or "bfloat16")."""
    return encoder_of(model).compute_dtype
