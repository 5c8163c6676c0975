"""Entity spans and scores, checked against seqeval on edge cases and random tag sequences.

seqeval (test-only dependency) is the reference the NER literature reports; the evaluator
must give the same numbers without importing it (or numpy/scikit-learn) in the pipeline.
"""

from __future__ import annotations

import doctest
import pickle
import random
import warnings

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from pipeline.tasks import entity_metrics
from pipeline.tasks.entity_metrics import EntityCounts, TypeCounts, entity_scores, entity_spans
from pipeline.tasks.iob import tag_names, to_iob2

TOLERANCE = 1e-12

# (tags, expected spans): the IOB edge cases, in both the IOB2 and the IOB1 reading.
EDGE_CASES = [
    pytest.param([], [], id="empty sentence"),
    pytest.param(["O", "O", "O"], [], id="all O"),
    pytest.param(["B-PER", "I-PER", "O"], [("PER", 0, 2)], id="IOB2 entity"),
    pytest.param(["O", "I-PER", "I-PER"], [("PER", 1, 3)], id="I- after O starts one"),
    pytest.param(["I-PER"], [("PER", 0, 1)], id="I- as first tag"),
    pytest.param(["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)],
                 id="type change inside a span"),
    pytest.param(["I-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)],
                 id="type change between I- tags"),
    pytest.param(["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)], id="B- after B-"),
    pytest.param(["I-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)],
                 id="B- after I- of the same type"),
    pytest.param(["O", "B-LOC"], [("LOC", 1, 2)], id="entity at the very end"),
    pytest.param(["O", "B-LOC", "I-LOC"], [("LOC", 1, 3)], id="long entity at the end"),
    pytest.param(["B-ORG", "I-ORG", "I-ORG", "I-ORG"], [("ORG", 0, 4)], id="whole sentence"),
    pytest.param(["B-A-B", "I-A-B", "I-A"], [("A-B", 0, 2), ("A", 2, 3)],
                 id="type with a hyphen"),
]


def seqeval_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """seqeval's spans of one sentence, end made exclusive."""
    return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]


def seqeval_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """seqeval's micro and per-type scores, in entity_scores' layout."""
    with warnings.catch_warnings():
        # An all-O corpus gives a NaN macro average (unused here) and numpy warns about it.
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    per_type = {
        kind: {"precision": row["precision"], "recall": row["recall"],
               "f1": row["f1-score"], "support": row["support"]}
        for kind, row in report.items() if not kind.endswith(" avg")
    }
    micro = report["micro avg"]
    scores = {
        "precision": precision_score(gold, predicted, zero_division=0),
        "recall": recall_score(gold, predicted, zero_division=0),
        "f1": f1_score(gold, predicted, zero_division=0),
        "per_type": per_type,
    }
    # The report's micro row and the *_score functions are the same computation in seqeval.
    assert (micro["precision"], micro["recall"], micro["f1-score"]) == (
        scores["precision"], scores["recall"], scores["f1"])
    return scores


def assert_matches_seqeval(gold: list[list[str]], predicted: list[list[str]]) -> None:
    ours = entity_scores(gold, predicted)
    if not gold:
        # seqeval raises TypeError for a corpus of no sentences; ours is all zeros.
        assert ours == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "per_type": {}}
        return
    reference = seqeval_scores(gold, predicted)
    context = f"gold={gold!r} predicted={predicted!r}"
    for key in ("precision", "recall", "f1"):
        assert isinstance(ours[key], float)
        assert abs(ours[key] - reference[key]) <= TOLERANCE, (key, ours, reference, context)
    assert sorted(ours["per_type"]) == sorted(reference["per_type"]), context
    for kind, row in reference["per_type"].items():
        for key in ("precision", "recall", "f1"):
            assert abs(ours["per_type"][kind][key] - row[key]) <= TOLERANCE, (kind, key, context)
        assert ours["per_type"][kind]["support"] == row["support"], (kind, context)


# Random corpora ---------------------------------------------------------------------------

TYPES = ["PER", "LOC", "ORG", "MISC"]
TAGS = tag_names(TYPES)


def random_iob2(rng: random.Random, length: int) -> list[str]:
    """Valid IOB2: an I- only continues an entity of its own type."""
    tags: list[str] = []
    for _ in range(length):
        previous = tags[-1] if tags else "O"
        choice = rng.random()
        if previous != "O" and choice < 0.4:
            tags.append("I-" + previous[2:])
        elif choice < 0.7:
            tags.append("O")
        else:
            tags.append("B-" + rng.choice(TYPES))
    return tags


def random_iob1ish(rng: random.Random, length: int) -> list[str]:
    """Any tag anywhere: I- after O, type changes inside spans, stray B-s."""
    return [rng.choice(TAGS) for _ in range(length)]


def perturbed(rng: random.Random, tags: list[str], rate: float) -> list[str]:
    """A 'prediction': `tags` with some tags replaced, so that many entities still match."""
    return [rng.choice(TAGS) if rng.random() < rate else tag for tag in tags]


def random_corpus(rng: random.Random) -> tuple[list[list[str]], list[list[str]]]:
    gold, predicted = [], []
    for _ in range(rng.randint(0, 12)):
        length = rng.randint(0, 15)
        make = random_iob2 if rng.random() < 0.5 else random_iob1ish
        gold_tags = make(rng, length)
        if rng.random() < 0.2:
            predicted_tags = random_iob1ish(rng, length)
        else:
            predicted_tags = perturbed(rng, gold_tags, rng.choice([0.0, 0.05, 0.2, 0.5]))
        gold.append(gold_tags)
        predicted.append(predicted_tags)
    return gold, predicted


@pytest.fixture(scope="module")
def random_corpora() -> list[tuple[list[list[str]], list[list[str]]]]:
    rng = random.Random(20261123)
    corpora = [random_corpus(rng) for _ in range(500)]
    assert sum(len(gold) for gold, _ in corpora) > 2000
    return corpora


# Spans ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tags", "expected"), EDGE_CASES)
def test_entity_spans_edge_cases(tags, expected):
    assert entity_spans(tags) == expected
    assert seqeval_spans(tags) == expected


@pytest.mark.parametrize(("tags", "expected"), EDGE_CASES)
def test_spans_are_those_of_the_iob2_form(tags, expected):
    assert entity_spans(to_iob2(tags)) == expected


def test_entity_spans_match_seqeval_on_random_sequences(random_corpora):
    checked = 0
    for gold, predicted in random_corpora:
        for tags in gold + predicted:
            assert entity_spans(tags) == seqeval_spans(tags), tags
            assert entity_spans(to_iob2(tags)) == entity_spans(tags), tags
            checked += 1
    assert checked > 4000


@pytest.mark.parametrize("tag", ["E-PER", "S-PER", "B-", "PER", "o", ""])
def test_entity_spans_reject_non_iob_tags(tag):
    with pytest.raises(ValueError, match="not an IOB tag"):
        entity_spans(["O", tag])


# Scores ---------------------------------------------------------------------------------------


def test_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-PER"], ["B-ORG", "B-ORG"]]
    scores = entity_scores(gold, predicted)
    # Found: PER(0,2), ORG(0,1) of 4 predicted and 3 gold entities.
    assert scores["precision"] == 0.5
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert scores["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "ORG": {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1},
        "PER": {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1},
    }


def test_partial_span_or_wrong_type_is_not_a_match():
    scores = entity_scores([["B-PER", "I-PER", "B-LOC"]], [["B-PER", "O", "B-ORG"]])
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 0.0, 0.0)
    assert scores["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                         "support": 0}


def test_zero_denominators_give_zero():
    empty = entity_scores([], [])
    assert empty == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "per_type": {}}
    assert entity_scores([["O", "O"], []], [["O", "O"], []]) == empty
    nothing_predicted = entity_scores([["B-PER"]], [["O"]])
    assert (nothing_predicted["precision"], nothing_predicted["recall"]) == (0.0, 0.0)
    nothing_gold = entity_scores([["O"]], [["I-PER"]])
    assert nothing_gold["per_type"]["PER"]["support"] == 0
    assert nothing_gold["f1"] == 0.0


def test_edge_cases_match_seqeval():
    corpus = [tags for tags, _ in (case.values for case in EDGE_CASES)]
    for tags in corpus:
        assert_matches_seqeval([tags], [tags])
        assert_matches_seqeval([tags], [to_iob2(tags)])
        assert_matches_seqeval([tags], [["O"] * len(tags)])
        assert_matches_seqeval([["O"] * len(tags)], [tags])
    # Every edge case predicted as every other one of the same length, as one corpus.
    gold, predicted = [], []
    for first in corpus:
        for second in corpus:
            if len(first) == len(second):
                gold.append(first)
                predicted.append(second)
    assert_matches_seqeval(gold, predicted)


def test_random_corpora_match_seqeval(random_corpora):
    for gold, predicted in random_corpora:
        assert_matches_seqeval(gold, predicted)
    assert_matches_seqeval(
        [tags for gold, _ in random_corpora for tags in gold],
        [tags for _, predicted in random_corpora for tags in predicted],
    )


def test_sentence_by_sentence_and_merged_counts_equal_whole_corpus(random_corpora):
    gold = [tags for corpus, _ in random_corpora for tags in corpus]
    predicted = [tags for _, corpus in random_corpora for tags in corpus]
    # As Beam would: three workers, each adding some sentences, merged in another order.
    workers = [EntityCounts() for _ in range(3)]
    for index, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted, strict=True)):
        workers[index % 3].add_sentence(gold_tags, predicted_tags)
    workers = [pickle.loads(pickle.dumps(worker)) for worker in workers]
    merged = EntityCounts().merge(workers[2]).merge(workers[0]).merge(workers[1])
    assert merged.sentences == len(gold)
    assert merged.scores() == entity_scores(gold, predicted)
    total = merged.total()
    assert total.gold == sum(len(entity_spans(tags)) for tags in gold)
    assert total.predicted == sum(len(entity_spans(tags)) for tags in predicted)


