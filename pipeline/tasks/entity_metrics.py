"""Entity-level precision, recall and F1 of token-classification (NER) predictions.

Pure Python (no TensorFlow), so the evaluator can count sentence by sentence inside a Beam
`CombineFn` and merge the partial counts of its workers. An entity counts as found only if
its type and its exact word span match a gold entity. Spans are read from IOB tags with
seqeval's default (non-strict, conlleval-style) rules, so the numbers are those that
`seqeval.metrics` reports for the same tags (checked in `entity_metrics_test.py`):

- `B-T` always starts an entity of type T;
- `I-T` continues the entity before it if that one has type T, and otherwise (after `O`, or
  after an entity of another type) starts a new one, so IOB1 input is read as its IOB2 form;
- `O`, a `B-` or a change of type ends the open entity.

Example:

>>> entity_spans(["B-PER", "I-PER", "O", "I-LOC", "I-ORG", "B-ORG"])
[('PER', 0, 2), ('LOC', 3, 4), ('ORG', 4, 5), ('ORG', 5, 6)]
>>> scores = entity_scores(gold=[["B-PER", "I-PER", "O", "B-LOC"]],
...                        predicted=[["B-PER", "I-PER", "O", "B-PER"]])
>>> scores["precision"], scores["recall"], scores["f1"]
(0.5, 0.5, 0.5)
>>> scores["per_type"]["LOC"]
{'precision': 0.0, 'recall': 0.0, 'f1': 0.0, 'support': 1}

The same counts, accumulated and merged as a Beam worker would:

>>> counts = EntityCounts()
>>> counts.add_sentence(["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-PER"])
>>> other = EntityCounts()
>>> other.add_sentence(["O", "B-LOC"], ["O", "B-LOC"])
>>> counts.merge(other).scores()["per_type"]["LOC"]["recall"]
0.5
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.tasks.iob import split_tag


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, end word exclusive) of each entity in one sentence's IOB tags.

    Raises ValueError for a tag that is not O, B-TYPE or I-TYPE (seqeval would only warn and
    guess; a malformed tag here means a bug upstream).
    """
    spans = []
    open_kind: str | None = None  # type of the entity still open after the previous word
    open_start = 0
    for index, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if open_kind is not None and (prefix != "I" or kind != open_kind):
            spans.append((open_kind, open_start, index))
            open_kind = None
        # An I- that did not continue an entity of its type starts one (conlleval's rule).
        if prefix == "B" or (prefix == "I" and open_kind is None):
            open_kind, open_start = kind, index
    if open_kind is not None:
        spans.append((open_kind, open_start, len(tags)))
    return spans


@dataclasses.dataclass
class TypeCounts:
    """Entity counts of one type: matched (true positives), predicted and gold."""

    true_positives: int = 0
    predicted: int = 0
    gold: int = 0

    def __iadd__(self, other: TypeCounts) -> TypeCounts:
        self.true_positives += other.true_positives
        self.predicted += other.predicted
        self.gold += other.gold
        return self


def _divide(numerator: int, denominator: int) -> float:
    # seqeval with zero_division=0 (and its default "warn", minus the warning).
    return numerator / denominator if denominator else 0.0


def _scores(counts: TypeCounts) -> dict[str, float]:
    precision = _divide(counts.true_positives, counts.predicted)
    recall = _divide(counts.true_positives, counts.gold)
    # The same expression as seqeval/scikit-learn, so results agree to the last bit or so.
    denominator = precision + recall
    f1 = 2 * precision * recall / denominator if denominator else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


@dataclasses.dataclass
class EntityCounts:
    """Per-type entity counts, added sentence by sentence and merged across workers.

    `sentences` counts the sentences added (it names a sentence in error messages).
    Instances pickle, so they can be a Beam `CombineFn` accumulator.
    """

    by_type: dict[str, TypeCounts] = dataclasses.field(default_factory=dict)
    sentences: int = 0

    def add_sentence(
        self, gold: Sequence[str], predicted: Sequence[str], index: int | None = None
    ) -> None:
        """Counts one sentence's entities. `index` (default: running count) names it in errors."""
        if index is None:
            index = self.sentences
        if len(gold) != len(predicted):
            raise ValueError(
                f"sentence {index}: {len(gold)} gold tags but {len(predicted)} predicted tags"
            )
        try:
            gold_spans = set(entity_spans(gold))
            predicted_spans = set(entity_spans(predicted))
        except ValueError as error:
            raise ValueError(f"sentence {index}: {error}") from None
        for kind, _, _ in gold_spans:
            self._counts(kind).gold += 1
        for kind, _, _ in predicted_spans:
            self._counts(kind).predicted += 1
        # Exact match: same type and same span (the type is part of the tuple).
        for kind, _, _ in gold_spans & predicted_spans:
            self._counts(kind).true_positives += 1
        self.sentences += 1

    def merge(self, other: EntityCounts) -> EntityCounts:
        """Adds `other`'s counts into this one; returns self (for Beam's merge_accumulators)."""
        for kind, counts in other.by_type.items():
            mine = self._counts(kind)
            mine += counts
        self.sentences += other.sentences
        return self

    def total(self) -> TypeCounts:
        """The counts summed over all types (what micro-averaging divides)."""
        total = TypeCounts()
        for counts in self.by_type.values():
            total += counts
        return total

    def scores(self) -> dict[str, Any]:
        """Micro-averaged precision/recall/f1 and per_type {type: {precision, recall, f1,
        support}}, support being the number of gold entities of that type."""
        per_type = {}
        for kind in sorted(self.by_type):
            counts = self.by_type[kind]
            per_type[kind] = {**_scores(counts), "support": counts.gold}
        return {**_scores(self.total()), "per_type": per_type}

    def _counts(self, kind: str) -> TypeCounts:
        return self.by_type.setdefault(kind, TypeCounts())


def entity_scores(
    gold: Iterable[Sequence[str]], predicted: Iterable[Sequence[str]]
) -> dict[str, Any]:
    """Entity-level scores of whole corpora: see `EntityCounts.scores`.

    Raises ValueError if the corpora hold different numbers of sentences, or a sentence has
    different numbers of gold and predicted tags (naming its index).
    """
    gold_sentences = list(gold)
    predicted_sentences = list(predicted)
    if len(gold_sentences) != len(predicted_sentences):
        raise ValueError(
            f"{len(gold_sentences)} gold sentences but {len(predicted_sentences)} predicted"
        )
    counts = EntityCounts()
    pairs = zip(gold_sentences, predicted_sentences, strict=True)
    for index, (gold_tags, predicted_tags) in enumerate(pairs):
        counts.add_sentence(gold_tags, predicted_tags, index)
    return counts.scores()

