r"""Example data in the formats of your own data, with labels made wrong on purpose.

    python -m limit_tf.sample_data --kind=folder --out=runs/my_images --num_examples=3000 --noise_rate=0.3
    python -m limit_tf.sample_data --kind=csv --out=runs/my_table.csv --num_examples=3000 --noise_rate=0.3
    python -m limit_tf.sample_data --source=wine --kind=csv --out=runs/wine.csv --test_out=runs/wine_test.csv --noise_rate=0.25

``--source``: ``mnist`` (the MNIST files under ``--data_dir``), or one of
the small real datasets that scikit-learn ships (no network): ``digits``
(1,797 8x8 handwritten digits; images or 64 pixel columns),
``breast_cancer`` (569 rows, 30 columns, malignant/benign) and ``wine``
(178 rows, 13 columns, three cultivars). For those, ``--test_out`` holds a
fifth of the rows out as the clean test set and ``--num_examples`` is capped
by what is left.

``folder`` writes PNG files into one subfolder per class (``zero`` ...
``nine``), a ``noise_rate`` share of them into a wrong class folder chosen
uniformly; ``csv`` writes a table of 7x7 average-pooled pixel features and a
``label`` column (the source's own columns for scikit-learn's tables), a
share of the labels wrong. Both also write the truth beside the data
(``<out>.truth.csv``: each example's origin, as in ``label_issues.csv``'s
first column, given and true label), which the README's walk-through and the tests use to check what
detection finds; your own data has no such file. ``--test_out`` writes a
clean test set in the same format from MNIST's test images.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import numpy as np

from limit_tf import noise as noise_lib
from limit_tf import workdir
from limit_tf.data import registry

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SOURCES = ("mnist", "digits", "breast_cancer", "wine")


@dataclasses.dataclass(frozen=True)
class Source:
    """A source's training and test examples: images (N, H, W, 1) uint8 or table rows, and clean labels."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    columns: tuple[str, ...] = ()  # tables: the feature names


def load_source(name: str, kind: str, *, data_dir=None, seed: int = 0, test_share: float = 0.2) -> Source:
    """The examples of ``name`` in the form that ``kind`` (folder or csv) writes."""
    if name == "mnist":
        raw = registry.load_raw("mnist", data_dir)
        if kind == "csv":
            columns = tuple(f"f{j}" for j in range(16))
            return Source(
                pooled_features(raw.x_train), raw.y_train, pooled_features(raw.x_test), raw.y_test, CLASS_NAMES, columns
            )
        return Source(raw.x_train, raw.y_train, raw.x_test, raw.y_test, CLASS_NAMES)
    from sklearn import datasets

    if name not in SOURCES:
        raise ValueError(f"source={name!r} is not allowed; allowed: {', '.join(SOURCES)}.")
    bunch = getattr(datasets, f"load_{name}")()
    x, y = np.asarray(bunch.data), np.asarray(bunch.target, np.int64)
    if name == "digits":
        names = CLASS_NAMES
        if kind == "folder":
            x = np.round(bunch.images / 16.0 * 255.0).astype(np.uint8)[..., None]
        columns = tuple(f"pixel_{j}" for j in range(x.shape[1])) if kind == "csv" else ()
    else:
        if kind == "folder":
            raise ValueError(f"source={name!r} is a table: use kind=csv.")
        names = tuple(str(n) for n in bunch.target_names)
        columns = tuple(str(c).replace(" ", "_") for c in bunch.feature_names)
    order = np.random.default_rng(np.random.SeedSequence([seed, 7])).permutation(len(y))
    num_test = int(round(test_share * len(y)))
    test, rest = order[:num_test], order[num_test:]
    return Source(x[rest], y[rest], x[test], y[test], names, columns)


def _mislabel(labels: np.ndarray, noise_rate: float, seed: int, num_classes: int) -> np.ndarray:
    t = noise_lib.transition_matrix("uniform", num_classes, noise_rate, "mnist")
    return noise_lib.corrupt(labels, t, np.random.default_rng(seed)).labels


def write_folder(
    images: np.ndarray, labels: np.ndarray, out: str | Path, *, given=None, class_names=CLASS_NAMES
) -> list[tuple[str, int, int]]:
    """PNG files under ``out/<class name>/``; returns ``(relative path, given label, true label)`` per image."""
    from PIL import Image

    out = Path(out)
    given = labels if given is None else given
    rows = []
    for i, (image, label, true) in enumerate(zip(images, given, labels, strict=True)):
        folder = out / class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:05d}.png"
        Image.fromarray(image.squeeze(-1)).save(path)
        rows.append((str(path.relative_to(out)), int(label), int(true)))
    return rows