def test_merge_adds_counts():
    first = EntityCounts({"PER": TypeCounts(1, 2, 3)}, sentences=2)
    second = EntityCounts({"PER": TypeCounts(1, 1, 1), "LOC": TypeCounts(0, 1, 0)}, sentences=1)
    assert first.merge(second) == EntityCounts(
        {"PER": TypeCounts(2, 3, 4), "LOC": TypeCounts(0, 1, 0)}, sentences=3)
    # The merged-in accumulator is left as it was.
    assert second.by_type["PER"] == TypeCounts(1, 1, 1)


# Errors ---------------------------------------------------------------------------------------


def test_sentence_length_mismatch_names_the_sentence():
    with pytest.raises(ValueError, match=r"sentence 2: 3 gold tags but 2 predicted"):
        entity_scores([["O"], ["B-PER"], ["O", "O", "O"]], [["O"], ["O"], ["O", "O"]])


def test_sentence_count_mismatch():
    with pytest.raises(ValueError, match=r"2 gold sentences but 1 predicted"):
        entity_scores([["O"], ["O"]], [["O"]])


def test_accumulator_errors_name_the_sentence():
    counts = EntityCounts()
    counts.add_sentence(["O"], ["O"])
    with pytest.raises(ValueError, match=r"sentence 1: 1 gold tags but 0 predicted"):
        counts.add_sentence(["O"], [])
    with pytest.raises(ValueError, match=r"sentence 7: not an IOB tag: 'X-PER'"):
        counts.add_sentence(["O"], ["X-PER"], index=7)
    assert counts.sentences == 1  # a rejected sentence is not counted


def test_module_docstring_examples_run():
    result = doctest.testmod(entity_metrics)
    assert result.failed == 0
    assert result.attempted > 0
