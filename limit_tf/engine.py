"""How a run's epochs are executed: Keras' ``fit``, or the distributed loop.

The protocol (:mod:`limit_tf.train`) is written once over this small
interface; :class:`KerasEngine` runs it with ``model.fit`` (one device or
``MirroredStrategy``), :class:`DistributedEngine` with
:class:`~limit_tf.loop.DistributedTrainer` (``MultiWorkerMirroredStrategy``,
where Keras' ``fit`` fails, keras-team/keras#20585). Every worker of a
multi-worker run calls the same methods in the same order (several are
collective).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from limit_tf import loop
from limit_tf.checkpoint import TrainingCheckpoint


class KerasEngine:
    """One process: Keras' ``fit`` and ``evaluate``."""

    is_chief = True
    task = "local"

    def __init__(self, model: keras.Model):
        self.model = model

    def broadcast(self, value: int) -> int:
        return int(value)

    def gather(self, value: int) -> list[int]:
        return [int(value)]

    def restore(self, checkpoint: TrainingCheckpoint) -> tuple[int, dict | None]:
        return checkpoint.restore_newest()

    def fit(self, train, *, epochs: int, steps_per_epoch: int, initial_epoch: int, validation_data, callbacks) -> None:
        self.model.fit(
            train,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            initial_epoch=initial_epoch,
            validation_data=validation_data,
            callbacks=list(callbacks),
            shuffle=False,  # the stream is already shuffled, per epoch
            verbose=0,
        )

    def evaluate(self, dataset: tf.data.Dataset) -> dict[str, float]:
        return {k: float(v) for k, v in self.model.evaluate(dataset, verbose=0, return_dict=True).items()}


class DistributedEngine:
    """Every worker of a ``MultiWorkerMirroredStrategy`` cluster: the distributed loop."""

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy):
        self.trainer = loop.DistributedTrainer(model, strategy)
        self.model = model
        self.is_chief = loop.is_chief(strategy)
        self.task = loop.task_name(strategy)

    def broadcast(self, value: int) -> int:
        return self.trainer.broadcast(int(value))

    def gather(self, value: int) -> list[int]:
        return self.trainer.gather(int(value))

    def restore(self, checkpoint: TrainingCheckpoint) -> tuple[int, dict | None]:
        return self.trainer.restore_checkpoint(checkpoint)

    def fit(self, train, *, epochs: int, steps_per_epoch: int, initial_epoch: int, validation_data, callbacks) -> None:
        self.trainer.fit(
            train,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            initial_epoch=initial_epoch,
            validation_data=validation_data,
            callbacks=list(callbacks),
        )

    def evaluate(self, dataset: tf.data.Dataset) -> dict[str, float]:
        return self.trainer.evaluate(dataset)
