"""Network architectures, built by name.

Every builder returns a fresh, built functional ``keras.Model`` that maps
inputs to logits (no softmax). LIMIT's q-network comes from
:func:`build_predictor`: by default the authors' q for the classifier's
architecture (on the MNIST CNN, one batch norm more than the classifier;
``../shared/DESIGN.md`` section 1), or any architecture of the table.

Initialization and batch norm follow the paper's reference code (PyTorch
defaults), because Keras' defaults change the results on small data:

- convolution and dense weights *and biases* are drawn from
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (PyTorch's default) instead of
  Glorot-uniform weights and zero biases;
- batch norm uses momentum 0.9 (PyTorch's 0.1) and epsilon 1e-5.

Under a distribution strategy, build with ``synchronized_bn=True``: batch
norm then all-reduces its batch moments across replicas, so N replicas with a
global batch B normalize (and update their running statistics) exactly as one
device with batch B does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import keras
from keras import layers

from limit_tf import config as config_lib
from limit_tf import methods

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def torch_default_initializers(fan_in: int) -> dict:
    """Kernel and bias initializers equal to PyTorch's Linear/Conv defaults.

    PyTorch draws weights with ``kaiming_uniform_(a=sqrt(5))``, which is
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and biases from the same range.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return {
        "kernel_initializer": keras.initializers.VarianceScaling(
            scale=1.0 / 3.0, mode="fan_in", distribution="uniform"
        ),
        "bias_initializer": keras.initializers.RandomUniform(-bound, bound),
    }


@keras.saving.register_keras_serializable(package="limit_tf")
class Conv2D(layers.Conv2D):
    """``keras.layers.Conv2D`` that computes a whole-input convolution as one matrix product.

    When the kernel covers its whole input (valid padding, no dilation,
    height and width equal to the kernel's: the MNIST CNN's last
    convolution, 3x3 on 3x3), each output is a dot product of the flattened
    input with the flattened kernel, so the layer multiplies ``(B, kh*kw*C)``
    by ``(kh*kw*C, filters)``: the same numbers, with the same weights, but
    TensorFlow's CPU convolution gradients for this shape are an order of
    magnitude slower than a matrix product's (``benchmarks/README.md``).
    Every other case is Keras' convolution.
    """

    def _whole_input(self, inputs) -> bool:
        return (
            self.rank == 2
            and self.data_format == "channels_last"
            and self.padding == "valid"
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and tuple(inputs.shape[1:3]) == tuple(self.kernel_size)
        )

    def call(self, inputs):
        if not self._whole_input(inputs):
            return super().call(inputs)
        from keras import ops

        kernel = ops.reshape(self.kernel, (-1, self.filters))
        outputs = ops.matmul(ops.reshape(inputs, (-1, kernel.shape[0])), ops.cast(kernel, inputs.dtype))
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        outputs = ops.reshape(outputs, (-1, 1, 1, self.filters))
        return self.activation(outputs) if self.activation is not None else outputs


def _conv(x, filters: int, kernel: int, stride: int, padding: int, *, use_bias: bool, name: str):
    fan_in = kernel * kernel * int(x.shape[-1])
    if padding:
        x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    init = torch_default_initializers(fan_in)
    if not use_bias:
        init.pop("bias_initializer")
    return Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=use_bias, name=name, **init)(x)


def _dense(x, units: int, *, name: str, activation=None, use_bias: bool = True):
    init = torch_default_initializers(int(x.shape[-1]))
    if not use_bias:
        init.pop("bias_initializer")
    return layers.Dense(units, activation=activation, use_bias=use_bias, name=name, **init)(x)


