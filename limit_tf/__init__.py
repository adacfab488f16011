"""limit-tf: training classifiers on noisy labels with LIMIT, in Keras.

LIMIT is the method of Harutyunyan, Reing, Ver Steeg and Galstyan,
"Improving Generalization by Controlling Label-Noise Information in Neural
Network Weights" (ICML 2020).

Importing the package registers its Keras classes (the models, losses and
layers), so that ``keras.models.load_model`` opens a run's ``best.keras``
after ``import limit_tf``. The modules that describe experiments
(``config``, ``methods``, ``workdir``, ``paper``, ``report``) use no
TensorFlow themselves. Unless ``TF_CPP_MIN_LOG_LEVEL`` is set, it is set to
2 before TensorFlow is imported (TensorFlow's C++ INFO lines hidden), and
the INFO lines that TensorFlow writes while it is imported regardless of
that variable (on CPUs where it turns oneDNN on: "oneDNN custom operations
are on", behind absl's "All log messages before absl::InitializeLog()")
are dropped; anything else it writes then is kept.
"""

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


def _import_tensorflow_quietly() -> None:
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


_import_tensorflow_quietly()

__version__ = "0.2.0"

from limit_tf import gradient_noise, losses, models, soft_reg  # noqa: E402, F401  (registers the Keras classes)
from limit_tf.limit import LimitModel  # noqa: E402

__all__ = ["LimitModel"]
