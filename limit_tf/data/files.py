"""Image files read where they lie: an image folder that never has to fit in memory.

:class:`ImageFiles` stands where an array of images would (``Split.x``): it
holds each file's path, the shape every image is decoded to, and two numbers
per file and channel (the sum and the sum of squares of its pixels, for the
normalization statistics). Indexing it with an integer decodes that one
image; with a slice, an index array or a mask it gives the files picked, so
the split protocol, cleaning and detection use it as they use an array. The
``tf.data`` pipelines (:mod:`limit_tf.data.pipeline`) read, decode and resize
its files in parallel, batch by batch: memory holds the file list and the
batches in flight, whatever the number of files.

Reading a folder (:func:`scan`) costs one pass over its files: every header
is opened up front (size, colour mode), then every image is decoded once,
with the statistics computed on the way; a file that does not decode is a
:class:`~limit_tf.data.user.UserDataError` naming it before anything trains.
What the pass found is kept in a cache file (:func:`cache_dir`) keyed by the
folder and ``image_size``, and used again while every file keeps its path,
size and modification time: detection, a resumed run and the next run on
the folder skip the pass.

PNG and JPEG files in 8-bit modes are decoded by TensorFlow's own ops
inside the graph (PNG pixels are those Pillow reads; JPEG pixels may differ
from Pillow's by a few levels, as JPEG decoders do). A folder that holds
anything else (BMP, WebP, TIFF, GIF, 16-bit or float images, CMYK) is
decoded by Pillow for every file, in ``tf.numpy_function``: slower, and the
same as reading the files by hand. Images are resized with bicubic
interpolation (TensorFlow's, with antialiasing, or Pillow's).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from limit_tf.data.formats import UserDataError

NATIVE_FORMATS = frozenset({"PNG", "JPEG"})  # measured: TF reads BMP and WebP unlike Pillow in some modes
NATIVE_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA"})
GRAY_MODES = frozenset({"1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F"})
CHECK_BATCH = 256
CACHE_ENV = "LIMIT_TF_CACHE"
CACHE_VERSION = 1


# --------------------------------------------------------------------------
# Pillow: headers, and decoding the files TensorFlow's ops do not read.


def _open_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserDataError(f"{path} is not a readable image ({type(e).__name__}: {e}).") from None


def _header(path: Path) -> tuple[tuple[int, int], str, str]:
    """``((width, height), mode, format)`` from the file's header, without decoding its pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size, image.mode, str(image.format)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserDataError(f"{path} is not a readable image ({type(e).__name__}: {e}).") from None


def _to_8_bit(image):
    """16-bit and 32-bit grayscale images scaled to 8 bits (PIL's own conversion clips them to 0 or 255)."""
    from PIL import Image

    if image.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
        return image
    values = np.asarray(image, np.float64)
    top = 65535.0  # 16-bit files; PIL opens some of them as "I"
    if image.mode == "F":
        top = 1.0 if values.size and values.max() <= 1.0 else 255.0
    return Image.fromarray(np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8), mode="L")


def pil_decode(path: str | os.PathLike, shape: tuple[int, int, int]) -> np.ndarray:
    """One image as a uint8 ``shape`` array: 8-bit, RGB or gray as ``shape`` says, resized (bicubic) if needed."""
    image = _to_8_bit(_open_image(Path(path))).convert("RGB" if shape[-1] == 3 else "L")
    if image.size != (shape[1], shape[0]):
        image = image.resize((shape[1], shape[0]), resample=3)  # 3: bicubic
    return np.asarray(image, np.uint8).reshape(shape)


# --------------------------------------------------------------------------
# The files.