@keras.saving.register_keras_serializable(package="limit_tf")
class FusedBatchNormalization(layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with one fused training op on images and PyTorch's running variance.

    - Speed: Keras 3 normalizes with about a dozen separate element-wise and
      reduction ops; in training on 4-D float32 channels-last inputs this
      layer calls TensorFlow's ``FusedBatchNormV3`` instead (oneDNN on CPU,
      cuDNN on GPU): the MNIST CNN's step is about 20% faster on 2 CPU cores
      (``benchmarks/README.md``).
    - Statistics: the running variance is updated with the *unbiased* batch
      variance (times ``n / (n - 1)``, n = the values per channel in the
      batch, over all replicas), as PyTorch does and the fused op does; Keras
      uses the biased one. Every training path of this layer does so, the
      synchronized one under a distribution strategy included, so one
      device and N replicas keep the same statistics.

    The normalization itself (with the biased batch variance), the weights,
    outputs and gradients equal Keras' layer (``tests/test_models.py``).
    Inference, masks and renormalization are Keras' code.
    """

    def _can_fuse(self, inputs, training, mask) -> bool:
        return (
            bool(training)
            and not self.synchronized
            and mask is None
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.center
            and self.scale
            and inputs.dtype == "float32"
            and keras.backend.backend() == "tensorflow"
        )

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        if self._can_fuse(inputs, training, mask):
            return self._fused_call(inputs)
        return self._training_call(inputs)

    def _fused_call(self, inputs):
        import tensorflow as tf

        outputs, mean, variance, *_ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            self.gamma,
            self.beta,
            mean=self.moving_mean,
            variance=self.moving_variance,
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
            exponential_avg_factor=1.0 - self.momentum,
        )
        self.moving_mean.assign(mean)
        self.moving_variance.assign(variance)
        return outputs

    def _training_call(self, inputs):
        """Keras' training branch, with the running variance updated unbiased."""
        from keras import ops

        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(x, None)  # all-reduced over replicas when synchronized
        count = self._values_per_channel(x)
        unbiased = variance * (count / ops.maximum(count - 1.0, 1.0))
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + unbiased * (1.0 - self.momentum))
        outputs = ops.batch_normalization(
            x=x,
            mean=mean,
            variance=variance,
            axis=self.axis,
            offset=ops.cast(self.beta, x.dtype) if self.center else None,
            scale=ops.cast(self.gamma, x.dtype) if self.scale else None,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def _values_per_channel(self, x):
        """Values each channel's moments were taken over (summed over replicas when synchronized)."""
        import tensorflow as tf

        shape = tf.shape(x)
        count = tf.cast(tf.reduce_prod(tf.gather(shape, list(self._reduction_axes))), tf.float32)
        context = tf.distribute.get_replica_context()
        if self.synchronized and context is not None and context.num_replicas_in_sync > 1:
            count = context.all_reduce("SUM", count)
        return count


def _bn(x, name: str, synchronized: bool):
    return FusedBatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=synchronized, name=name)(x)


def mnist_cnn(
    num_classes: int,
    input_shape: Sequence[int] = (28, 28, 1),
    *,
    last_bias: bool = True,
    synchronized_bn: bool = False,
    hidden_bn: bool = False,
    name: str = "mnist_cnn",
) -> keras.Model:
    """The paper's MNIST CNN (Table 3).

    conv 32 4x4 s2 p1, conv 32 4x4 s2 p1, conv 64 3x3 s2 p0, conv 256 3x3 s1
    p0 (each with batch norm and ReLU), dense 128 ReLU, dense ``num_classes``.

    Args:
      num_classes: number of output logits.
      input_shape: (height, width, channels).
      last_bias: whether the last dense layer has a bias (the soft
        regularization of eq. 11 needs a bias-free one).
      synchronized_bn: all-reduce batch-norm moments across replicas.
      hidden_bn: a batch norm between the 128-unit layer and its ReLU (the
        reference code's q-network; :func:`build_predictor`).
      name: model name.
    """
    sync = synchronized_bn
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for i, (filters, kernel, stride, pad) in enumerate([(32, 4, 2, 1), (32, 4, 2, 1), (64, 3, 2, 0), (256, 3, 1, 0)]):
        x = _conv(x, filters, kernel, stride, pad, use_bias=True, name=f"conv{i + 1}")
        x = _bn(x, f"bn{i + 1}", sync)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    if hidden_bn:
        x = layers.ReLU(name="fc1_relu")(_bn(_dense(x, 128, name="fc1"), "fc1_bn", sync))
    else:
        x = _dense(x, 128, activation="relu", name="fc1")
    outputs = _dense(x, num_classes, use_bias=last_bias, name="logits")
    return keras.Model(inputs, outputs, name=name)


