"""The distributed loop in process, under a 2-replica MirroredStrategy on two logical CPUs."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from limit_tf import LimitModel, distribute, loop
from limit_tf.checkpoint import TrainingCheckpoint
from tests.conftest import REPO


def _net():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


def _limit(weights=None):
    model = LimitModel(_net(), _net(), predictor="gaussian", beta=2.0, warmup_steps=3)  # one epoch of 3 steps
    model.compile(keras.optimizers.Adam(1e-2))
    if weights is not None:
        model.set_weights(weights)
    return model


def _data(rng, n=96):
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = rng.integers(0, 4, n).astype(np.int32)
    return x, y


def test_trainer_two_replicas_equal_one_device(rng, tmp_path):
    x, y = _data(rng, n=97)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(30)  # 30, 30, 30, 7: the 7 split 3 + 4
    reference = _limit()
    weights = reference.get_weights()
    one = loop.DistributedTrainer(reference, tf.distribute.get_strategy())
    history_one = one.fit(ds.repeat(), epochs=3, steps_per_epoch=4, validation_data=ds)
    strategy = distribute.get_strategy("mirrored", ("/cpu:0", "/cpu:1"))
    with strategy.scope():
        model = _limit(weights)
    two = loop.DistributedTrainer(model, strategy)
    history_two = two.fit(ds.repeat(), epochs=3, steps_per_epoch=4, validation_data=ds)
    for a, b in zip(reference.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert history_one.keys() == history_two.keys()
    assert "val_accuracy" in history_two and "val_q_loss" not in history_two  # q metrics are training-only
    for key in history_one:  # global metrics, not one replica's
        np.testing.assert_allclose(history_one[key], history_two[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_trainer_restore_resumes_bit_identically(rng, tmp_path):
    x, y = _data(rng)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    straight = _limit()
    weights = straight.get_weights()
    loop.DistributedTrainer(straight).fit(ds.repeat(), epochs=4, steps_per_epoch=3)
    first = _limit(weights)
    saving = TrainingCheckpoint(first, tmp_path)
    save = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: saving.save(epoch + 1, {}))
    loop.DistributedTrainer(first).fit(ds.repeat(), epochs=2, steps_per_epoch=3, callbacks=[save])
    resumed = _limit()  # fresh weights: everything must come from the checkpoint
    trainer = loop.DistributedTrainer(resumed)
    start, _ = trainer.restore_checkpoint(TrainingCheckpoint(resumed, tmp_path))
    assert start == 2
    trainer.fit(ds.repeat(), epochs=4, steps_per_epoch=3, initial_epoch=start)
    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(resumed.optimizer.iterations) == int(straight.optimizer.iterations) == 4 * 3 - 3  # warm-up epoch


def test_trainer_warmup_freezes_the_classifier_only(rng):
    x, y = _data(rng)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model = _limit()
    clf, q = model.classifier.get_weights(), model.predictor_network.get_weights()
    trainer = loop.DistributedTrainer(model)
    trainer.fit(ds.repeat(), epochs=1, steps_per_epoch=3)  # the warm-up epoch
    for a, b in zip(clf, model.classifier.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(q, model.predictor_network.get_weights(), strict=True))
    assert int(model.optimizer.iterations) == 0
    trainer.fit(ds.repeat(), epochs=2, steps_per_epoch=3, initial_epoch=1)  # the step counter ends it
    assert int(model.optimizer.iterations) == 3
    assert any(not np.array_equal(a, b) for a, b in zip(clf, model.classifier.get_weights(), strict=True))


def test_trainer_stops_on_chief_request_and_reraises_callback_errors(rng):
    x, y = _data(rng)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)

    class StopAfterTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = epoch >= 1

    history = loop.DistributedTrainer(_limit()).fit(
        ds.repeat(), epochs=10, steps_per_epoch=2, callbacks=[StopAfterTwo()]
    )
    assert len(history["loss"]) == 2

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.DistributedTrainer(_limit()).fit(ds.repeat(), epochs=3, steps_per_epoch=1, callbacks=[Boom()])


def test_runner_rejects_multi_worker_without_tf_config(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "limit_tf.main", "--strategy=multi_worker", f"--workdir={tmp_path / 'w'}"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "TF_CONFIG" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "w").exists()
