"""LatestSpansStrategy: one artifact per span, the newest N spans."""

from __future__ import annotations

import pytest
from tfx.types import standard_artifacts

from pipeline.spans import LatestSpansStrategy, newest_spans


def _examples(artifact_id: int, span: int, version: int = 0):
    artifact = standard_artifacts.Examples()
    artifact.id = artifact_id
    artifact.set_int_custom_property("span", span)
    artifact.set_int_custom_property("version", version)
    return artifact


def _spans_and_ids(artifacts) -> list[tuple[int, int]]:
    return [(a.get_int_custom_property("span"), a.id) for a in artifacts]


def test_newest_spans_keeps_one_artifact_per_span():
    artifacts = [
        _examples(1, span=1),
        _examples(2, span=2),
        _examples(3, span=2),  # span 2 ingested again (e.g. --no-cache): the newer one counts
        _examples(4, span=3, version=1),
        _examples(5, span=3, version=0),  # an older version ingested later loses to version 1
    ]
    assert _spans_and_ids(newest_spans(artifacts, 2)) == [(2, 3), (3, 4)]
    assert _spans_and_ids(newest_spans(artifacts, 5)) == [(1, 1), (2, 3), (3, 4)]
    assert _spans_and_ids(newest_spans(artifacts[:1], 2)) == [(1, 1)]  # first run: one span


def test_strategy_resolves_each_channel_and_skips_when_empty():
    strategy = LatestSpansStrategy(num_spans=1)
    resolved = strategy.resolve_artifacts(None, {"examples": [_examples(1, 1), _examples(2, 4)]})
    assert _spans_and_ids(resolved["examples"]) == [(4, 2)]
    assert strategy.resolve_artifacts(None, {"examples": []}) is None
    with pytest.raises(ValueError, match="num_spans must be 1 or more"):
        LatestSpansStrategy(num_spans=0)