def mlp(
    num_classes: int,
    input_shape: Sequence[int] = (28, 28, 1),
    *,
    hidden: Sequence[int] = (512, 512, 512, 512),
    last_bias: bool = True,
    synchronized_bn: bool = False,
    name: str = "mlp",
) -> keras.Model:
    """Fully connected network (the paper's memorization figure uses 4 x 512 ReLU).

    Works for images (flattened) and tabular inputs alike. It has no batch
    norm (``synchronized_bn`` is accepted for a uniform builder signature).
    """
    del synchronized_bn
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    for i, units in enumerate(hidden):
        x = _dense(x, units, activation="relu", name=f"fc{i + 1}")
    outputs = _dense(x, num_classes, use_bias=last_bias, name="logits")
    return keras.Model(inputs, outputs, name=name)


def _basic_block(x, filters: int, stride: int, name: str, sync: bool):
    shortcut = x
    y = _conv(x, filters, 3, stride, 1, use_bias=False, name=f"{name}_conv1")
    y = layers.ReLU(name=f"{name}_relu1")(_bn(y, f"{name}_bn1", sync))
    y = _conv(y, filters, 3, 1, 1, use_bias=False, name=f"{name}_conv2")
    y = _bn(y, f"{name}_bn2", sync)
    if stride != 1 or int(x.shape[-1]) != filters:
        shortcut = _conv(x, filters, 1, stride, 0, use_bias=False, name=f"{name}_proj")
        shortcut = _bn(shortcut, f"{name}_proj_bn", sync)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def _bottleneck_block(x, filters: int, stride: int, name: str, sync: bool):
    expansion = 4
    shortcut = x
    y = _conv(x, filters, 1, 1, 0, use_bias=False, name=f"{name}_conv1")
    y = layers.ReLU(name=f"{name}_relu1")(_bn(y, f"{name}_bn1", sync))
    y = _conv(y, filters, 3, stride, 1, use_bias=False, name=f"{name}_conv2")
    y = layers.ReLU(name=f"{name}_relu2")(_bn(y, f"{name}_bn2", sync))
    y = _conv(y, filters * expansion, 1, 1, 0, use_bias=False, name=f"{name}_conv3")
    y = _bn(y, f"{name}_bn3", sync)
    if stride != 1 or int(x.shape[-1]) != filters * expansion:
        shortcut = _conv(x, filters * expansion, 1, stride, 0, use_bias=False, name=f"{name}_proj")
        shortcut = _bn(shortcut, f"{name}_proj_bn", sync)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def _resnet(
    inputs, block, stages: Sequence[int], *, cifar_stem: bool, num_classes: int, last_bias: bool, sync: bool, name: str
):
    if cifar_stem:  # 3x3 stride-1 first convolution, no max pooling (paper, appendix B)
        x = _conv(inputs, 64, 3, 1, 1, use_bias=False, name="stem_conv")
        x = layers.ReLU(name="stem_relu")(_bn(x, "stem_bn", sync))
    else:
        x = _conv(inputs, 64, 7, 2, 3, use_bias=False, name="stem_conv")
        x = layers.ReLU(name="stem_relu")(_bn(x, "stem_bn", sync))
        x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for stage, num_blocks in enumerate(stages):
        filters = 64 * 2**stage
        for b in range(num_blocks):
            stride = 2 if (stage > 0 and b == 0) else 1
            x = block(x, filters, stride, name=f"stage{stage + 1}_block{b + 1}", sync=sync)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = _dense(x, num_classes, use_bias=last_bias, name="logits")
    return keras.Model(inputs, outputs, name=name)