@dataclasses.dataclass(frozen=True, eq=False)
class ImageFiles:
    """Image files that stand for a uint8 array of shape ``(N, *image_shape)``.

    Attributes:
      root: the folder the paths are relative to.
      paths: (N,) paths relative to ``root`` (``class/file.png``).
      image_shape: ``(height, width, channels)`` every image is decoded to.
      native: decoded by TensorFlow's ops (else by Pillow).
      sums, squares: (N, channels) float64: per file and channel, the sum of
        its pixel values (0-255) and of their squares, after decoding.
    """

    root: str
    paths: np.ndarray
    image_shape: tuple[int, int, int]
    native: bool
    sums: np.ndarray
    squares: np.ndarray

    dtype = np.dtype(np.uint8)
    ndim = 4

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.image_shape)

    def __len__(self) -> int:
        return len(self.paths)

    def full_path(self, i: int) -> str:
        return os.path.join(self.root, str(self.paths[i]))

    def __getitem__(self, key):
        if isinstance(key, tuple):
            head = self[key[0]]
            rest = key[1:]
            return head[rest] if isinstance(head, np.ndarray) else np.asarray(head)[(slice(None), *rest)]
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} is out of range for {len(self)} image files.")
            return self.decode_one(self.full_path(i % len(self)))
        if isinstance(key, slice):
            pick = np.arange(len(self))[key]
        else:
            pick = np.asarray(key)
            if pick.dtype == bool:
                if pick.shape != (len(self),):
                    raise IndexError(f"a mask of shape {pick.shape} for {len(self)} image files.")
                pick = np.flatnonzero(pick)
            pick = pick.astype(np.int64)
        return dataclasses.replace(self, paths=self.paths[pick], sums=self.sums[pick], squares=self.squares[pick])

    def decode_one(self, path: str) -> np.ndarray:
        """One file decoded as the pipeline decodes it."""
        if not self.native:
            return pil_decode(path, self.image_shape)
        import tensorflow as tf

        return self._tf_decode(tf.io.read_file(path)).numpy()

    def __array__(self, dtype=None, copy=None):
        """Every image decoded into one array: for small sets and tests; the pipelines never call it."""
        if not len(self):
            out = np.zeros(self.shape, np.uint8)
        else:
            import tensorflow as tf

            ds = tf.data.Dataset.range(len(self)).map(self.reader(), num_parallel_calls=tf.data.AUTOTUNE)
            out = np.concatenate([b.numpy() for b in ds.batch(1024)])
        return out if dtype is None else out.astype(dtype)

    # ------------------------------------------------------------------
    # Graph functions for tf.data.

    def _tf_decode(self, contents):
        import tensorflow as tf

        height, width, channels = self.image_shape
        image = tf.io.decode_image(contents, channels=channels, expand_animations=False)
        same = tf.logical_and(tf.shape(image)[0] == height, tf.shape(image)[1] == width)

        def resized():
            values = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bicubic", antialias=True)
            return tf.cast(tf.clip_by_value(tf.round(values), 0.0, 255.0), tf.uint8)

        image = tf.cond(same, lambda: image, resized)
        return tf.ensure_shape(image, self.image_shape)

    def reader(self):
        """A graph function: index (int64 scalar) -> the uint8 image of that file."""
        import tensorflow as tf

        relative = tf.constant(np.asarray(self.paths, str) if len(self) else [""], tf.string)
        paths = tf.strings.join([tf.constant(self.root + os.sep), relative])  # joined in TensorFlow: one copy

        if self.native:

            def read(i):
                return self._tf_decode(tf.io.read_file(paths[i]))

            return read
        shape = self.image_shape

        def read(i):
            image = tf.numpy_function(lambda p: pil_decode(p.decode(), shape), [paths[i]], tf.uint8, stateful=False)
            return tf.ensure_shape(image, shape)

        return read


# --------------------------------------------------------------------------
# Reading a folder.


def scan(root: str | os.PathLike, files: list[Path], *, image_size: int | None = None) -> ImageFiles:
    """Checks and measures image files: their headers first, then each file decoded once.

    Args:
      root: the folder; ``files`` lie under it.
      files: the image files, in the order they are to have.
      image_size: resize every image to ``image_size`` x ``image_size``
        (needed when the files have several sizes).

    Raises:
      UserDataError: a file that is not an image or does not decode (named),
        or images of several sizes without ``image_size``.
    """
    from absl import logging

    root = Path(root)
    relative = np.asarray([str(f.relative_to(root)) for f in files])
    stats = [f.stat() for f in files]
    listing = (
        relative,
        np.asarray([st.st_size for st in stats], np.int64),
        np.asarray([st.st_mtime_ns for st in stats], np.int64),
    )
    cache = _cache_file(root, image_size)
    found = _read_cache(cache, root, listing)
    if found is not None:
        logging.info("The %d image files under %s are as checked before (%s).", len(files), root, cache)
        return found
    headers = [_header(f) for f in files]
    color = any(mode not in GRAY_MODES for _, mode, _ in headers)
    sizes = {size for size, _, _ in headers}
    if len(sizes) > 1 and image_size is None:
        (w1, h1), (w2, h2) = sorted(sizes)[:2]
        first = next(f for f, h in zip(files, headers, strict=True) if h[0] == (w1, h1))
        second = next(f for f, h in zip(files, headers, strict=True) if h[0] == (w2, h2))
        raise UserDataError(
            f"the images have {len(sizes)} sizes (e.g. {first} is {w1}x{h1}, {second} is {w2}x{h2}); "
            "give --image_size to resize them all to one."
        )
    width, height = (image_size, image_size) if image_size is not None else next(iter(sizes))
    native = all(fmt in NATIVE_FORMATS and mode in NATIVE_MODES for _, mode, fmt in headers)
    channels = 3 if color else 1
    empty = np.zeros((len(files), channels))
    images = ImageFiles(str(root), relative, (height, width, channels), native, empty, empty)
    if len(files) > 5000:
        logging.info("Checking %d image files under %s (each is decoded once).", len(files), root)
    sums, squares = _measure(images)
    images = dataclasses.replace(images, sums=sums, squares=squares)
    _write_cache(cache, images, listing)
    return images


