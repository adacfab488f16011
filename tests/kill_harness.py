"""``python -m tests.kill_harness <runner flags>``: the runner, with a hook for kill tests.

With ``LIMIT_TEST_PAUSE_IN_SAVE=<dir>``, every checkpoint write pauses after
TensorFlow has written the checkpoint's files and before the checkpoint
manager records them, leaving a marker file ``in-save-<epoch>`` in ``<dir>``:
a test that sees the marker kills the process inside the write.
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


if __name__ == "__main__":
    if os.environ.get("LIMIT_TEST_PAUSE_IN_SAVE"):
        _pause_inside_checkpoint_writes(os.environ["LIMIT_TEST_PAUSE_IN_SAVE"])
    from limit_tf import main

    main.run()
