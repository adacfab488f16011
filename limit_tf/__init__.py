"""limit-tf: training classifiers on noisy labels with LIMIT, in Keras.

LIMIT is the method of Harutyunyan, Reing, Ver Steeg and Galstyan,
"Improving Generalization by Controlling Label-Noise Information in Neural
Network Weights" (ICML 2020).

Importing the package does not import TensorFlow: ``limit_tf.workdir``,
``config``, ``methods``, ``paper``, ``report`` and the data readers load
without it, and so do the command-line ``--help`` pages. TensorFlow comes
with the first use of something that needs it: ``limit_tf.LimitModel``
(PEP 562), a module such as ``limit_tf.train`` or ``limit_tf.models``.

Keras must know limit-tf's classes (models, losses, layers) to open a run's
``best.keras``: use :func:`load_model`, or import Keras before
``import limit_tf`` (the package then registers them at once), or call
:func:`register_keras_objects`.

Unless ``TF_CPP_MIN_LOG_LEVEL`` is set, it is set to 2 before TensorFlow is
imported (TensorFlow's C++ INFO lines hidden); :func:`import_tensorflow`
also drops the INFO lines that TensorFlow writes while it is imported
regardless of that variable (on CPUs where it turns oneDNN on: "oneDNN
custom operations are on", behind absl's "All log messages before
absl::InitializeLog()"); anything else it writes then is kept.
"""

import importlib
import importlib.util
import os
import re
import sys
import tempfile

# TensorFlow's C++ INFO lines at start-up (CPU features, oneDNN) are noise here; warnings
# and errors still show. A value the user set is kept.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_STARTUP_NOISE = re.compile(
    r"^(I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\))"
)


def import_tensorflow() -> None:
    """Imports TensorFlow with the C++ INFO lines it prints at import dropped from stderr (module docstring)."""
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"].strip() in ("", "0"):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                captured.seek(0)
                lines = captured.read().decode(errors="replace").splitlines(keepends=True)
                kept = "".join(line for line in lines if not _STARTUP_NOISE.match(line))
                if kept:
                    sys.stderr.write(kept)
                    sys.stderr.flush()
    finally:
        os.close(saved)


__version__ = "0.2.0"


def register_keras_objects() -> None:
    """Imports the modules that register limit-tf's Keras classes (models, losses, layers)."""
    import_tensorflow()
    from limit_tf import gradient_noise, limit, losses, models, soft_reg  # noqa: F401


def load_model(path, **kwargs):
    """``keras.models.load_model`` with limit-tf's classes registered (a run's ``best.keras``)."""
    register_keras_objects()
    import keras

    return keras.models.load_model(path, **kwargs)


def __getattr__(name: str):
    """``limit_tf.LimitModel`` and ``limit_tf.<module>`` on first use (PEP 562)."""
    if name == "LimitModel":
        register_keras_objects()
        from limit_tf.limit import LimitModel

        return LimitModel
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'limit_tf' has no attribute {name!r}")


if "keras" in sys.modules:  # Keras is loaded already: register at once, as limit-tf 0.2 did
    register_keras_objects()

__all__ = ["LimitModel", "load_model", "register_keras_objects"]
