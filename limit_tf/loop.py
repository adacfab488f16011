"""A distributed training loop for the strategies Keras' ``fit`` cannot run.

Keras 3.15's ``fit``/``evaluate`` fail under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585). :class:`DistributedTrainer` trains any compiled
Keras model, LIMIT included, with its *own* ``train_step`` and
``test_step`` run by ``strategy.run`` on a distributed dataset, so the
training math is exactly what ``fit`` runs; it works under every
``tf.distribute`` strategy (the runner uses it for ``--strategy=multi_worker``
and keeps ``fit`` for the single-host ones)::

    strategy = limit_tf.distribute.get_strategy("multi_worker")  # first thing in the program
    with strategy.scope():
        model = ...  # built and compiled
    trainer = limit_tf.loop.DistributedTrainer(model)
    checkpoint = limit_tf.checkpoint.TrainingCheckpoint(model, "ckpt" if trainer.is_chief else "ckpt/workers/...")
    start, _ = trainer.restore_checkpoint(checkpoint)  # 0, or the epoch to resume at
    train_ds, steps = limit_tf.data.training_stream(ds, batch_size=256, epochs=30, first_epoch=start)
    save = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: checkpoint.save(epoch + 1, {}))
    history = trainer.fit(train_ds, epochs=30, steps_per_epoch=steps, initial_epoch=start,
                          validation_data=val_ds, callbacks=[save])

Datasets yield **global** batches (every worker builds the same dataset);
each global batch is split into one contiguous slice per replica, the way
one device would see it, so N replicas with a global batch B take the same
step as one device with batch B (losses and LIMIT's injected gradient are
divided by the global batch). Logged metrics are global values (metric
variables are summed over replicas when read).

Callbacks run on every worker, but the chief decides whether to stop (its
``stop_training`` flag is broadcast), and an exception in any worker's
callbacks stops every worker, instead of leaving the others waiting forever
on a collective. Give file-writing
callbacks to the chief only, or point them at per-worker paths.

Fault tolerance: every worker keeps a
:class:`~limit_tf.checkpoint.TrainingCheckpoint` in its own directory (the
runner's :class:`limit_tf.callbacks.ProtocolState` saves it after every
epoch); :meth:`DistributedTrainer.restore_checkpoint` agrees with the other
workers on the newest epoch all of them have, so a run whose workers were
killed at different moments resumes consistently. LIMIT's warm-up is inside
its ``train_step``: the loop knows nothing of methods.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from limit_tf.checkpoint import TrainingCheckpoint


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the process that writes results (always, without a cluster)."""
    return bool(strategy.extended.should_checkpoint)


