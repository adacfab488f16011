"""limit-tf: training classifiers on noisy labels with LIMIT, in Keras.

LIMIT is the method of Harutyunyan, Reing, Ver Steeg and Galstyan,
"Improving Generalization by Controlling Label-Noise Information in Neural
Network Weights" (ICML 2020).
"""

__version__ = "0.1.0"

from limit_tf.limit import LimitModel  # noqa: E402

__all__ = ["LimitModel"]
