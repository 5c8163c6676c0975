"""IOB tags of token-classification tasks: names, parsing and IOB1 -> IOB2 normalisation.

Pure Python (no TensorFlow), shared by ingestion, preprocessing, evaluation and export, so
the tag list a model is trained with is defined once: "O" first, then "B-T", "I-T" for each
entity type in the config's order.

Example:

>>> tag_names(["PER", "LOC"])
['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC']
>>> to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC"])
['B-PER', 'I-PER', 'O', 'B-LOC', 'B-LOC']
"""

from __future__ import annotations

OUTSIDE = "O"


def tag_names(entity_types: list[str]) -> list[str]:
    """The tag vocabulary: index 0 is "O", then B-/I- per entity type."""
    return [OUTSIDE] + [f"{prefix}-{kind}" for kind in entity_types for prefix in ("B", "I")]


def split_tag(tag: str) -> tuple[str, str | None]:
    """"B-PER" -> ("B", "PER"); "O" -> ("O", None). Raises ValueError for anything else."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in ("B", "I") or not kind:
        raise ValueError(f"not an IOB tag: {tag!r} (expected O, B-TYPE or I-TYPE)")
    return prefix, kind


def to_iob2(tags: list[str]) -> list[str]:
    """Normalises IOB1 (I- starts an entity unless it continues one of its type) to IOB2.

    IOB2 input comes back unchanged.
    """
    result = []
    previous = None  # entity type of the previous tag, None after O
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "I" and kind != previous:
            tag = f"B-{kind}"
        result.append(tag)
        previous = kind
    return result
