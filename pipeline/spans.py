"""Which ingested spans a run trains and evaluates on (`data.rolling_spans`).

Each run's ExampleGen ingests the newest span of the input patterns (TFX's `{SPAN}`); a
resolver then picks, from everything ExampleGen has ingested in earlier runs too (ML
Metadata), the newest N spans: TFX's rolling range. TFX's own `SpanRangeStrategy` returns
every artifact of a span, so a span ingested twice (a run with `--no-cache`, a changed
ingestion setting) would be trained on twice; `LatestSpansStrategy` keeps one artifact per
span: its newest version, then the newest ingestion.

A resolver's input is not limited to the current run, unlike a component's: that is why the
rolling range is a `tfx.dsl.Resolver` node and not a resolver function on ExampleGen's output.
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.dsl.components.common import resolver


def _int_property(artifact: types.Artifact, name: str) -> int:
    # TFX stores span/version as int custom properties (strings in old pipelines).
    text = artifact.get_string_custom_property(name)
    return int(text) if text else artifact.get_int_custom_property(name)


def newest_spans(artifacts: list[types.Artifact], num_spans: int) -> list[types.Artifact]:
    """One artifact per span (the highest version, then the newest), for the newest
    `num_spans` spans, oldest span first."""
    by_span: dict[int, types.Artifact] = {}
    for artifact in artifacts:
        span = _int_property(artifact, "span")
        key = (_int_property(artifact, "version"), artifact.id)
        best = by_span.get(span)
        if best is None or key > (_int_property(best, "version"), best.id):
            by_span[span] = artifact
    return [by_span[span] for span in sorted(by_span)[-num_spans:]]


class LatestSpansStrategy(resolver.ResolverStrategy):
    """Resolves each input channel to its newest `num_spans` spans (see `newest_spans`).

    Example:

        tfx.dsl.Resolver(
            strategy_class=LatestSpansStrategy,
            config={"num_spans": 2},
            examples=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                                     producer_component_id=example_gen.id,
                                     output_key="examples"),
        ).with_id("rolling_spans_resolver")
    """

    def __init__(self, num_spans: int):
        if num_spans < 1:
            raise ValueError(f"num_spans must be 1 or more, got {num_spans}")
        self._num_spans = num_spans

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[types.Artifact]]
                          ) -> dict[str, list[types.Artifact]] | None:
        resolved = {key: newest_spans(artifacts, self._num_spans)
                    for key, artifacts in input_dict.items()}
        return resolved if all(resolved.values()) else None
