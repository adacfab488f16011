"""How a run's epochs are executed, and who decides: one engine per strategy.

The protocol (:mod:`limit_tf.train`) is written once over this small
interface and never asks which strategy it runs under.
:class:`KerasEngine` runs it with ``model.fit`` (one device or
``MirroredStrategy``); :class:`DistributedEngine` with
:class:`~limit_tf.loop.DistributedTrainer` (``MultiWorkerMirroredStrategy``,
where Keras' ``fit`` fails, keras-team/keras#20585). An engine exists before
the model: it says whether this process is the chief (the one that writes
the run's files), where this process keeps its own files, and carries the
chief's decisions to the other workers (``broadcast``, ``gather``; no-ops in
one process). Every worker of a multi-worker run calls the same methods in
the same order (several are collective).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from limit_tf import loop, workdir
from limit_tf.checkpoint import TrainingCheckpoint


def for_strategy(strategy: tf.distribute.Strategy) -> KerasEngine | DistributedEngine:
    """The engine that runs under ``strategy``."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return DistributedEngine(strategy)
    return KerasEngine(strategy)


class KerasEngine:
    """One process: Keras' ``fit`` and ``evaluate``."""

    is_chief = True
    task = "local"

    def __init__(self, strategy: tf.distribute.Strategy | None = None):
        self.strategy = strategy or tf.distribute.get_strategy()
        self.model = None

    def bind(self, model: keras.Model) -> KerasEngine:
        """The model it trains (built under :attr:`strategy`)."""
        self.model = model
        return self

    def own_dir(self, run: workdir.RunDir) -> workdir.RunDir:
        """Where this process keeps its checkpoints: the run's directory on the chief."""
        return run

    def broadcast(self, value: int) -> int:
        return int(value)

    def gather(self, value: int) -> list[int]:
        return [int(value)]

    def restore(self, checkpoint: TrainingCheckpoint) -> tuple[int, dict | None]:
        return checkpoint.restore_newest()

    def fit(self, train, *, epochs: int, steps_per_epoch: int, initial_epoch: int, callbacks) -> None:
        self.model.fit(
            train,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            initial_epoch=initial_epoch,
            callbacks=list(callbacks),
            shuffle=False,  # the stream is already shuffled, per epoch
            verbose=0,
        )

    def evaluate(self, dataset: tf.data.Dataset) -> dict[str, float]:
        return {k: float(v) for k, v in self.model.evaluate(dataset, verbose=0, return_dict=True).items()}


class DistributedEngine(KerasEngine):
    """Every worker of a ``MultiWorkerMirroredStrategy`` cluster: the distributed loop."""

    def __init__(self, strategy: tf.distribute.Strategy):
        super().__init__(strategy)
        self.is_chief = loop.is_chief(strategy)
        self.task = loop.task_name(strategy)
        self.trainer = None

    def bind(self, model: keras.Model) -> DistributedEngine:
        self.model = model
        self.trainer = loop.DistributedTrainer(model, self.strategy)
        return self

    def own_dir(self, run: workdir.RunDir) -> workdir.RunDir:
        """The run's directory on the chief; ``workers/<task>`` under it on the others."""
        return run if self.is_chief else workdir.RunDir(run.worker_dir(self.task))

    def broadcast(self, value: int) -> int:
        return loop.broadcast(self.strategy, int(value))

    def gather(self, value: int) -> list[int]:
        return loop.gather(self.strategy, int(value))

    def restore(self, checkpoint: TrainingCheckpoint) -> tuple[int, dict | None]:
        return self.trainer.restore_checkpoint(checkpoint)

    def fit(self, train, *, epochs: int, steps_per_epoch: int, initial_epoch: int, callbacks) -> None:
        self.trainer.fit(
            train, epochs=epochs, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch, callbacks=callbacks
        )

    def evaluate(self, dataset: tf.data.Dataset) -> dict[str, float]:
        return self.trainer.evaluate(dataset)
