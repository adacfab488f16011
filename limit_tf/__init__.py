"""limit-tf: training classifiers on noisy labels with LIMIT, in Keras.

LIMIT is the method of Harutyunyan, Reing, Ver Steeg and Galstyan,
"Improving Generalization by Controlling Label-Noise Information in Neural
Network Weights" (ICML 2020).

``limit_tf.LimitModel`` is imported on first use, so that the TensorFlow-free
modules (``config``, ``methods``, ``workdir``, ``data``'s numpy parts) load
without TensorFlow.
"""

__version__ = "0.2.0"

__all__ = ["LimitModel"]


def __getattr__(name):
    if name == "LimitModel":
        from limit_tf.limit import LimitModel

        return LimitModel
    raise AttributeError(f"module 'limit_tf' has no attribute {name!r}")
