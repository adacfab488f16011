"""The training state of an unfinished run, saved at every epoch boundary.

One ``tf.train.Checkpoint`` holds everything a resumed run needs, so that
restoring any checkpoint gives a consistent state: the model (both networks,
batch-norm statistics), its optimizers, the epoch, the protocol's state as
JSON (model selection and the per-epoch metrics rows) and a copy of the best
epoch's weights. ``tf.train.CheckpointManager`` rotates them (the newest two
are kept) and writes its index atomically after the files; a checkpoint that
is damaged anyway (a kill inside the write, a truncated copy) is skipped with
a warning and the one before it is used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import keras
import tensorflow as tf
from absl import logging

KEEP = 2
PREFIX = "epoch"


def optimizers_of(model: keras.Model) -> dict:
    """The model's optimizers by checkpoint key (one, or two for models with a separate q optimizer)."""
    found = {"optimizer": model.optimizer}
    extra = getattr(model, "predictor_optimizer", None)
    if extra is not None and extra is not model.optimizer:
        found["predictor_optimizer"] = extra
    return found


class TrainingCheckpoint:
    """Saves and restores a run's training state in ``directory``.

    Args:
      model: the compiled model (under a strategy: created in its scope).
      directory: where the checkpoints go (one directory per worker).
      keep: how many of the newest checkpoints to keep.
    """

    def __init__(self, model: keras.Model, directory: str | os.PathLike, *, keep: int = KEEP):
        self.model = model
        self.directory = Path(directory)
        with tf.device("/cpu:0"):
            self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self._state = tf.Variable("", dtype=tf.string, trainable=False, name="protocol_state")
            self._best = [tf.Variable(w, trainable=False, name=f"best_{i}") for i, w in enumerate(model.get_weights())]
        self._checkpoint = tf.train.Checkpoint(
            model=model, epoch=self._epoch, state=self._state, best=self._best, **optimizers_of(model)
        )
        self._manager = None

    @property
    def manager(self) -> tf.train.CheckpointManager:
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(
                self._checkpoint, str(self.directory), max_to_keep=KEEP, checkpoint_name=PREFIX
            )
        return self._manager

    # ------------------------------------------------------------------
    # Best weights.

    def remember_best(self) -> None:
        """Copies the model's current weights into the checkpoint's best-weights slot."""
        for slot, value in zip(self._best, self.model.get_weights(), strict=True):
            slot.assign(value)

    def load_best(self, model: keras.Model | None = None) -> None:
        """Puts the remembered best weights into ``model`` (default: the checkpointed one)."""
        (model or self.model).set_weights([slot.numpy() for slot in self._best])

    # ------------------------------------------------------------------
    # Saving and restoring.

    def save(self, epoch: int, state: dict) -> None:
        """Saves the state after ``epoch`` finished epochs (``epoch`` = the next one to run)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._epoch.assign(epoch)
        self._state.assign(json.dumps(state))
        try:
            self.manager.save(checkpoint_number=epoch)
        except BaseException:
            self.remove_temporaries()  # a full disk or a read-only directory leaves TF's "_temp" folder
            raise

    def remove_temporaries(self) -> None:
        """Removes what an interrupted checkpoint write leaves behind (``<prefix>-<epoch>_temp/``)."""
        if self.directory.is_dir():
            for tmp in self.directory.glob(f"{PREFIX}-*_temp*"):
                shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)

    def epochs(self) -> list[int]:
        """The epochs of the checkpoints on disk, newest last."""
        paths = []
        try:
            paths = list(self.manager.checkpoints)
        except (tf.errors.OpError, ValueError) as e:  # an unreadable index: look at the files
            logging.warning("checkpoint index in %s unreadable (%s); scanning the files.", self.directory, e)
        found = {_epoch_of(p) for p in paths} | {_epoch_of(str(p)[: -len(".index")]) for p in self._index_files()}
        return sorted(e for e in found if e is not None)

    def _index_files(self) -> list[Path]:
        return sorted(self.directory.glob(f"{PREFIX}-*.index")) if self.directory.is_dir() else []

    def restore(self, epoch: int) -> dict:
        """Restores the checkpoint of ``epoch``; returns its protocol state.

        Raises:
          tf.errors.OpError, ValueError, AssertionError, IndexError: it is missing or damaged.
        """
        path = str(self.directory / f"{PREFIX}-{epoch}")
        self._checkpoint.read(path).assert_existing_objects_matched()
        return json.loads(self._state.numpy().decode())

    def restore_newest(self, at_most: int | None = None) -> tuple[int, dict | None]:
        """Restores the newest readable checkpoint (of an epoch <= ``at_most``).

        Returns:
          ``(epoch, protocol state)``, or ``(0, None)`` when there is none.
        """
        self.remove_temporaries()
        initial = None
        for epoch in reversed(self.epochs()):
            if at_most is not None and epoch > at_most:
                continue
            initial = initial or [v.numpy() for v in self._variables()]
            try:
                state = self.restore(epoch)
            except Exception as e:  # noqa: BLE001 - a damaged file fails in many ways (OpError, IndexError, ...)
                # A failed read may have restored some variables: put them back.
                for variable, value in zip(self._variables(), initial, strict=True):
                    variable.assign(value)
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                logging.warning(
                    "checkpoint of epoch %d in %s is damaged (%s); trying an older one.", epoch, self.directory, reason
                )
                continue
            logging.info("restored epoch %d from %s", epoch, self.directory)
            return epoch, state
        if self.epochs():
            logging.warning("no readable checkpoint in %s: the run starts over.", self.directory)
        return 0, None

    def _variables(self) -> list:
        variables = [*self.model.weights, self._epoch, self._state, *self._best]
        for optimizer in optimizers_of(self.model).values():
            variables += list(optimizer.variables)
        return variables


def _epoch_of(path: str) -> int | None:
    match = re.search(rf"{PREFIX}-(\d+)$", str(path))
    return int(match.group(1)) if match else None
