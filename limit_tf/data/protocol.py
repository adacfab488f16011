"""Noisy train / validation / test splits in the paper's protocol.

Protocol (``../shared/DESIGN.md`` section 4): the official training set is
split into train/validation (MNIST 48k/12k, CIFAR 40k/10k); a training subset
of ``n`` examples is drawn from the train part; the same noise model corrupts
train and validation labels (validation can be kept clean); the official
test set stays clean. One seed fixes split, subset and noise; it is separate
from the weights' seed. Subsets are nested: for one seed, the first ``n``
training examples and their noisy labels do not depend on ``n``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from limit_tf import noise as noise_lib
from limit_tf.data import registry
from limit_tf.data.formats import DataFileError, RawData


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: inputs, observed and clean labels, and source indices.

    Attributes:
      x: inputs (uint8 images or float features), shape (N, ...); for an
        image folder, the :class:`~limit_tf.data.files.ImageFiles` that
        stand for its images (read from their files as they are needed).
      labels: observed labels (noisy for train, and for validation unless
        it is kept clean), int64 (N,).
      clean_labels: true labels, int64 (N,).
      source_indices: each example's index in the original array it came
        from (the official training or test set).
      origins: for your own data, where each example came from (its file,
        or its row in the table); None for the named datasets.
    """

    x: np.ndarray
    labels: np.ndarray
    clean_labels: np.ndarray
    source_indices: np.ndarray
    origins: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def noise_mask(self) -> np.ndarray:
        """True where the observed label differs from the clean one."""
        return self.labels != self.clean_labels

    @property
    def noise_rate(self) -> float:
        return float(self.noise_mask.mean()) if len(self) else 0.0


