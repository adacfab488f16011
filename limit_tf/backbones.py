"""``--architecture=keras:NAME``: the body of a ``keras.applications`` model with a linear head.

The data pipeline standardizes images with the training split's per-channel
mean and std; a ``keras.applications`` body expects 0-255 RGB pixels at
least 32 (Xception 71, Inception 75) pixels a side, then its own
preprocessing. The network built here does that conversion itself, so that
it takes the pipeline's inputs like every other network of
:mod:`limit_tf.models` and a saved ``best.keras`` holds all of it:

1. undo the standardization (a ``Normalization`` layer with ``invert=True``)
   and scale to 0-255; repeat a grayscale channel three times;
2. resize to the body's smallest side when the images are smaller;
3. the body's preprocessing (:data:`limit_tf.methods.BACKBONES`): none for
   bodies that include it (EfficientNet, EfficientNetV2, MobileNetV3,
   ConvNeXt), ``x / 127.5 - 1`` (``tf``), the ImageNet mean and std
   (``torch``), or BGR minus the ImageNet mean (``caffe``: a fixed linear
   map on the channels);
4. the body (``include_top=False``, global average pooling), with
   ``weights``: ``None``, ``"imagenet"`` or a weights file; frozen
   (``trainable=False``, batch norm in inference mode) or fine-tuned;
5. a dense layer to the logits.

LIMIT's q gets the same body with the same starting weights
(:func:`limit_tf.models.build_predictor`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

from limit_tf import methods

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def _preprocessing(kind: str, name: str) -> list[layers.Layer]:
    if kind == "raw":
        return []
    if kind == "tf":
        return [layers.Rescaling(1.0 / 127.5, offset=-1.0, name=f"{name}_tf_scale")]
    if kind == "torch":
        mean = [255.0 * m for m in IMAGENET_MEAN]
        variance = [(255.0 * s) ** 2 for s in IMAGENET_STD]
        return [layers.Normalization(mean=mean, variance=variance, name=f"{name}_imagenet_norm")]
    if kind == "caffe":  # RGB -> BGR and minus the mean: one fixed affine map on the channel axis
        flip = layers.Dense(3, trainable=False, name=f"{name}_bgr_minus_mean")
        flip.build((None, 3))
        flip.set_weights([np.eye(3, dtype="float32")[::-1], -np.asarray(CAFFE_BGR_MEAN, "float32")])
        return [flip]
    raise ValueError(f"unknown preprocessing {kind!r}")


def build(
    backbone: str,
    num_classes: int,
    input_shape: Sequence[int],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    weights: str | None = None,
    freeze: bool = False,
    last_bias: bool = True,
    name: str | None = None,
) -> keras.Model:
    """A ``keras.applications`` body between the pipeline's inputs and a linear head (see the module doc).

    Args:
      backbone: a name of :data:`limit_tf.methods.BACKBONES` (``EfficientNetV2B0``, ``ResNet50``, ...).
      num_classes: number of logits.
      input_shape: the pipeline's input shape ``(H, W, C)``, C 1 or 3.
      mean, std: the pipeline's per-channel standardization (on the 0-1 scale).
      weights: ``None`` (random), ``"imagenet"`` (Keras downloads them) or the path of a weights file.
      freeze: train the head only.
      last_bias, name: as :func:`limit_tf.models.build_model`.
    """
    if backbone not in methods.BACKBONES:
        raise ValueError(f"unknown keras.applications body {backbone!r}; allowed: {', '.join(methods.BACKBONES)}.")
    kind, smallest = methods.BACKBONES[backbone]
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ValueError(
            f"--architecture=keras:{backbone} takes images (height, width, 1 or 3 channels), not inputs of shape "
            f"{shape}; use --architecture=mlp for a table."
        )
    name = name or f"keras_{backbone}"
    channels = shape[-1]
    inputs = keras.Input(shape, name=f"{name}_input")
    mean = np.broadcast_to(np.asarray(mean, "float32"), (channels,))
    std = np.broadcast_to(np.asarray(std, "float32"), (channels,))
    x = layers.Normalization(
        mean=mean.tolist(), variance=np.square(std).tolist(), invert=True, name=f"{name}_unstandardize"
    )(inputs)
    x = layers.Rescaling(255.0, name=f"{name}_to_pixels")(x)
    if channels == 1:
        x = layers.Concatenate(name=f"{name}_gray_to_rgb")([x, x, x])
    side = max(smallest, shape[0], shape[1])
    if (shape[0], shape[1]) != (side, side):
        x = layers.Resizing(side, side, name=f"{name}_resize")(x)
    for layer in _preprocessing(kind, name):
        x = layer(x)
    constructor = getattr(keras.applications, backbone)
    options = (
        {"include_preprocessing": True} if backbone.startswith(("EfficientNetV2", "MobileNetV3", "ConvNeXt")) else {}
    )
    body = constructor(include_top=False, weights=weights, input_shape=(side, side, 3), pooling="avg", **options)
    body.trainable = not freeze
    x = body(x, training=False) if freeze else body(x)
    outputs = layers.Dense(num_classes, use_bias=last_bias, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
