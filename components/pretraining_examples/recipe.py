"""The knobs of BERT's pretraining-data recipe, free of Beam and TFX.

One dataclass serves the component (`PretrainingExampleGen`'s parameters), its executor and
the pipeline config's `examples:` section, which validates a YAML file without importing
Beam or TFX.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import Strict

# Strict for the pipeline config's validation (pydantic): YAML's `true` is not an integer.
StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]


@dataclasses.dataclass(frozen=True)
class PretrainingConfig:
    """The recipe's knobs; defaults are those of Google's create_pretraining_data.py."""

    max_seq_length: StrictInt = 128
    max_predictions_per_seq: StrictInt = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: StrictInt = 10
    whole_word_masking: StrictBool = False
    random_seed: StrictInt = 12345

    def __post_init__(self):
        if self.max_seq_length < 5:
            raise ValueError(f"max_seq_length must be >= 5 ([CLS] A [SEP] B [SEP]), got {self.max_seq_length}")
        if self.max_predictions_per_seq < 1:
            raise ValueError(f"max_predictions_per_seq must be >= 1, got {self.max_predictions_per_seq}")
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ValueError(f"masked_lm_prob must be in (0, 1), got {self.masked_lm_prob}")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if self.dupe_factor < 1:
            raise ValueError(f"dupe_factor must be >= 1, got {self.dupe_factor}")

    @property
    def max_num_tokens(self) -> int:
        return self.max_seq_length - 3  # [CLS] A [SEP] B [SEP]