@dataclasses.dataclass(frozen=True)
class NoisyDataset:
    """Train / validation / test splits with label noise, plus what a model needs to know.

    Attributes:
      class_names: a name per class (index = label), for tables and figures.
      mean, std: input normalization on the [0, 1] scale for uint8 images
        (per channel, or per feature for tabular data).
      augment: training batches get a random crop and flip (CIFAR).
      truth_known: whether ``clean_labels`` are the true labels (benchmarks,
        and your data with injected noise). For your data taken as given
        they are the given labels, and nothing is known of the truth.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    train: Split
    validation: Split
    test: Split
    transition_matrix: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False
    class_names: tuple[str, ...] = ()
    truth_known: bool = True
    num_dropped: int = 0  # training examples removed by cleaning (limit_tf.train.cleaned)

    def __post_init__(self):
        if not self.class_names:
            object.__setattr__(self, "class_names", tuple(str(k) for k in range(self.num_classes)))

    @property
    def realized_noise_rate(self) -> float:
        """Fraction of corrupted labels in the training split."""
        return self.train.noise_rate


def _check_labels(y: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{what} have shape {y.shape}: a 1-D array of integer class ids is required.")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y)):
            raise ValueError(f"{what} have dtype {y.dtype}: integer class ids are required.")
        bad = np.flatnonzero(y != np.round(y))
        if bad.size:
            raise ValueError(
                f"{what} hold a fractional value ({float(y[bad[0]])!r} at index {bad[0]}): integer ids required."
            )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{what} span [{y.min()}, {y.max()}]: they must lie in [0, {num_classes}).")
    return y.astype(np.int64)


def _check_inputs(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"{what} have dtype {x.dtype}: numbers are required.")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{what} are complex ({x.dtype}): real numbers are required.")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x) | (np.abs(np.nan_to_num(x)) > np.finfo(np.float32).max)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{what} hold {float(x[first])!r} at index {first}: inputs must be finite and within float32's range."
            )
    return x


def make_noisy_splits(
    raw: RawData,
    *,
    name: str,
    num_classes: int,
    num_validation: int,
    matrix,
    num_train_examples: int | None = None,
    clean_validation: bool = False,
    seed: int = 0,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    augment: bool = False,
    class_names: Sequence[str] = (),
    origins: tuple[np.ndarray, np.ndarray] | None = None,
    truth_known: bool = True,
    given_labels: np.ndarray | None = None,
) -> NoisyDataset:
    """Applies the paper's protocol to raw arrays (see the module docstring).

    Args:
      raw: official train and test arrays.
      name: dataset name recorded in the result.
      num_classes: K.
      num_validation: how many of the official training examples become validation.
      matrix: (K, K) transition matrix applied to train and validation labels.
      num_train_examples: size n of the training subset (all of the train part if None).
      clean_validation: keep validation labels clean.
      seed: fixes the split, the subset and the noise.
      mean, std: normalization recorded for the input pipeline.
      augment: whether training batches are augmented (images only).
      class_names: a name per class.
      origins: ``(train origins, test origins)``: where each raw example came from.
      truth_known: whether the raw labels are the true ones.
      given_labels: labels someone gave every raw training example (CIFAR-N's
        human labels): they are the observed labels instead of noise drawn
        from ``matrix``, and the raw ones are the truth.
    """
    t = noise_lib.validate_transition_matrix(matrix, num_classes)
    y_train = _check_labels(raw.y_train, num_classes, f"{name} training labels")
    y_test = _check_labels(raw.y_test, num_classes, f"{name} test labels")
    total = y_train.shape[0]
    if not 0 <= num_validation < total:
        raise ValueError(f"num_validation={num_validation} is not allowed: it must be in [0, {total}).")
    train_part = total - num_validation
    n = train_part if num_train_examples is None else int(num_train_examples)
    if not 1 <= n <= train_part:
        raise ValueError(
            f"num_train_examples={num_train_examples} is not allowed for {name}: it must be in [1, {train_part}] "
            f"(the training part after {num_validation} validation examples)."
        )
    split_seq, train_noise_seq, val_noise_seq = np.random.SeedSequence(seed).spawn(3)
    perm = np.random.default_rng(split_seq).permutation(total)
    train_idx, val_idx = perm[:train_part], perm[train_part:]
    if given_labels is not None:
        given = _check_labels(np.asarray(given_labels), num_classes, f"{name} given labels")
        if given.shape != y_train.shape:
            raise ValueError(f"{name}: {given.shape[0]} given labels for {y_train.shape[0]} training examples.")
        train_idx = train_idx[:n]
        train_noisy = given[train_idx]
        val_noisy = y_train[val_idx] if clean_validation else given[val_idx]
        t = _empirical_matrix(y_train, given, num_classes)
    else:
        # Corrupt the whole train part, then take the first n: nested subsets.
        train_noisy = noise_lib.corrupt(y_train[train_idx], t, np.random.default_rng(train_noise_seq)).labels[:n]
        train_idx = train_idx[:n]
        if clean_validation:
            val_noisy = y_train[val_idx]
        else:
            val_noisy = noise_lib.corrupt(y_train[val_idx], t, np.random.default_rng(val_noise_seq)).labels
    train_origins, test_origins = origins if origins is not None else (None, None)
    pick = (lambda idx: None) if train_origins is None else (lambda idx: np.asarray(train_origins)[idx])
    return NoisyDataset(
        name=name,
        num_classes=num_classes,
        input_shape=tuple(raw.x_train.shape[1:]),
        train=Split(raw.x_train[train_idx], train_noisy, y_train[train_idx], train_idx, pick(train_idx)),
        validation=Split(raw.x_train[val_idx], val_noisy, y_train[val_idx], val_idx, pick(val_idx)),
        test=Split(raw.x_test, y_test, y_test, np.arange(y_test.shape[0]), test_origins),
        transition_matrix=t,
        mean=tuple(mean),
        std=tuple(std),
        augment=augment,
        class_names=tuple(class_names),
        truth_known=truth_known,
    )


def _empirical_matrix(clean: np.ndarray, given: np.ndarray, k: int) -> np.ndarray:
    """``T[i, j]``: the share of examples of class ``i`` that were given ``j`` (a class nobody has: the identity)."""
    counts = np.zeros((k, k))
    np.add.at(counts, (clean, given), 1.0)
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.eye(k), where=rows > 0)


def resolve_matrix(noise: str, noise_rate: float, noise_matrix, num_classes: int, dataset: str) -> np.ndarray:
    if noise_matrix is not None:
        return noise_lib.validate_transition_matrix(noise_matrix, num_classes)
    return noise_lib.transition_matrix(noise, num_classes, noise_rate, dataset)


def load_noisy_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    num_train_examples: int | None = None,
    noise: str = "uniform",
    noise_rate: float = 0.0,
    noise_matrix=None,
    clean_validation: bool = False,
    seed: int = 0,
    source: str = "auto",
    allow_download: bool = False,
    verify: bool = True,
) -> NoisyDataset:
    """Loads a named dataset and corrupts its labels in the paper's protocol.

    Example::

        from limit_tf import data
        ds = data.load_noisy_dataset("mnist", data_dir="../shared/data",
                                     num_train_examples=1000, noise="uniform",
                                     noise_rate=0.8, seed=0)
        ds.realized_noise_rate            # ~0.8
        train, steps = data.training_stream(ds, batch_size=256, epochs=20)

    Args:
      name: ``mnist``, ``fashion_mnist``, ``cifar10`` or ``cifar100``.
      data_dir: where the original files are (defaults to ``$LIMIT_DATA_DIR``).
      num_train_examples: training subset size n (default: the whole train part).
      noise: a name from :data:`limit_tf.noise.NOISE_MODELS`.
      noise_rate: the noise rate in ``[0, 1)``.
      noise_matrix: a user transition matrix; overrides ``noise``/``noise_rate``.
      clean_validation: keep validation labels clean.
      seed: the data seed (split, subset and noise).
      source: ``auto``, ``local`` or ``tfds`` (see :func:`registry.load_raw`).
      allow_download: let tfds download when nothing is found offline.
      verify: check local files against their published checksums.
    """
    from limit_tf.data import cifar_n

    spec = registry.get_spec(name)
    human = cifar_n.parse(name)
    if human is not None and (noise_matrix is not None or (noise != "none" and noise_rate > 0)):
        raise ValueError(f"{name} has human labels: no noise is added to them (use --noise_rate=0).")
    if human is not None:
        matrix = np.eye(spec.num_classes)
    else:
        matrix = resolve_matrix(noise, noise_rate, noise_matrix, spec.num_classes, name)
    limit = spec.train_size - spec.num_validation
    if num_train_examples is not None and not 1 <= int(num_train_examples) <= limit:
        raise ValueError(
            f"num_train_examples={num_train_examples} is not allowed for {name}: it must be in [1, {limit}]."
        )
    raw = registry.load_raw(spec.name, data_dir, source=source, allow_download=allow_download, verify=verify)
    given = None
    if human is not None:
        root = registry.resolve_data_dir(data_dir) or Path(".")
        given, clean = cifar_n.human_labels(*human, root, num_train=len(raw.y_train))
        differ = int(np.sum(clean != raw.y_train))
        if differ:
            raise DataFileError(
                f"the clean labels of {name}'s label file differ from the CIFAR batches' at {differ} of "
                f"{len(clean)} images: the label file and the images are not of the same set, or not in the same order."
            )
    # Smaller copies (tfds mock data, truncated files) keep the split's proportions.
    num_validation = spec.num_validation
    if len(raw.y_train) != spec.train_size:
        num_validation = max(1, round(len(raw.y_train) * spec.num_validation / spec.train_size))
    return make_noisy_splits(
        raw,
        name=name,
        num_classes=spec.num_classes,
        num_validation=num_validation,
        matrix=matrix,
        num_train_examples=num_train_examples,
        clean_validation=clean_validation,
        seed=seed,
        mean=spec.mean,
        std=spec.std,
        augment=spec.augment,
        class_names=spec.class_names,
        given_labels=given,
    )


def from_arrays(
    x,
    y,
    *,
    x_test=None,
    y_test=None,
    num_classes: int | None = None,
    class_names: Sequence[str] = (),
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    num_train_examples: int | None = None,
    noise: str = "uniform",
    noise_rate: float = 0.0,
    noise_matrix=None,
    clean_validation: bool = False,
    seed: int = 0,
    normalize: bool = False,
    name: str = "arrays",
) -> NoisyDataset:
    """Builds a :class:`NoisyDataset` from in-memory arrays (images or tabular).

    ``y`` holds the *clean* labels; noise is added as in
    :func:`load_noisy_dataset`. Without ``x_test``, a clean test set of
    ``test_fraction`` is held out first (with the data seed).

    Args:
      x: inputs, shape (N, ...). uint8 images or finite float features.
      y: clean integer labels, shape (N,).
      x_test, y_test: an explicit clean test set.
      num_classes: K (default: ``max(y) + 1``).
      class_names: a name per class.
      validation_fraction: share of the non-test data used for validation.
      test_fraction: share held out as test when ``x_test`` is not given.
      normalize: standardize each feature with the training part's mean/std
        (otherwise the inputs are used as they are; uint8 images are always
        scaled to [0, 1]).
      Other args: as in :func:`load_noisy_dataset`.

    Raises:
      ValueError: mismatched shapes, NaN or non-numeric inputs, fractional
        or out-of-range labels, bad fractions.
    """
    x = _check_inputs(x, "x")
    y = np.asarray(y)
    if x.ndim < 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x has shape {x.shape} and y {y.shape}: x must be (N, ...) with N = len(y).")
    k = int(num_classes) if num_classes is not None else int(np.max(y)) + 1
    y = _check_labels(y, k, "labels y")
    for frac, what in ((validation_fraction, "validation_fraction"), (test_fraction, "test_fraction")):
        if not 0.0 < frac < 1.0:
            raise ValueError(f"{what}={frac!r} is not allowed: it must be in (0, 1).")
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test and y_test must be given together.")
    if class_names and len(class_names) != k:
        raise ValueError(f"class_names has {len(class_names)} names for {k} classes.")
    if x_test is None:
        perm = np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[3]).permutation(x.shape[0])
        num_test = max(1, int(round(test_fraction * x.shape[0])))
        test_idx, rest = perm[:num_test], perm[num_test:]
        x_test, y_test, x, y = x[test_idx], y[test_idx], x[rest], y[rest]
    else:
        x_test = _check_inputs(x_test, "x_test")
        y_test = _check_labels(y_test, k, "labels y_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise ValueError(f"x_test has examples of shape {x_test.shape[1:]}, x of {x.shape[1:]}: they must match.")
    raw = RawData(x, y, np.asarray(x_test), np.asarray(y_test))
    matrix = resolve_matrix(noise, noise_rate, noise_matrix, k, name)
    dataset = make_noisy_splits(
        raw,
        name=name,
        num_classes=k,
        num_validation=max(1, int(round(validation_fraction * y.shape[0]))),
        matrix=matrix,
        num_train_examples=num_train_examples,
        clean_validation=clean_validation,
        seed=seed,
        augment=False,
        class_names=class_names,
    )
    return standardized(dataset, per="feature") if normalize else dataset


def standardized(dataset: NoisyDataset, *, per: str) -> NoisyDataset:
    """The dataset with its normalization set from the training split's statistics.

    Args:
      per: ``"feature"`` (each input value: tables) or ``"channel"`` (images).
    """
    from limit_tf.data import files

    if isinstance(dataset.train.x, files.ImageFiles):
        if per != "channel":
            raise ValueError(f"per={per!r} is not allowed for image files: they are standardized per channel.")
        mean, std = files.channel_statistics(dataset.train.x)
        return dataclasses.replace(dataset, mean=mean, std=std)
    x = dataset.train.x.astype(np.float64)
    x = x / 255.0 if dataset.train.x.dtype == np.uint8 else x
    values = x.reshape(len(dataset.train), -1) if per == "feature" else x.reshape(-1, x.shape[-1])
    mean = tuple(values.mean(axis=0).tolist())
    std = tuple(np.maximum(values.std(axis=0), 1e-8).tolist())
    return dataclasses.replace(dataset, mean=mean, std=std)


def load_user_dataset(
    dataset: str,
    *,
    test_data: str | None = None,
    data_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    label_column: str = "label",
    allow_download: bool = False,
    validation_fraction: float = 0.2,
    num_train_examples: int | None = None,
    noise: str = "none",
    noise_rate: float = 0.0,
    noise_matrix=None,
    clean_validation: bool = False,
    seed: int = 0,
) -> NoisyDataset:
    """Your data (``folder:PATH``, ``csv:PATH``, ``npz:PATH`` or ``tfds:NAME``) in the protocol.

    The labels are taken as given: a validation split of ``validation_fraction``
    is drawn from the data (its labels as noisy as the rest), and the clean
    test set is ``test_data`` (a path in the same format; for ``tfds:`` its
    ``test`` split), or none. With ``noise_rate > 0`` noise is injected on
    top, and the given labels play the clean ones. See :mod:`limit_tf.data.user`.

    Raises:
      UserDataError: the data cannot be read or used (the message names where).
    """
    from limit_tf.data import user

    kind, target = user.parse(dataset)
    if kind == "tfds":
        train, test = user.load_tfds(target, registry.resolve_data_dir(data_dir), allow_download=allow_download)
    else:
        read = dict(data_dir=data_dir, image_size=image_size, label_column=label_column)
        train = user.load(dataset, **read)
        test = user.load(f"{kind}:{test_data}", **read) if test_data else None
    if test is not None:
        test = _aligned(test, train, test_data or dataset)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction={validation_fraction!r} is not allowed: it must be in (0, 1).")
    if isinstance(train.x, np.ndarray):  # image files were checked as they were read
        _check_inputs(train.x, f"the inputs of {dataset}")
    k = len(train.class_names)
    injected = noise != "none" and (noise_rate > 0 or noise_matrix is not None)
    data = make_noisy_splits(
        user.as_raw(train, test),
        name=dataset,
        num_classes=k,
        num_validation=max(1, int(round(validation_fraction * len(train.y)))),
        matrix=resolve_matrix(noise if injected else "none", noise_rate if injected else 0.0, noise_matrix, k, dataset),
        num_train_examples=num_train_examples,
        clean_validation=clean_validation,
        seed=seed,
        augment=False,
        class_names=train.class_names,
        origins=(train.origins, None if test is None else test.origins),
        truth_known=injected,
    )
    _check_every_class_trains(data, train, dataset, validation_fraction)
    return standardized(data, per="channel" if train.is_image else "feature")


def _check_every_class_trains(data: NoisyDataset, given, dataset: str, validation_fraction: float) -> None:
    """Refuses data whose training split holds one class once the validation split is drawn; warns when
    some classes have no training example left (the network can never predict them)."""
    from absl import logging

    from limit_tf.data import user

    present = np.bincount(data.train.labels, minlength=data.num_classes)
    absent = [data.class_names[k] for k in range(data.num_classes) if present[k] == 0]
    if not absent:
        return
    counts = np.bincount(given.y, minlength=data.num_classes)
    if np.count_nonzero(present) < 2:
        only = data.class_names[int(np.argmax(present))]
        raise user.UserDataError(
            f"{dataset}: after the validation split (--validation_fraction={validation_fraction:g}) is drawn, "
            f"the training split holds one class ({only!r}) of {data.num_classes} (the smallest has "
            f"{int(counts.min())} example{'s' if counts.min() != 1 else ''}): give every class several examples."
        )
    logging.warning(
        "%s: class%s %s ha%s no training example left after the validation split; the network cannot learn %s.",
        dataset,
        "es" if len(absent) > 1 else "",
        ", ".join(repr(a) for a in absent),
        "ve" if len(absent) > 1 else "s",
        "them" if len(absent) > 1 else "it",
    )


def _aligned(test, train, where: str):
    """The test set with its labels renumbered to the training set's class names."""
    from limit_tf.data import user

    unknown = sorted(set(test.class_names) - set(train.class_names))
    if unknown:
        raise user.UserDataError(f"the test data {where} has classes the training data lacks: {', '.join(unknown)}.")
    if test.x.shape[1:] != train.x.shape[1:]:
        raise user.UserDataError(
            f"the test data {where} has inputs of shape {test.x.shape[1:]}, the training data {train.x.shape[1:]}."
        )
    index = {name: k for k, name in enumerate(train.class_names)}
    y = np.asarray([index[test.class_names[label]] for label in test.y], np.int64)
    return dataclasses.replace(test, y=y, class_names=train.class_names)