def pooled_features(images: np.ndarray) -> np.ndarray:
    """7x7 average pooling of 28x28 images: 16 features in [0, 1]."""
    x = images.reshape(len(images), 4, 7, 4, 7).astype(np.float32) / 255.0
    return x.mean(axis=(2, 4)).reshape(len(images), 16)


def write_csv(features: np.ndarray, labels, out: str | Path, *, class_names=CLASS_NAMES, columns=()) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*(columns or (f"f{j}" for j in range(features.shape[1]))), "label"])
    for row, label in zip(features, labels, strict=True):
        writer.writerow([*(f"{v:.5g}" for v in row), class_names[int(label)]])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    workdir.write_text(out, buffer.getvalue())


def make(
    kind: str,
    out: str | Path,
    *,
    source: str = "mnist",
    data_dir=None,
    num_examples: int = 3000,
    noise_rate: float = 0.3,
    seed: int = 0,
    test_out: str | Path | None = None,
    num_test: int = 1000,
) -> dict:
    """Writes example data; returns a summary (files, realized noise rate)."""
    if kind not in ("folder", "csv"):
        raise ValueError(f"kind={kind!r} is not allowed; allowed: folder, csv.")
    data = load_source(source, kind, data_dir=data_dir, seed=seed)
    names = data.class_names
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(data.y))[:num_examples]
    x, labels = data.x[pick], data.y[pick]
    given = _mislabel(labels, noise_rate, seed, len(names))
    out = Path(out)
    if kind == "folder":
        rows = write_folder(x, labels, out, given=given, class_names=names)
    else:
        write_csv(x, given, out, class_names=names, columns=data.columns)
        # Origins as label_issues.csv gives them: the line in the file (the header is line 1).
        rows = [(str(i + 2), int(g), int(t)) for i, (g, t) in enumerate(zip(given, labels, strict=True))]
    truth = io.StringIO()
    writer = csv.writer(truth, lineterminator="\n")
    writer.writerow(["origin", "given_label", "true_label"])
    writer.writerows([(origin, names[g], names[t]) for origin, g, t in rows])
    workdir.write_text(f"{out}.truth.csv", truth.getvalue())
    if test_out is not None:
        test_pick = rng.permutation(len(data.y_test))[:num_test]
        test_x, test_labels = data.x_test[test_pick], data.y_test[test_pick]
        if kind == "folder":
            write_folder(test_x, test_labels, test_out, class_names=names)
        else:
            write_csv(test_x, test_labels, test_out, class_names=names, columns=data.columns)
    return {"out": str(out), "examples": len(rows), "realized_noise_rate": float(np.mean(given != labels))}


def main(argv) -> None:
    del argv
    from absl import flags

    from limit_tf import cli

    f = flags.FLAGS
    if not f.out:
        cli.fail("--out is required: where to write the data (a directory for --kind=folder, a file for csv).")
    summary = make(
        f.kind,
        f.out,
        source=f.source,
        data_dir=f.data_dir,
        num_examples=f.num_examples,
        noise_rate=f.noise_rate,
        seed=f.noise_seed,
        test_out=f.test_out,
    )
    print(summary)


def define_flags() -> None:
    from absl import flags

    from limit_tf import cli

    flags.DEFINE_enum("source", "mnist", list(SOURCES), "Where the examples come from (see above).")
    flags.DEFINE_enum("kind", "folder", ["folder", "csv"], "What to write.")
    cli.define_shared_flags(out=(None, "the data (a directory for folder, a file for csv); required."))
    flags.DEFINE_string("test_out", None, "Also write a clean test set there.")
    flags.DEFINE_string("data_dir", None, "Directory with mnist/*.gz (default: $LIMIT_DATA_DIR).")
    flags.DEFINE_integer("num_examples", 3000, "Training examples.")
    flags.DEFINE_float("noise_rate", 0.3, "Share of wrong labels (uniform noise).")
    flags.DEFINE_integer("noise_seed", 0, "Which examples and which labels go wrong (as limit_tf.main's --noise_seed).")


if __name__ == "__main__":
    from limit_tf import cli

    cli.run(main, define_flags)
