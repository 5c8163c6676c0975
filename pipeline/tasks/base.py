"""The interface every fine-tuning task implements, and the registry of tasks by name.

Importing this module (and a task module) must stay cheap: TFX, TFMA and TensorFlow are
imported inside the methods that build components, never at module level.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from pipeline.config import FinetuneConfig

TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: makes a task available to configs as `task: <cls.name>`."""
    if cls.name in TASKS:
        raise ValueError(f"task {cls.name!r} is registered twice")
    TASKS[cls.name] = cls
    return cls


def get_task(config_or_name: FinetuneConfig | str) -> Task:
    """The task object for a config (or a task name)."""
    name = config_or_name if isinstance(config_or_name, str) else config_or_name.task
    return TASKS[name]()


class Task(abc.ABC):
    """One fine-tuning task. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    config_class: ClassVar[type[FinetuneConfig]]
    # Dotted module with `preprocessing_fn` (Transform) and `run_fn` (Trainer).
    module: ClassVar[str]

    @abc.abstractmethod
    def example_gen(self, config: FinetuneConfig):
        """The TFX component that ingests the task's labelled data into train/eval splits."""

    @abc.abstractmethod
    def schema(self, config: FinetuneConfig):
        """The tensorflow_metadata `Schema` proto ExampleValidator checks the data against."""

    @abc.abstractmethod
    def module_config(self, config: FinetuneConfig) -> dict[str, Any]:
        """Task-specific entries of the Transform/Trainer `custom_config`."""

    @abc.abstractmethod
    def evaluator(self, config: FinetuneConfig, examples, model, baseline_model):
        """The component that evaluates the candidate and blesses it (or not).

        Its outputs must include `evaluation` (ModelEvaluation) and `blessing` (ModelBlessing,
        with TFX's `blessed` custom property), so the pusher and the latest-blessed resolver
        work for every task.
        """

    def extra_components(self, config: FinetuneConfig, trainer, evaluator) -> list:
        """Optional components after evaluation (e.g. bulk scoring)."""
        return []

    @abc.abstractmethod
    def read_evaluation(self, evaluation_uri: str) -> tuple[dict, dict, list[str]]:
        """(candidate metrics, baseline metrics, reasons it was not blessed) for the report."""
