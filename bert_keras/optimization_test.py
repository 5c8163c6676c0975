import keras
import numpy as np
import pytest
import torch  # torch and transformers are pinned by requirements-dev.lock: no silent skip
import transformers

from bert_keras.optimization import LinearWarmupDecay, build_adamw


@pytest.mark.parametrize("total, warmup", [(63, 7), (10, 0), (5, 5)])
def test_schedule_matches_transformers(total, warmup):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=5e-5)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, warmup, total)
    expected = []
    for _ in range(total + 2):
        expected.append(optimizer.param_groups[0]["lr"])  # the lr the next step uses
        optimizer.step()
        scheduler.step()
    schedule = LinearWarmupDecay(5e-5, total, warmup)
    got = [float(schedule(step)) for step in range(total + 2)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-12)


def test_config_round_trip_and_validation():
    schedule = LinearWarmupDecay(1e-3, 100, 10)
    clone = LinearWarmupDecay.from_config(schedule.get_config())
    assert clone.get_config() == schedule.get_config()
    assert keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)).get_config() == schedule.get_config()
    with pytest.raises(ValueError):
        LinearWarmupDecay(1e-3, 10, 11)


def test_adamw_excludes_biases_and_layer_norms_from_weight_decay():
    dense = keras.layers.Dense(2)
    norm = keras.layers.LayerNormalization()
    dense.build((None, 2))
    norm.build((None, 2))
    optimizer = build_adamw(5e-5, total_steps=100, warmup_fraction=0.1)
    assert optimizer.global_clipnorm == 1.0 and optimizer.weight_decay == 0.01
    decayed = {v.path: optimizer._use_weight_decay(v) for v in dense.weights + norm.weights}
    assert decayed == {
        dense.kernel.path: True, dense.bias.path: False, norm.gamma.path: False,
        norm.beta.path: False,
    }
    assert optimizer._learning_rate.warmup_steps == 10


def test_adamw_steps_match_torch_adamw():
    # Small gradients, where Keras's own Adam (epsilon added before bias correction) moves
    # the weights up to ~20x less than torch in the first steps; ours must match torch.
    rng = np.random.default_rng(0)
    kernel0 = rng.normal(size=(3, 4)).astype("float32")
    bias0 = rng.normal(size=(4,)).astype("float32")
    gradients = [(rng.normal(size=(3, 4)) * scale, rng.normal(size=(4,)) * scale)
                 for scale in (1e-5, 3e-6, 1e-4, 1e-6, 1e-5, 1.0)]

    kernel = torch.nn.Parameter(torch.tensor(kernel0))
    bias = torch.nn.Parameter(torch.tensor(bias0))
    torch_optimizer = torch.optim.AdamW(
        [{"params": [kernel], "weight_decay": 0.01}, {"params": [bias], "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.999), eps=1e-6)
    scheduler = transformers.get_linear_schedule_with_warmup(torch_optimizer, 2, 8)

    def dense_layer():
        dense = keras.layers.Dense(4)
        dense.build((None, 3))
        dense.kernel.assign(kernel0)
        dense.bias.assign(bias0)
        return dense

    dense, stock_dense = dense_layer(), dense_layer()
    optimizer = build_adamw(1e-3, total_steps=8, warmup_fraction=0.25, global_clipnorm=None)
    stock = keras.optimizers.AdamW(learning_rate=optimizer._learning_rate, weight_decay=0.01,
                                   epsilon=1e-6)
    stock.exclude_from_weight_decay(var_names=["bias"])
    stock_error = 0.0
    for kernel_gradient, bias_gradient in gradients:
        kernel.grad = torch.tensor(kernel_gradient, dtype=torch.float32)
        bias.grad = torch.tensor(bias_gradient, dtype=torch.float32)
        torch_optimizer.step()
        scheduler.step()
        for keras_optimizer, layer in ((optimizer, dense), (stock, stock_dense)):
            keras_optimizer.apply(
                [kernel_gradient.astype("float32"), bias_gradient.astype("float32")],
                [layer.kernel, layer.bias])
        # Within 1% of a step of the peak learning rate.
        np.testing.assert_allclose(dense.kernel.numpy(), kernel.detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(dense.bias.numpy(), bias.detach().numpy(), atol=1e-5)
        stock_error = max(stock_error,
                          np.abs(stock_dense.kernel.numpy() - kernel.detach().numpy()).max())
    # Keras's own AdamW is far off (a third of a peak-rate step): what this AdamW is for.
    assert stock_error > 3e-4


def test_adamw_evaluates_the_schedule_once_per_step(monkeypatch):
    # Keras's AdamW evaluates the learning-rate schedule again for each decayed variable
    # (weight decay) and builds the bias corrections per variable; ours computes a step's
    # scalars once, which keeps a traced train step's graph small (faster first step).
    layers = [keras.layers.Dense(4) for _ in range(5)]
    for layer in layers:
        layer.build((None, 4))
    variables = [v for layer in layers for v in layer.trainable_variables]
    optimizer = build_adamw(1e-3, total_steps=10, warmup_fraction=0.2)
    calls = []
    schedule_call = LinearWarmupDecay.__call__

    def counting_call(schedule, step):
        calls.append(step)
        return schedule_call(schedule, step)

    monkeypatch.setattr(LinearWarmupDecay, "__call__", counting_call)
    optimizer.apply([np.ones(v.shape, "float32") for v in variables], variables)
    assert len(calls) == 1
