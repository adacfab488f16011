"""Choosing a ``tf.distribute`` strategy by name.

- ``default``: one device.
- ``mirrored``: ``MirroredStrategy`` over all local GPUs (or the devices
  named); training goes through Keras' ``fit``.
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the cluster in
  ``TF_CONFIG`` (every local GPU of every worker); training goes through
  :class:`limit_tf.loop.DistributedTrainer`, since Keras' ``fit`` fails under
  it (keras-team/keras#20585). It must be created before any other
  TensorFlow operation runs in the process: call
  ``get_strategy("multi_worker")`` first thing (the runner does). It waits
  at most ``cluster_timeout`` seconds for every worker to join; a worker
  whose peers never come ends with a one-line error instead of waiting
  forever, and once the cluster is up SIGTERM stops a worker again
  (TensorFlow's coordination service would otherwise swallow it).

``batch_size`` is always the global batch, split across all replicas.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

import tensorflow as tf

from limit_tf.config import STRATEGY_NAMES, ConfigError, check_tf_config

STRATEGIES = STRATEGY_NAMES


def get_strategy(
    name: str = "default", devices: Sequence[str] = (), *, cluster_timeout: int = 600
) -> tf.distribute.Strategy:
    """Returns the strategy to build and train models under.

    Strategies are created once per process and reused: MirroredStrategy
    objects created one after another in one process (a sweep, a test
    session) collide on collective keys and abort.

    Args:
      name: ``default``, ``mirrored`` or ``multi_worker`` (see the module doc).
      devices: device names for ``mirrored``, e.g. ``("/gpu:0", "/gpu:1")``.
      cluster_timeout: ``multi_worker``: seconds to wait for every worker to join.

    Raises:
      ConfigError: an unknown name, a missing or malformed ``TF_CONFIG`` for
        ``multi_worker``, or TensorFlow already initialized.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored(tuple(devices))
    if name == "multi_worker":
        return _multi_worker(int(cluster_timeout))
    raise ConfigError(f"--strategy={name!r} is not allowed; allowed: {', '.join(STRATEGIES)}.")


def _canonical(device: str) -> str:
    """``/gpu:0``, ``GPU:0`` and ``/device:GPU:0`` name the same device: ``GPU:0``."""
    name = device.strip().split("device:")[-1].lstrip("/").upper()
    return name if ":" in name else f"{name}:0"


def check_devices(devices) -> None:
    """Refuses device names this machine does not have (instead of a silent fall-back to the CPU).

    Raises:
      ConfigError: a named device does not exist; the message lists those that do.
    """
    available = {_canonical(d.name): d.name for d in tf.config.list_logical_devices()}
    missing = [d for d in devices if _canonical(d) not in available]
    if missing:
        raise ConfigError(
            f"--devices={','.join(devices)}: {', '.join(missing)} does not exist on this machine; "
            f"available: {', '.join(sorted(available)) or 'none'}."
        )


@functools.cache
def _mirrored(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    check_devices(devices)
    return tf.distribute.MirroredStrategy(list(devices) or None)


@functools.cache
def _multi_worker(cluster_timeout: int) -> tf.distribute.MultiWorkerMirroredStrategy:
    tf_config = check_tf_config()
    task = tf_config["task"]
    peers = ", ".join(a for job in tf_config["cluster"].values() if isinstance(job, list) for a in job)
    disarm = _watchdog(
        cluster_timeout,
        f"this worker ({task['type']} {task.get('index', 0)}) could not reach every worker of $TF_CONFIG ({peers}) "
        f"within {cluster_timeout} s; start the same command on each of them (docs/distributed.md), "
        "or wait longer with --cluster_timeout.",
    )
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        # One collective: returns once every worker has joined.
        ones = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(1))
        strategy.reduce("SUM", ones, axis=None)
    except RuntimeError as e:
        if "program startup" not in str(e):
            raise
        raise ConfigError(
            "--strategy=multi_worker: TensorFlow already ran operations in this process; create the strategy "
            "first (limit_tf.distribute.get_strategy('multi_worker') before anything else)."
        ) from None
    finally:
        disarm()
    # TensorFlow's coordination service takes SIGTERM for itself; give it back, so that
    # a worker waiting for a dead peer can be stopped.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return strategy


_WATCHDOG = """
import os, select, signal, sys
pid, timeout, fd, message = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if not select.select([fd], [], [], timeout)[0]:
    print("error: " + message, file=sys.stderr, flush=True)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
"""


def _watchdog(timeout: float, message: str) -> Callable[[], None]:
    """Ends this process with ``message`` unless the returned function is called within ``timeout``.

    A separate process, because a worker waiting for its peers is blocked in
    TensorFlow's C++ code with the interpreter locked and SIGTERM taken: no
    thread or signal handler of this process would run.
    """
    read, write = os.pipe()
    subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout), str(read), message], pass_fds=(read,)
    )
    os.close(read)

    def disarm() -> None:
        os.close(write)  # the watchdog sees the pipe close and exits

    return disarm
