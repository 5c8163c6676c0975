"""BERT's fine-tuning optimizer: AdamW with linear warm-up then linear decay to zero.

`LinearWarmupDecay` is the schedule of `transformers.get_linear_schedule_with_warmup` (the
Hugging Face Trainer default), step for step: the learning rate at optimizer step `s` is
`peak * s / warmup_steps` during warm-up (so 0 at the very first step), then
`peak * (total_steps - s) / (total_steps - warmup_steps)`, never below 0.

Example:

>>> schedule = LinearWarmupDecay(peak_learning_rate=1e-3, total_steps=10, warmup_steps=2)
>>> [round(float(schedule(step)), 6) for step in (0, 1, 2, 6, 10)]
[0.0, 0.0005, 0.001, 0.0005, 0.0]
>>> optimizer = build_adamw(peak_learning_rate=5e-5, total_steps=100, warmup_fraction=0.1)
"""

from __future__ import annotations

import math

import keras
from keras import ops

# Variables whose name contains one of these get no weight decay (biases, LayerNorm).
NO_DECAY_VARIABLE_NAMES = ("bias", "gamma", "beta")


@keras.saving.register_keras_serializable(package="bert_keras")
class AdamW(keras.optimizers.AdamW):
    """Keras AdamW with epsilon where PyTorch's `torch.optim.AdamW` (and BERT's) puts it.

    Keras's Adam adds epsilon to sqrt(v) before bias correction ("epsilon hat" in Kingma &
    Ba): `lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)`. PyTorch adds
    it after: `lr / (1 - beta_1^t) * m / (sqrt(v) / sqrt(1 - beta_2^t) + epsilon)`, so its
    epsilon is `1 / sqrt(1 - beta_2^t)` times smaller relative to the gradient's scale
    (about 22x at step 2, still 2x at step 300). With BERT's epsilon of 1e-6 and gradients
    clipped to a global norm of 1, Keras's form damps the updates of every weight whose
    gradient is small for the whole of a short fine-tuning run. Same arguments, same
    weight decay and clipping as `keras.optimizers.AdamW`; only the update differs.
    """

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The step's scalars (learning rate, bias corrections, weight-decay factor) are the
        # same for every variable: computed once here instead of once per variable in
        # `update_step`. In a traced train step that removes about a third of the
        # optimizer's graph ops (~100 variables for MiniLM), which cuts graph tracing and
        # Grappler time on the first step; the arithmetic is unchanged.
        self._step_scalars = self._compute_step_scalars(learning_rate)
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_scalars = None

    def _compute_step_scalars(self, learning_rate) -> dict:
        lr = ops.cast(learning_rate, "float32")
        local_step = ops.cast(self.iterations + 1, "float32")
        bias_correction_1 = 1 - ops.power(ops.cast(self.beta_1, "float32"), local_step)
        bias_correction_2 = 1 - ops.power(ops.cast(self.beta_2, "float32"), local_step)
        return {
            "step_size": ops.divide(lr, bias_correction_1),
            "sqrt_bias_correction_2": ops.sqrt(bias_correction_2),
            # Decoupled weight decay, `variable -= variable * lr * weight_decay`, as Keras's
            # `_apply_weight_decay` and torch's AdamW (applied in `update_step`).
            "decay": ops.multiply(lr, ops.cast(self.weight_decay or 0.0, "float32")),
        }

    def _apply_weight_decay(self, variables):
        # Applied per variable in `update_step` with the step's factor computed once, rather
        # than Keras's loop re-evaluating the learning-rate schedule for every variable.
        # Keras calls this just before `_backend_update_step` on the same variables, so the
        # result is the same: each variable is decayed, then gets its Adam update.
        if self.amsgrad:
            super()._apply_weight_decay(variables)

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:  # not used here; keep Keras's own form rather than half-port it
            return super().update_step(gradient, variable, learning_rate)
        scalars = getattr(self, "_step_scalars", None)
        if scalars is None:  # called outside `_backend_update_step` (e.g. directly)
            scalars = self._compute_step_scalars(learning_rate)
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        if self.weight_decay and self._use_weight_decay(variable):
            self.assign_sub(variable, ops.multiply(variable, ops.cast(scalars["decay"], dtype)))
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(
            v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2)
        )
        denominator = ops.add(
            ops.divide(ops.sqrt(v), ops.cast(scalars["sqrt_bias_correction_2"], dtype)),
            self.epsilon,
        )
        self.assign_sub(
            variable,
            ops.divide(ops.multiply(m, ops.cast(scalars["step_size"], dtype)), denominator),
        )


@keras.saving.register_keras_serializable(package="bert_keras")
class LinearWarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak_learning_rate`, then linear decay to 0 at `total_steps`.

    Args:
        peak_learning_rate: the learning rate at the end of warm-up.
        total_steps: the number of optimizer steps of the whole training.
        warmup_steps: the number of warm-up steps (0 for none).
    """

    def __init__(self, peak_learning_rate: float, total_steps: int, warmup_steps: int = 0):
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"need 0 <= warmup_steps <= total_steps and total_steps >= 1, got "
                f"warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        fraction = ops.where(step < self.warmup_steps, warmup, ops.maximum(decay, 0.0))
        return self.peak_learning_rate * fraction

    def get_config(self) -> dict:
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
        }


def build_adamw(
    peak_learning_rate: float,
    total_steps: int,
    warmup_fraction: float = 0.1,
    weight_decay: float = 0.01,
    epsilon: float = 1e-6,
    global_clipnorm: float | None = 1.0,
) -> AdamW:
    """AdamW (PyTorch's epsilon, see `AdamW`) on a `LinearWarmupDecay` schedule; no weight
    decay on biases and LayerNorm.

    `warmup_steps = ceil(total_steps * warmup_fraction)`, as Hugging Face's `warmup_ratio`.
    """
    schedule = LinearWarmupDecay(
        peak_learning_rate, total_steps, math.ceil(total_steps * warmup_fraction)
    )
    optimizer = AdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=epsilon,
        global_clipnorm=global_clipnorm,
    )
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_VARIABLE_NAMES))
    return optimizer