def resnet34(
    num_classes: int,
    input_shape: Sequence[int] = (32, 32, 3),
    *,
    last_bias: bool = True,
    synchronized_bn: bool = False,
    name: str = "resnet34",
) -> keras.Model:
    """ResNet-34 for CIFAR: 3x3 stride-1 stem and no max pooling (paper, appendix B)."""
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    return _resnet(
        inputs,
        _basic_block,
        (3, 4, 6, 3),
        cifar_stem=True,
        num_classes=num_classes,
        last_bias=last_bias,
        sync=synchronized_bn,
        name=name,
    )


def resnet50(
    num_classes: int,
    input_shape: Sequence[int] = (224, 224, 3),
    *,
    last_bias: bool = True,
    synchronized_bn: bool = False,
    name: str = "resnet50",
) -> keras.Model:
    """The original ResNet-50 (7x7 stride-2 stem and max pooling), for Clothing1M."""
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    return _resnet(
        inputs,
        _bottleneck_block,
        (3, 4, 6, 3),
        cifar_stem=False,
        num_classes=num_classes,
        last_bias=last_bias,
        sync=synchronized_bn,
        name=name,
    )


def _preact_block(x, filters: int, stride: int, name: str, sync: bool):
    """A pre-activation basic block (He et al., 2016b): BN-ReLU-conv twice, identity shortcut."""
    y = layers.ReLU(name=f"{name}_relu1")(_bn(x, f"{name}_bn1", sync))
    shortcut = x
    if stride != 1 or int(x.shape[-1]) != filters:
        shortcut = _conv(y, filters, 1, stride, 0, use_bias=False, name=f"{name}_proj")
    y = _conv(y, filters, 3, stride, 1, use_bias=False, name=f"{name}_conv1")
    y = layers.ReLU(name=f"{name}_relu2")(_bn(y, f"{name}_bn2", sync))
    y = _conv(y, filters, 3, 1, 1, use_bias=False, name=f"{name}_conv2")
    return layers.Add(name=f"{name}_add")([y, shortcut])


