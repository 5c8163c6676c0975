"""AtomicPusher: TFX's Pusher with an atomic, always-newer push to a local base path."""

from __future__ import annotations

from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from components.atomic_pusher import executor


class AtomicPusher(Pusher):
    """Same inputs, outputs and parameters as Pusher (filesystem destinations)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
