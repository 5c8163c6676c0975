"""IOB tag vocabulary, tag parsing and IOB1 -> IOB2 normalisation."""

from __future__ import annotations

import doctest

import pytest

from pipeline.tasks import iob
from pipeline.tasks.iob import OUTSIDE, split_tag, tag_names, to_iob2


def test_tag_names_order():
    # Index 0 is O and the B-/I- pairs follow the config's type order: label ids depend on it.
    assert tag_names(["PER", "LOC", "ORG"]) == [
        "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    assert tag_names(["LOC", "PER"]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert tag_names([]) == [OUTSIDE]


def test_split_tag():
    assert split_tag("O") == ("O", None)
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I-LOC") == ("I", "LOC")
    # Only the first hyphen separates: a type may contain hyphens.
    assert split_tag("B-ORG-CORP") == ("B", "ORG-CORP")


@pytest.mark.parametrize(
    "tag", ["", "B", "I", "B-", "I-", "-PER", "X-PER", "E-PER", "S-PER", "b-PER", "o", "PER",
            "BPER", " O", "O-PER"])
def test_split_tag_rejects(tag):
    with pytest.raises(ValueError, match="not an IOB tag"):
        split_tag(tag)


@pytest.mark.parametrize(
    ("iob1", "iob2"),
    [
        (["I-PER", "I-PER", "O", "I-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),
        # In IOB1 B- only separates two adjacent entities of the same type.
        (["I-PER", "B-PER", "I-PER"], ["B-PER", "B-PER", "I-PER"]),
        # A type change inside a span starts a new entity.
        (["I-PER", "I-LOC", "I-LOC"], ["B-PER", "B-LOC", "I-LOC"]),
        (["O", "I-ORG"], ["O", "B-ORG"]),
    ],
)
def test_to_iob2_on_iob1(iob1, iob2):
    assert to_iob2(iob1) == iob2


@pytest.mark.parametrize(
    "tags",
    [
        [],
        ["O", "O"],
        ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"],
        ["B-PER", "B-PER", "B-ORG", "I-ORG", "I-ORG"],
    ],
)
def test_to_iob2_leaves_iob2_unchanged(tags):
    assert to_iob2(tags) == tags
    assert to_iob2(to_iob2(tags)) == tags


def test_to_iob2_rejects_bad_tags():
    with pytest.raises(ValueError, match="'E-PER'"):
        to_iob2(["O", "E-PER"])


def test_module_docstring_examples_run():
    result = doctest.testmod(iob)
    assert result.failed == 0
    assert result.attempted > 0