CLEAN_MODES = ("drop", "relabel")


def clean(dataset: NoisyDataset, flagged, suggested, mode: str = "drop") -> NoisyDataset:
    """The dataset with its training split cleaned of the ``flagged`` examples.

    Args:
      dataset: the noisy dataset.
      flagged: a boolean mask over the training split (a detection's flags).
      suggested: per training example, the class name to relabel it with.
      mode: ``drop`` removes the flagged examples; ``relabel`` gives them
        their suggested class.
    """
    flagged = np.asarray(flagged, bool)
    if mode not in CLEAN_MODES:
        raise ValueError(f"mode={mode!r} is not allowed; allowed: {', '.join(CLEAN_MODES)}.")
    if flagged.shape != (len(dataset.train),):
        raise ValueError(f"{flagged.size} flags for a training split of {len(dataset.train)} examples.")
    train = dataset.train
    if mode == "drop":
        keep = ~flagged
        pick = lambda a: None if a is None else a[keep]  # noqa: E731
        train = Split(*(pick(getattr(train, f)) for f in ("x", "labels", "clean_labels", "source_indices", "origins")))
    else:
        index = {name: k for k, name in enumerate(dataset.class_names)}
        labels = np.where(flagged, [index.get(name, -1) for name in suggested], train.labels).astype(np.int64)
        if (labels < 0).any():
            raise ValueError("a suggested label is not one of the dataset's classes.")
        train = dataclasses.replace(train, labels=labels)
    return dataclasses.replace(dataset, train=train, num_dropped=len(flagged) - len(train))
