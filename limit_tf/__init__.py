"""limit-tf: training classifiers on noisy labels with LIMIT, in Keras.

LIMIT is the method of Harutyunyan, Reing, Ver Steeg and Galstyan,
"Improving Generalization by Controlling Label-Noise Information in Neural
Network Weights" (ICML 2020).

Importing the package registers its Keras classes (the models, losses and
layers), so that ``keras.models.load_model`` opens a run's ``best.keras``
after ``import limit_tf``. The modules that describe experiments
(``config``, ``methods``, ``workdir``, ``paper``, ``report``) use no
TensorFlow themselves. Unless ``TF_CPP_MIN_LOG_LEVEL`` is set, it is set to
2 before TensorFlow is imported (TensorFlow's C++ INFO lines hidden).
"""

import os

# TensorFlow's C++ INFO lines at start-up (CPU features, oneDNN) are noise here; warnings
# and errors still show. A value the user set is kept.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.2.0"

from limit_tf import gradient_noise, losses, models, soft_reg  # noqa: E402, F401  (registers the Keras classes)
from limit_tf.limit import LimitModel  # noqa: E402

__all__ = ["LimitModel"]