def task_name(strategy: tf.distribute.Strategy) -> str:
    """``<task type>_<index>`` of this process in the cluster, or ``local``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "local"
    return f"{resolver.task_type}_{resolver.task_id}"


def broadcast(strategy: tf.distribute.Strategy, value: int) -> int:
    """The chief's (replica 0's) integer, on every worker (collective)."""
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(value if ctx.replica_id_in_sync_group == 0 else 0, tf.int64)
    )
    return int(strategy.reduce("SUM", values, axis=None))


def gather(strategy: tf.distribute.Strategy, value: int) -> list[int]:
    """One integer per replica, from every worker, on every worker (collective)."""
    n = strategy.num_replicas_in_sync
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.one_hot(ctx.replica_id_in_sync_group, n, on_value=value, off_value=0, dtype=tf.int64)
    )
    return [int(v) for v in strategy.reduce("SUM", values, axis=None).numpy()]


def _split(tensor, part, parts):
    """Rows ``[part*b/parts, (part+1)*b/parts)`` of a batch of ``b`` rows."""
    b = tf.shape(tensor)[0]
    start = (part * b) // parts
    end = ((part + 1) * b) // parts
    return tensor[start:end]


class DistributedTrainer:
    """Trains a compiled Keras model with ``strategy.run`` over its ``train_step``.

    Args:
      model: a built, compiled Keras model, created under ``strategy.scope()``.
      strategy: the strategy (default: the one the model was created under).
    """

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy | None = None):
        if model.optimizer is None:
            raise ValueError("DistributedTrainer: compile the model first (it needs an optimizer).")
        self.model = model
        self.strategy = strategy or model.distribute_strategy
        self._train_fn = None
        self._test_fn = None

    @property
    def is_chief(self) -> bool:
        return is_chief(self.strategy)

    # ------------------------------------------------------------------
    # Data.

    def distribute(self, dataset: tf.data.Dataset):
        """A dataset of global batches -> a distributed dataset of per-replica slices."""
        replicas = self.strategy.num_replicas_in_sync

        def per_pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
            local = replicas // context.num_input_pipelines
            first = context.input_pipeline_id * local

            def parts(*batch):
                return tf.data.Dataset.range(local).map(
                    lambda r: tuple(_split(t, tf.cast(first + r, tf.int32), replicas) for t in batch)
                )

            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
            return dataset.flat_map(parts).with_options(options)

        return self.strategy.distribute_datasets_from_function(per_pipeline)

    # ------------------------------------------------------------------
    # Collective helpers: every worker must call them, in the same order.

    def broadcast(self, value: int) -> int:
        """The chief's (replica 0's) integer, on every worker."""
        return broadcast(self.strategy, value)

    def gather(self, value: int) -> list[int]:
        """One integer per replica, from every worker, on every worker."""
        return gather(self.strategy, value)

    def all_agree(self, ok: bool) -> bool:
        """True when ``ok`` holds on every worker."""
        return min(self.gather(int(bool(ok)))) == 1

    # ------------------------------------------------------------------
    # Steps.

    def _train(self, iterator) -> None:
        if self._train_fn is None:
            model, strategy = self.model, self.strategy

            @tf.function
            def train_fn(iterator):
                strategy.run(model.train_step, args=(next(iterator),))

            self._train_fn = train_fn
        self._train_fn(iterator)

    def _metrics(self, prefix: str = "") -> dict[str, float]:
        # Read in cross-replica context: metric variables are summed over replicas.
        return {prefix + k: float(np.asarray(v)) for k, v in self.model.get_metrics_result().items()}

    def evaluate(self, dataset: tf.data.Dataset) -> dict[str, float]:
        """The model's ``test_step`` metrics over a dataset of global batches (collective)."""
        if self._test_fn is None:
            model, strategy = self.model, self.strategy

            @tf.function
            def test_fn(batch):
                return strategy.run(model.test_step, args=(batch,))

            self._test_fn = test_fn
        self.model.reset_metrics()
        reported = None
        for batch in self.distribute(dataset):
            reported = self._test_fn(batch)
        metrics = self._metrics()
        # Only what test_step reports (LIMIT's q metrics are training-only).
        return {k: v for k, v in metrics.items() if reported is None or k in reported}

    # ------------------------------------------------------------------
    # Checkpoints.

    def restore_checkpoint(self, checkpoint: TrainingCheckpoint) -> tuple[int, dict | None]:
        """Restores the newest epoch every worker can read (collective).

        Every worker restores its newest readable checkpoint; if they
        disagree, all go back to the oldest of those epochs, which every
        worker must still have (two are kept).

        Returns:
          ``(epoch, protocol state)``; ``(0, None)`` for a fresh run.

        Raises:
          RuntimeError: the workers have no common checkpoint (their
            directories were lost or belong to different runs).
        """
        epoch, state = checkpoint.restore_newest()
        newest = self.gather(epoch)
        target = min(newest)
        if target != epoch:
            logging.warning(
                "the workers' newest checkpoints are at epochs %s; all resume from epoch %d, the newest they share.",
                newest,
                target,
            )
            epoch, state = checkpoint.restore_newest(at_most=target) if target else (0, None)
        if not self.all_agree(epoch == target):
            raise RuntimeError(
                f"the workers cannot resume together: their newest checkpoints are at epochs {newest} and this "
                f"worker ({task_name(self.strategy)}) has {checkpoint.epochs() or 'none'} in {checkpoint.directory}; "
                "delete the checkpoint directories to start over."
            )
        return epoch, state

    # ------------------------------------------------------------------
    # The loop.

    def fit(
        self,
        train: tf.data.Dataset,
        *,
        epochs: int,
        steps_per_epoch: int,
        initial_epoch: int = 0,
        validation_data: tf.data.Dataset | None = None,
        callbacks=(),
    ) -> dict[str, list[float]]:
        """Trains epochs ``initial_epoch .. epochs - 1``; returns the per-epoch logs.

        Args:
          train: global batches, starting at ``initial_epoch`` (at least
            ``steps_per_epoch`` per epoch; e.g. :func:`limit_tf.data.training_stream`).
          epochs, steps_per_epoch, initial_epoch: as in ``fit``.
          validation_data: global batches evaluated after every epoch
            (logged with a ``val_`` prefix).
          callbacks: Keras callbacks (epoch and train hooks are called).
        """
        model = self.model
        callback_list = keras.callbacks.CallbackList(list(callbacks), model=model, epochs=epochs, steps=steps_per_epoch)
        history: dict[str, list[float]] = {}
        iterator = iter(self.distribute(train))
        model.stop_training = False
        callback_list.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            model.reset_metrics()
            for step in range(steps_per_epoch):
                self._train(iterator)
                callback_list.on_train_batch_end(step)
            logs = self._metrics()
            if validation_data is not None:
                logs.update({"val_" + k: v for k, v in self.evaluate(validation_data).items()})
            error = None
            try:
                callback_list.on_epoch_end(epoch, logs)
            except Exception as e:  # noqa: BLE001 - re-raised below, once every worker knows
                error = e
            codes = self.gather(2 if error is not None else int(bool(model.stop_training)))
            if error is not None:
                raise error
            if 2 in codes:
                raise RuntimeError(
                    f"another worker failed in epoch {epoch + 1} (replica {codes.index(2)}); see its log."
                )
            verdict = codes[0]  # the chief (replica 0) decides whether to stop
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            if verdict == 1:
                break
        callback_list.on_train_end(logs=None)
        return history