# --------------------------------------------------------------------------
# What a check found, kept for the next time.


def cache_dir() -> Path | None:
    """Where checks of folders are kept: ``$LIMIT_TF_CACHE``, else ``$XDG_CACHE_HOME/limit_tf`` or
    ``~/.cache/limit_tf``; None (no cache) when ``$LIMIT_TF_CACHE`` is ``off``."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("off", "0", "none", "") else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "limit_tf"


def _cache_file(root: Path, image_size: int | None) -> Path | None:
    import hashlib

    where = cache_dir()
    if where is None:
        return None
    key = hashlib.sha256(f"{root.resolve()}|{image_size}".encode()).hexdigest()[:20]
    return where / "folders" / f"{key}.npz"


def _read_cache(cache: Path | None, root: Path, listing) -> ImageFiles | None:
    """The cached :class:`ImageFiles` when the cache holds this folder with every file unchanged, else None."""
    if cache is None or not cache.is_file():
        return None
    paths, sizes, mtimes = listing
    try:
        with np.load(cache, allow_pickle=False) as kept:
            same = (
                int(kept["version"]) == CACHE_VERSION
                and str(kept["root"]) == str(root.resolve())
                and kept["paths"].shape == paths.shape
                and bool(np.all(kept["paths"] == paths))
                and np.array_equal(kept["sizes"], sizes)
                and np.array_equal(kept["mtimes"], mtimes)
            )
            if not same:
                return None
            shape = tuple(int(v) for v in kept["image_shape"])
            return ImageFiles(str(root), paths, shape, bool(kept["native"]), kept["sums"], kept["squares"])
    except (OSError, ValueError, KeyError):  # unreadable or of another layout: check again
        return None


def _write_cache(cache: Path | None, images: ImageFiles, listing) -> None:
    """Keeps what a check found (written whole or not at all; a cache that cannot be written is skipped)."""
    import tempfile

    if cache is None:
        return
    paths, sizes, mtimes = listing
    tmp = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as f:
            np.savez(
                f,
                version=CACHE_VERSION,
                root=str(Path(images.root).resolve()),
                paths=paths,
                sizes=sizes,
                mtimes=mtimes,
                image_shape=np.asarray(images.image_shape),
                native=images.native,
                sums=images.sums,
                squares=images.squares,
            )
        os.replace(tmp, cache)
    except OSError as e:
        from absl import logging

        logging.warning(
            "The check of %s could not be kept in %s (%s); the next run checks again.", images.root, cache, e
        )
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _measure(images: ImageFiles) -> tuple[np.ndarray, np.ndarray]:
    """Every file decoded once: per file and channel, the pixel sum and sum of squares.
    A file that fails is found and named."""
    import tensorflow as tf

    read = images.reader()

    def measure(i):
        pixels = tf.reshape(tf.cast(read(i), tf.float64), [-1, images.image_shape[-1]])
        return tf.reduce_sum(pixels, axis=0), tf.reduce_sum(tf.square(pixels), axis=0)

    ds = tf.data.Dataset.range(len(images)).map(measure, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.autotune.enabled = False  # as limit_tf.data.pipeline.finish_pipeline: no wait when the pass ends
    sums, squares = [], []
    try:
        for s, q in ds.batch(CHECK_BATCH).prefetch(2).with_options(options):
            sums.append(s.numpy())
            squares.append(q.numpy())
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, tf.errors.InternalError) as e:
        start = CHECK_BATCH * len(sums)
        for i in range(start, len(images)):
            path = images.full_path(i)
            try:
                images.decode_one(path)
            except Exception as bad:  # noqa: BLE001 - any failure of one file is that file's fault
                if isinstance(bad, UserDataError):
                    raise
                raise UserDataError(f"{path} is not a readable image ({_first_line(bad)}).") from None
        raise UserDataError(f"an image under {images.root} does not decode ({_first_line(e)}).") from None
    k = images.image_shape[-1]
    if not sums:
        return np.zeros((0, k)), np.zeros((0, k))
    return np.concatenate(sums), np.concatenate(squares)


def _first_line(error: Exception) -> str:
    """TensorFlow's message without its op and device decorations."""
    import re

    text = (getattr(error, "message", None) or str(error)).strip()
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text.splitlines()[0] if text else "")
    return re.sub(r"\s*\[Op:.*$", "", text) or type(error).__name__


def channel_statistics(images: ImageFiles) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation on the [0, 1] scale, from the files' sums."""
    count = float(len(images) * images.image_shape[0] * images.image_shape[1])
    if count == 0:
        k = images.image_shape[-1]
        return (0.0,) * k, (1.0,) * k
    mean = images.sums.sum(axis=0) / count
    variance = np.maximum(images.squares.sum(axis=0) / count - mean**2, 0.0)
    std = np.maximum(np.sqrt(variance) / 255.0, 1e-8)
    return tuple((mean / 255.0).tolist()), tuple(std.tolist())
