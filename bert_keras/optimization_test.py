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
