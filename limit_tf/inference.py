"""A network's inference-mode function with its batch norms folded into the layers before them.

In inference mode a batch norm is a fixed affine map per channel,
``y = s * (x - mean) + beta`` with ``s = gamma / sqrt(moving_variance + eps)``.
When ``x`` is the output of a convolution or dense layer without activation
whose output feeds nothing but that batch norm, the pair is one layer with
kernel ``kernel * s`` (per output channel) and bias ``(bias - mean) * s +
beta``: the same function up to float rounding, with one pass over the
activations fewer (on 2 CPU cores the MNIST CNN's inference is 1.2-1.4
times faster for it, ``benchmarks/README.md``).

:class:`FoldedInference` builds that network once (a clone of the
functional model in which every foldable batch norm is an identity and the
layer before it has a bias) and copies the weights into it, folded, in
:meth:`FoldedInference.sync`, so that after a sync it computes what
``network(x, training=False)`` computes. The protocol's per-epoch evaluation
(:class:`limit_tf.callbacks.EpochEvaluation`) uses it; ``benchmarks/README.md``
has what it saves. A network it does not clone (a subclassed or nested
model, a shared layer, one whose variables a distribution strategy holds) is
run as it is.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from absl import logging

_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its CPU kernels with oneDNN.

    TensorFlow turns oneDNN on by default on x86 CPUs with AVX512_VNNI,
    AVX512_BF16 or AMX, and off on others (AVX2 only, say);
    ``TF_ENABLE_ONEDNN_OPTS`` overrides it.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without it: assume the Eigen kernels
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def evaluation_settings(input_shape) -> tuple[bool, int]:
    """``(jit, batch_size)`` for the protocol's inference passes on this machine.

    Measured with ``benchmarks/eval_speed.py`` on 2 CPU cores (the MNIST
    CNN, folded): with oneDNN, 21.5 microseconds per example without XLA at
    batch 4096, against 28.4 at 1024 and 37-39 with XLA (XLA's CPU
    convolutions are Eigen's); with oneDNN off, XLA at batch 1024 is the
    fastest (32.4, against 42.7 without XLA). So: XLA where a GPU is visible
    or oneDNN is off, at batch 1024; otherwise no XLA, at batch 4096 for
    inputs of at most 1,024 values (MNIST-sized images, tables) and 1024 for
    larger ones, which keeps a ResNet's activations on 32 x 32 images to a
    few hundred MB.
    """
    if tf.config.list_logical_devices("GPU") or not onednn_enabled():
        return True, 1024
    return False, 4096 if math.prod(int(d) for d in input_shape) <= 1024 else 1024


class _FoldedAway(keras.layers.Layer):
    """Stands for a batch norm folded into the layer before it: the identity (takes a batch norm's call arguments)."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def _io(layer):
    """The layer's (inputs, output) tensors, or None if it was not called exactly once."""
    try:
        return tf.nest.flatten(layer.input), layer.output
    except (AttributeError, ValueError):
        return None


def foldable_pairs(network: keras.Model) -> list[tuple[keras.layers.Layer, keras.layers.BatchNormalization]]:
    """The (layer, batch norm) pairs of a functional model that fold into one layer.

    A pair folds when the batch norm (no renormalization, called once)
    normalizes the last axis of the output of a channels-last convolution or
    a dense layer that has no activation, is called once and whose output
    feeds nothing else.
    """
    producer_of, consumers = {}, {}
    for layer in network.layers:
        io = _io(layer)
        if io is None:
            continue
        producer_of[id(io[1])] = layer
        for tensor in io[0]:
            consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    for tensor in tf.nest.flatten(network.outputs):
        consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    pairs = []
    for bn in network.layers:
        io = _io(bn)
        if not isinstance(bn, keras.layers.BatchNormalization) or bn.renorm or io is None:
            continue
        rank = len(io[0][0].shape)
        if bn.axis not in (-1, rank - 1):
            continue
        layer = producer_of.get(id(io[0][0]))
        if isinstance(layer, _CONVOLUTIONS):
            ok = layer.data_format == "channels_last"
        else:
            ok = isinstance(layer, keras.layers.Dense)
        if ok and layer.activation in (None, keras.activations.linear) and consumers.get(id(layer.output)) == 1:
            pairs.append((layer, bn))
    return pairs


def fold(layer: keras.layers.Layer, bn: keras.layers.BatchNormalization):
    """The kernel and bias of ``bn(layer(x), training=False)`` as one layer (float32 tensors)."""
    scale = tf.math.rsqrt(tf.cast(bn.moving_variance, tf.float32) + bn.epsilon)
    if bn.scale:
        scale *= tf.cast(bn.gamma, tf.float32)
    bias = tf.cast(layer.bias, tf.float32) if layer.use_bias else tf.zeros_like(scale)
    bias = (bias - tf.cast(bn.moving_mean, tf.float32)) * scale
    if bn.center:
        bias += tf.cast(bn.beta, tf.float32)
    return tf.cast(layer.kernel, tf.float32) * scale, bias


class FoldedInference:
    """``network(x, training=False)`` with its batch norms folded (module docstring).

    Call :meth:`sync` after the network's weights change and before calling
    this object (or :attr:`model`) on inputs.

    Args:
      network: a built functional or Sequential ``keras.Model``.
      fold: False runs ``network`` as it is (for comparisons).

    Attributes:
      model: the network that runs: the folded clone, or ``network`` itself
        where nothing folds or the network cannot be cloned.
      folded: how many batch norms were folded.
    """

    def __init__(self, network: keras.Model, *, fold: bool = True):
        self.network = network
        self.model = network
        self.folded = 0
        self._pairs = []
        self._copies = []
        if not (fold and _clonable(network)):
            return
        pairs = foldable_pairs(network)
        if not pairs:
            return
        norms = {id(bn) for _, bn in pairs}
        layers = {id(layer) for layer, _ in pairs}
        clones = {}

        def clone(layer):
            if id(layer) in norms:
                copy = _FoldedAway(name=layer.name)
            else:
                config = layer.get_config()
                if id(layer) in layers:
                    config["use_bias"] = True
                copy = layer.__class__.from_config(config)
            clones[id(layer)] = copy
            return copy

        try:
            model = keras.models.clone_model(network, clone_function=clone)
        except (TypeError, ValueError, NotImplementedError) as e:  # a layer that does not round-trip its config
            logging.warning("Batch norm not folded for inference (%s: %s).", type(e).__name__, e)
            return
        self._pairs = [(layer, bn, clones[id(layer)]) for layer, bn in pairs]
        self._copies = [
            (layer.weights, clones[id(layer)].weights)
            for layer in network.layers
            if layer.weights and id(layer) not in norms | layers
        ]
        self.model, self.folded = model, len(pairs)
        self._sync = tf.function(self._assign)

    def sync(self) -> None:
        """Copies the network's current weights into the folded clone."""
        if self.folded:
            self._sync()

    def _assign(self):
        for layer, bn, copy in self._pairs:
            kernel, bias = fold(layer, bn)
            copy.kernel.assign(tf.cast(kernel, copy.kernel.dtype))
            copy.bias.assign(tf.cast(bias, copy.bias.dtype))
        for sources, targets in self._copies:
            for source, target in zip(sources, targets, strict=True):
                target.assign(source)

    def __call__(self, x):
        return self.model(x, training=False)


def _clonable(network) -> bool:
    """A built functional or Sequential model without nested models, outside any distribution strategy."""
    if not isinstance(network, keras.Model) or not network.built:
        return False
    if not (isinstance(network, keras.Sequential) or type(network).__name__ == "Functional"):
        return False
    if any(isinstance(layer, keras.Model) for layer in network.layers):
        return False
    distributed = any(isinstance(getattr(w, "value", w), tf.distribute.DistributedValues) for w in network.weights)
    return not (distributed or tf.distribute.has_strategy())
