"""A `keras_hub.models.BertBackbone` whose feed-forward activation and layer-norm epsilon are set.

KerasHub's `BertBackbone` hard-codes the tanh approximation of GELU (what Google's original
TensorFlow BERT used). Checkpoints trained with Hugging Face `transformers` and
`hidden_act: "gelu"` (MiniLM, most BERTs on the Hub) use the exact, erf-based GELU: with the
approximation their hidden states drift by ~5e-3. `ConfigurableBertBackbone` is the same
network (same layers, same weight layout, same `.weights.h5` files) with the activation and
epsilon as config, so `get_config`/`from_config` and saved models keep them.

Example:

>>> import numpy as np
>>> backbone = ConfigurableBertBackbone(
...     vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
...     intermediate_dim=32, max_sequence_length=12, hidden_activation="gelu")
>>> outputs = backbone({
...     "token_ids": np.ones((1, 12), "int32"),
...     "segment_ids": np.zeros((1, 12), "int32"),
...     "padding_mask": np.ones((1, 12), "int32")})
>>> tuple(outputs["sequence_output"].shape), tuple(outputs["pooled_output"].shape)
((1, 12, 16), (1, 16))
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import keras_hub

# Activation names this module understands, beyond any `keras.activations` name.
GELU = "gelu"  # exact: 0.5 x (1 + erf(x / sqrt(2)))
GELU_APPROXIMATE = "gelu_approximate"  # tanh approximation (KerasHub's BertBackbone default)


@keras.saving.register_keras_serializable(package="bert_keras")
def gelu_approximate(x):
    """GELU, tanh approximation (Hugging Face's "gelu_new" / "gelu_pytorch_tanh")."""
    return keras.activations.gelu(x, approximate=True)


def get_activation(name: str) -> Callable:
    """Resolves a `hidden_activation` name: "gelu" (exact), "gelu_approximate", or Keras's."""
    if name == GELU:
        return keras.activations.gelu  # approximate=False by default
    if name == GELU_APPROXIMATE:
        return gelu_approximate
    try:
        return keras.activations.get(name)
    except ValueError as e:
        raise ValueError(f"unknown hidden_activation {name!r}") from e


@keras.saving.register_keras_serializable(package="bert_keras")
class ConfigurableBertBackbone(keras_hub.models.BertBackbone):
    """`keras_hub.models.BertBackbone` with a configurable activation and layer-norm epsilon.

    Args:
        vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim, dropout,
        max_sequence_length, num_segments, dtype: as for `keras_hub.models.BertBackbone`.
        hidden_activation: the feed-forward activation: "gelu" (exact, the default, as
            Hugging Face BERT configs mean it), "gelu_approximate" (tanh form, KerasHub's
            BertBackbone) or any `keras.activations` name.
        layer_norm_epsilon: epsilon of every LayerNormalization (1e-12 in BERT).

    Inputs and outputs are those of `keras_hub.models.BertBackbone`: a dict of int32
    `token_ids`, `segment_ids`, `padding_mask` [batch, seq] to a dict of `sequence_output`
    [batch, seq, hidden] and `pooled_output` [batch, hidden].
    """

    def __init__(
        self,
        vocabulary_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        intermediate_dim: int,
        dropout: float = 0.1,
        max_sequence_length: int = 512,
        num_segments: int = 2,
        hidden_activation: str = GELU,
        layer_norm_epsilon: float = 1e-12,
        dtype=None,
        **kwargs,
    ):
        super().__init__(
            vocabulary_size=vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            max_sequence_length=max_sequence_length,
            num_segments=num_segments,
            dtype=dtype,
            **kwargs,
        )
        # The functional graph is only symbolic: layers read these attributes when called.
        activation = get_activation(hidden_activation)
        self.embeddings_layer_norm.epsilon = layer_norm_epsilon
        for block in self.transformer_layers:
            try:
                intermediate = block._feedforward_intermediate_dense
                norms = (block._self_attention_layer_norm, block._feedforward_layer_norm)
            except AttributeError as e:  # pragma: no cover - a keras-hub refactoring
                raise RuntimeError(
                    f"keras-hub {keras_hub.__version__}: TransformerEncoder internals changed; "
                    "update bert_keras/backbone.py"
                ) from e
            block.activation = activation
            intermediate.activation = activation
            block.layer_norm_epsilon = layer_norm_epsilon
            for norm in norms:
                norm.epsilon = layer_norm_epsilon
        self.hidden_activation = hidden_activation
        self.layer_norm_epsilon = layer_norm_epsilon

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "hidden_activation": self.hidden_activation,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config


def backbone_config(backbone: keras_hub.models.BertBackbone) -> dict:
    """`get_config()` of any BertBackbone, as `ConfigurableBertBackbone` arguments.

    A plain KerasHub `BertBackbone` gets its implicit tanh GELU and 1e-12 epsilon spelled out,
    so that rebuilding it as a `ConfigurableBertBackbone` computes the same function.
    """
    config = backbone.get_config()
    if not isinstance(backbone, ConfigurableBertBackbone):
        config.update({"hidden_activation": GELU_APPROXIMATE, "layer_norm_epsilon": 1e-12})
    return config
