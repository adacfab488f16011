"""``python -m tests.kill_harness <runner flags>``: the runner, with a hook for kill tests.

With ``LIMIT_TEST_PAUSE_IN_SAVE=<dir>``, every checkpoint write pauses after
TensorFlow has written the checkpoint's files and before the checkpoint
manager records them, leaving a marker file ``in-save-<epoch>`` in ``<dir>``:
a test that sees the marker kills the process inside the write.

With ``LIMIT_TEST_DISK_FULL_AT=<epoch>``, the checkpoint write of that epoch
fails as TensorFlow's does on a full disk: its temporary folder is left
half-written and a ``ResourceExhaustedError`` ("No space left on device")
is raised.
"""

import json
import os
import time
from pathlib import Path


def _pause_inside_checkpoint_writes(marker_dir: str) -> None:
    import tensorflow as tf

    from limit_tf import checkpoint

    def save(self, epoch: int, state: dict) -> None:
        def pause(_path):
            Path(marker_dir, f"in-save-{epoch}").touch()
            time.sleep(5)

        self.directory.mkdir(parents=True, exist_ok=True)
        self._epoch.assign(epoch)
        self._state.assign(json.dumps(state))
        self.manager.save(
            checkpoint_number=epoch, options=tf.train.CheckpointOptions(experimental_write_callbacks=[pause])
        )

    checkpoint.TrainingCheckpoint.save = save


def _disk_full_at(epoch: int) -> None:
    import tensorflow as tf

    from limit_tf import checkpoint

    original = tf.train.CheckpointManager.save

    def save(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == epoch:
            temp = Path(self.directory, f"{checkpoint.PREFIX}-{epoch}_temp")
            temp.mkdir(parents=True, exist_ok=True)
            (temp / "part-00000-of-00001.data-00000-of-00001.tempstate").write_bytes(b"\0" * 100)
            raise tf.errors.ResourceExhaustedError(None, None, f"{temp}; No space left on device")
        return original(self, checkpoint_number=checkpoint_number, **kwargs)

    tf.train.CheckpointManager.save = save


if __name__ == "__main__":
    if os.environ.get("LIMIT_TEST_DISK_FULL_AT"):
        _disk_full_at(int(os.environ["LIMIT_TEST_DISK_FULL_AT"]))
    if os.environ.get("LIMIT_TEST_PAUSE_IN_SAVE"):
        _pause_inside_checkpoint_writes(os.environ["LIMIT_TEST_PAUSE_IN_SAVE"])
    from limit_tf import main

    main.run()
