"""``tf.data`` pipelines over a :class:`~limit_tf.data.protocol.NoisyDataset`.

There is one training pipeline, :func:`training_stream`: the runner, the
tuner, the benchmarks and the README's example all train on it, so a tuner
trial and the retrained best setting see the same batches. Epoch ``e``'s
order (and, for augmented datasets, its crops and flips) depends only on
``(seed, e)``, so a run resumed at epoch ``e`` sees exactly the batches an
uninterrupted run would. :func:`to_tf_dataset` serves evaluation (no
shuffling, no augmentation).

Inputs held in memory are gathered by index. An image folder's inputs are
files (:class:`~limit_tf.data.files.ImageFiles`): each is read, decoded and
resized inside the pipeline, in parallel and in order, so memory holds the
file list and the batches in flight, never every image.
"""

from __future__ import annotations

import numpy as np

from limit_tf.data.files import ImageFiles
from limit_tf.data.protocol import NoisyDataset

SPLITS = ("train", "validation", "test")
PREFETCH = 2


def finish_pipeline(ds):
    """Prefetches a fixed depth with tf.data autotuning off.

    With autotuning on, destroying a finished iterator waits for the autotune
    thread's sleep: seconds per epoch trained, added at the end of every
    ``fit`` (measured: 37 s after a 4-epoch LIMIT run on 10k MNIST examples).
    Fixed parallelism and prefetching keep the input pipeline ahead of the
    model here (see benchmarks/).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(PREFETCH).with_options(options)


def normalizer(dataset: NoisyDataset):
    """The function that turns a batch of raw inputs into the network's inputs."""
    import tensorflow as tf

    mean = np.asarray(dataset.mean, np.float32)
    std = np.asarray(dataset.std, np.float32)
    feature_shape = dataset.input_shape
    if mean.size not in (1, feature_shape[-1]):  # per-feature statistics (from_arrays(normalize=True))
        mean, std = mean.reshape(feature_shape), std.reshape(feature_shape)
    scale = dataset.train.x.dtype == np.uint8

    def normalize(x):
        x = tf.cast(x, tf.float32)
        if scale:
            x = x / 255.0
        return (x - mean) / std

    return normalize


def to_tf_dataset(
    dataset: NoisyDataset, split: str, *, batch_size: int, with_metadata: bool = False, inputs_only: bool = False
):
    """A batched, normalized, prefetched evaluation ``tf.data.Dataset`` over one split, in order.

    Args:
      dataset: the noisy dataset.
      split: ``train``, ``validation`` or ``test``.
      batch_size: the (global) batch size.
      with_metadata: yield dicts ``{"image", "label", "clean_label",
        "index"}`` (index = position in the split) instead of ``(image, label)``.
      inputs_only: yield the normalized inputs only (for ``predict``).

    Returns:
      A ``tf.data.Dataset``. For training use :func:`training_stream`.
    """
    import tensorflow as tf

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed: it must be >= 1.")
    part = getattr(dataset, split)
    normalize = normalizer(dataset)
    if isinstance(part.x, ImageFiles):
        return _files_dataset(part, int(batch_size), normalize, with_metadata=with_metadata, inputs_only=inputs_only)
    if inputs_only:
        ds = tf.data.Dataset.from_tensor_slices(part.x).batch(int(batch_size))
        return finish_pipeline(ds.map(normalize, num_parallel_calls=tf.data.AUTOTUNE))
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "image": part.x,
            "label": part.labels.astype(np.int32),
            "clean_label": part.clean_labels.astype(np.int32),
            "index": np.arange(len(part), dtype=np.int64),
        }
    ).batch(int(batch_size))
    if with_metadata:
        ds = ds.map(lambda e: {**e, "image": normalize(e["image"])}, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda e: (normalize(e["image"]), e["label"]), num_parallel_calls=tf.data.AUTOTUNE)
    return finish_pipeline(ds)


def _files_dataset(part, batch_size: int, normalize, *, with_metadata: bool, inputs_only: bool):
    """:func:`to_tf_dataset` over image files: each read and decoded in the pipeline."""
    import tensorflow as tf

    read = part.x.reader()
    parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if inputs_only:
        ds = tf.data.Dataset.range(len(part)).map(read, **parallel).batch(batch_size)
        return finish_pipeline(ds.map(normalize, **parallel))
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "label": part.labels.astype(np.int32),
            "clean_label": part.clean_labels.astype(np.int32),
            "index": np.arange(len(part), dtype=np.int64),
        }
    )
    ds = ds.map(lambda e: {**e, "image": read(e["index"])}, **parallel).batch(batch_size)
    if with_metadata:
        ds = ds.map(lambda e: {**e, "image": normalize(e["image"])}, **parallel)
    else:
        ds = ds.map(lambda e: (normalize(e["image"]), e["label"]), **parallel)
    return finish_pipeline(ds)


def steps_per_epoch(dataset: NoisyDataset, batch_size: int) -> int:
    return -(-len(dataset.train) // int(batch_size))


def training_stream(dataset: NoisyDataset, *, batch_size: int, epochs: int, seed: int = 0, first_epoch: int = 0):
    """Training epochs ``first_epoch .. epochs - 1`` as one ``tf.data`` stream of (input, label) batches.

    Use it with ``fit(steps_per_epoch=...)``::

        train, steps = data.training_stream(ds, batch_size=256, epochs=20)
        model.fit(train, steps_per_epoch=steps, epochs=20, validation_data=...)

    and, to continue a fit at epoch ``k``, ``first_epoch=k`` with
    ``fit(initial_epoch=k)``.

    Returns:
      ``(dataset of (normalized input, observed label) batches, steps per epoch)``.
    """
    import tensorflow as tf

    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed: it must be >= 1.")
    if not 0 <= int(first_epoch) < int(epochs):
        raise ValueError(f"first_epoch={first_epoch!r} is not allowed: it must be in [0, epochs={epochs}).")
    n = len(dataset.train)
    files = isinstance(dataset.train.x, ImageFiles)
    if files:
        read = dataset.train.x.reader()
    else:
        x = tf.constant(dataset.train.x)
        read = x.__getitem__
    y = tf.constant(dataset.train.labels.astype(np.int32))
    normalize = normalizer(dataset)
    seed = int(seed)
    batch_size = int(batch_size)

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.argsort(tf.random.stateless_uniform([n], seed=epoch_seed))
        ds = tf.data.Dataset.from_tensor_slices(order)
        if dataset.augment:
            pad = max(4, min(dataset.input_shape[:2]) // 8)  # 4 pixels at 32 x 32, an eighth of larger images

            def augment(i):
                s = tf.stack([epoch * 1_000_003 + tf.cast(i, tf.int64), tf.constant(seed, tf.int64)])
                image = read(i)
                padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
                image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=s)
                return tf.image.stateless_random_flip_left_right(image, seed=s + 1), y[i]

            return ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size)
        if files:
            return ds.map(lambda i: (read(i), y[i]), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(
                batch_size
            )
        return ds.batch(batch_size).map(lambda idx: (tf.gather(x, idx), tf.gather(y, idx)))

    stream = tf.data.Dataset.range(int(first_epoch), int(epochs)).flat_map(one_epoch)
    stream = stream.map(lambda images, labels: (normalize(images), labels), num_parallel_calls=tf.data.AUTOTUNE)
    return finish_pipeline(stream), steps_per_epoch(dataset, batch_size)
