"""What bertpipe's task models share: a KerasHub-style functional model on a BERT backbone.

`BertHeadModel` is the base of `BertTokenClassifier` and `BertSpanClassifier` (and of any new
task head): its config is the constructor's arguments, with the backbone serialized, as
KerasHub's `Task` does, rather than the functional graph; it applies KerasHub's torch-backend
`__setattr__` rule. A subclass lists the constructor arguments it stores as attributes in
`config_args`.

Example:

>>> import keras
>>> from bert_keras.backbone import ConfigurableBertBackbone
>>> class MeanLogit(BertHeadModel):
...     config_args = ("initializer_range",)
...     def __init__(self, backbone, initializer_range=0.02, **kwargs):
...         self.backbone = backbone
...         inputs = {n: keras.Input(shape=(None,), dtype="int32", name=n) for n in FEATURES}
...         vectors = backbone(inputs)["sequence_output"]
...         outputs = keras.layers.Dense(1, dtype=head_dtype(backbone))(vectors)
...         super().__init__(inputs=inputs, outputs=outputs, **kwargs)
...         self.initializer_range = initializer_range
>>> backbone = ConfigurableBertBackbone(
...     vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=16,
...     intermediate_dim=32, max_sequence_length=12)
>>> sorted(MeanLogit(backbone).get_config())
['backbone', 'initializer_range', 'name', 'trainable']
"""

from __future__ import annotations

from typing import ClassVar

import keras

# The model inputs of every BERT task model (int32 [batch, seq]).
FEATURES = ("token_ids", "segment_ids", "padding_mask")


def head_dtype(backbone) -> str | keras.DTypePolicy:
    """A head's dtype: float32 under mixed precision (stable softmax and loss), else the
    backbone's policy."""
    policy = backbone.dtype_policy
    return "float32" if policy.compute_dtype != policy.variable_dtype else policy


class BertHeadModel(keras.Model):
    """Base class: constructor-argument config (`config_args` + the backbone)."""

    config_args: ClassVar[tuple[str, ...]] = ()

    def __setattr__(self, name, value):
        # As KerasHub's Task: on torch, layers are set before `Module.__init__` has run; the
        # functional graph tracks all the state anyway.
        uninitialized = not hasattr(self, "_initialized")
        if keras.config.backend() == "torch" and uninitialized:
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

    def get_config(self) -> dict:
        # Not the functional config: the constructor arguments, as KerasHub tasks do.
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.layers.serialize(self.backbone),
            **{name: getattr(self, name) for name in self.config_args},
        }

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if isinstance(config.get("backbone"), dict):
            config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)