def resnet20(
    num_classes: int,
    input_shape: Sequence[int] = (32, 32, 3),
    *,
    last_bias: bool = True,
    synchronized_bn: bool = False,
    name: str = "resnet20",
    width: int = 16,
    blocks: int = 3,
) -> keras.Model:
    """A network for photographs that trains on a CPU: the CIFAR ResNet-20, pre-activation.

    Three stages of ``blocks`` pre-activation basic blocks with ``width``,
    ``2 width`` and ``4 width`` channels (16/32/64: 0.27M weights; He et al.,
    2016), batch norm, global average pooling. Any image size works (the
    pooling is global); images above 64 pixels get a stride-2 stem, so that
    the first stage runs at most at 64 x 64.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    stride = 2 if min(input_shape[:2]) > 64 else 1
    x = _conv(inputs, width, 3, stride, 1, use_bias=False, name="stem_conv")
    for stage in range(3):
        for b in range(blocks):
            x = _preact_block(
                x,
                width * 2**stage,
                2 if (stage > 0 and b == 0) else 1,
                f"stage{stage + 1}_block{b + 1}",
                synchronized_bn,
            )
    x = layers.ReLU(name="final_relu")(_bn(x, "final_bn", synchronized_bn))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = _dense(x, num_classes, use_bias=last_bias, name="logits")
    return keras.Model(inputs, outputs, name=name)


ARCHITECTURES: Mapping[str, Callable[..., keras.Model]] = {
    "mnist_cnn": mnist_cnn,
    "mlp": mlp,
    "resnet20": resnet20,
    "resnet34": resnet34,
    "resnet50": resnet50,
}


# The default network for inputs of a shape (TensorFlow-free, in the config: it also picks the recipe).
architecture_for = config_lib.architecture_for


def build_model(
    architecture: str,
    num_classes: int,
    input_shape: Sequence[int],
    *,
    last_bias: bool = True,
    synchronized_bn: bool = False,
    name: str | None = None,
    **options,
) -> keras.Model:
    """Builds a network by name; used for the classifier and the q-network alike.

    Args:
      architecture: one of :data:`ARCHITECTURES`, or ``keras:NAME`` (:mod:`limit_tf.backbones`).
      num_classes: number of logits.
      input_shape: input shape without the batch dimension.
      last_bias: whether the logits layer has a bias.
      synchronized_bn: all-reduce batch-norm moments across replicas (use
        under a distribution strategy).
      name: model name (defaults to the architecture name).
      **options: the architecture's own options (e.g. the MNIST CNN's ``hidden_bn``; a ``keras:`` body's
        ``mean``, ``std``, ``weights`` and ``freeze``, which the others ignore).

    Returns:
      A built ``keras.Model`` returning logits.
    """
    if int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes!r} is not allowed: it must be >= 2.")
    backbone = methods.backbone_of(architecture)
    if backbone is not None:  # a keras.applications body: options mean, std, weights, freeze
        from limit_tf import backbones

        return backbones.build(
            backbone,
            int(num_classes),
            input_shape,
            last_bias=last_bias,
            name=name or architecture.replace(":", "_"),
            **options,
        )
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; allowed: {', '.join(ARCHITECTURES)} or keras:NAME.")
    options = {k: v for k, v in options.items() if k not in BACKBONE_OPTIONS}
    return ARCHITECTURES[architecture](
        int(num_classes),
        tuple(int(d) for d in input_shape),
        last_bias=last_bias,
        synchronized_bn=synchronized_bn,
        name=name or architecture,
        **options,
    )


# The authors' q-network, per classifier architecture, as build options: on
# MNIST their q has a batch norm after the 128-unit layer that the classifier
# lacks (../shared/DESIGN.md, section 1). Others: the classifier's architecture.
REFERENCE_PREDICTORS: Mapping[str, Mapping[str, object]] = {"mnist_cnn": {"hidden_bn": True}}
Q_CHOICES = ("reference", "same", *ARCHITECTURES)
# What build_model passes to a keras: body only.
BACKBONE_OPTIONS = ("mean", "std", "weights", "freeze")


def build_predictor(
    q_architecture: str,
    classifier_architecture: str,
    num_classes: int,
    input_shape: Sequence[int],
    *,
    synchronized_bn: bool = False,
    name: str = "predictor_network",
    **backbone_options,
) -> keras.Model:
    """Builds LIMIT's q-network.

    Args:
      q_architecture: ``"reference"`` (the authors' q for the classifier's
        architecture: on the MNIST CNN a batch norm after the 128-unit
        layer; elsewhere the classifier's architecture), ``"same"`` (the
        classifier's architecture exactly) or any name of :data:`ARCHITECTURES`.
      classifier_architecture: the classifier's architecture name.
      num_classes, input_shape, synchronized_bn, name: as in :func:`build_model`.
      **backbone_options: a ``keras:`` body's (:func:`build_model`): q starts from the classifier's weights.
    """
    if q_architecture not in Q_CHOICES and not methods.backbone_of(q_architecture):
        raise ValueError(f"unknown q architecture {q_architecture!r}; allowed: {', '.join(Q_CHOICES)}.")
    architecture = classifier_architecture if q_architecture in ("reference", "same") else q_architecture
    options = dict(REFERENCE_PREDICTORS.get(architecture, {})) if q_architecture == "reference" else {}
    return build_model(
        architecture,
        num_classes,
        input_shape,
        synchronized_bn=synchronized_bn,
        name=name,
        **options,
        **backbone_options,
    )
