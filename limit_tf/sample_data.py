r"""Example data in the formats of your own data, made from the MNIST files, with labels made wrong on purpose.

    python -m limit_tf.sample_data --kind=folder --out=runs/my_images --num_examples=3000 --noise_rate=0.3
    python -m limit_tf.sample_data --kind=csv --out=runs/my_table.csv --num_examples=3000 --noise_rate=0.3

``folder`` writes PNG files into one subfolder per class (``zero`` ...
``nine``), a ``noise_rate`` share of them into a wrong class folder chosen
uniformly; ``csv`` writes a table of 7x7 average-pooled pixel features and a
``label`` column, a share of the labels wrong. Both also write the truth
beside the data (``<out>.truth.csv``: each example's origin, given and true
label), which the README's walk-through and the tests use to check what
detection finds; your own data has no such file. ``--test_out`` writes a
clean test set in the same format from MNIST's test images.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from limit_tf import noise as noise_lib
from limit_tf import workdir
from limit_tf.data import registry

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _mislabel(labels: np.ndarray, noise_rate: float, seed: int) -> np.ndarray:
    t = noise_lib.transition_matrix("uniform", 10, noise_rate, "mnist")
    return noise_lib.corrupt(labels, t, np.random.default_rng(seed)).labels


def write_folder(images: np.ndarray, labels: np.ndarray, out: str | Path, *, given=None) -> list[tuple[str, int, int]]:
    """PNG files under ``out/<class name>/``; returns ``(relative path, given label, true label)`` per image."""
    from PIL import Image

    out = Path(out)
    given = labels if given is None else given
    rows = []
    for i, (image, label, true) in enumerate(zip(images, given, labels, strict=True)):
        folder = out / CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:05d}.png"
        Image.fromarray(image.squeeze(-1)).save(path)
        rows.append((str(path.relative_to(out)), int(label), int(true)))
    return rows


def pooled_features(images: np.ndarray) -> np.ndarray:
    """7x7 average pooling of 28x28 images: 16 features in [0, 1]."""
    x = images.reshape(len(images), 4, 7, 4, 7).astype(np.float32) / 255.0
    return x.mean(axis=(2, 4)).reshape(len(images), 16)


def write_csv(features: np.ndarray, labels, out: str | Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*(f"f{j}" for j in range(features.shape[1])), "label"])
    for row, label in zip(features, labels, strict=True):
        writer.writerow([*(f"{v:.5f}" for v in row), CLASS_NAMES[int(label)]])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    workdir.write_text(out, buffer.getvalue())


def make(
    kind: str,
    out: str | Path,
    *,
    data_dir=None,
    num_examples: int = 3000,
    noise_rate: float = 0.3,
    seed: int = 0,
    test_out: str | Path | None = None,
    num_test: int = 1000,
) -> dict:
    """Writes example data; returns a summary (files, realized noise rate)."""
    raw = registry.load_raw("mnist", data_dir)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(raw.y_train))[:num_examples]
    images, labels = raw.x_train[pick], raw.y_train[pick]
    given = _mislabel(labels, noise_rate, seed)
    out = Path(out)
    if kind == "folder":
        rows = write_folder(images, labels, out, given=given)
    elif kind == "csv":
        write_csv(pooled_features(images), given, out)
        rows = [(str(i + 1), int(g), int(t)) for i, (g, t) in enumerate(zip(given, labels, strict=True))]
    else:
        raise ValueError(f"kind={kind!r} is not allowed; allowed: folder, csv.")
    truth = io.StringIO()
    writer = csv.writer(truth, lineterminator="\n")
    writer.writerow(["origin", "given_label", "true_label"])
    writer.writerows([(origin, CLASS_NAMES[g], CLASS_NAMES[t]) for origin, g, t in rows])
    workdir.write_text(f"{out}.truth.csv", truth.getvalue())
    if test_out is not None:
        test_pick = rng.permutation(len(raw.y_test))[:num_test]
        test_images, test_labels = raw.x_test[test_pick], raw.y_test[test_pick]
        if kind == "folder":
            write_folder(test_images, test_labels, test_out)
        else:
            write_csv(pooled_features(test_images), test_labels, test_out)
    return {"out": str(out), "examples": len(rows), "realized_noise_rate": float(np.mean(given != labels))}


def main(argv) -> None:
    del argv
    from absl import flags

    f = flags.FLAGS
    summary = make(
        f.kind,
        f.out,
        data_dir=f.data_dir,
        num_examples=f.num_examples,
        noise_rate=f.noise_rate,
        seed=f.seed,
        test_out=f.test_out,
    )
    print(summary)


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_enum("kind", "folder", ["folder", "csv"], "What to write.")
    flags.DEFINE_string("out", None, "Where (a directory for folder, a file for csv).", required=True)
    flags.DEFINE_string("test_out", None, "Also write a clean test set there.")
    flags.DEFINE_string("data_dir", None, "Directory with mnist/*.gz (default: $LIMIT_DATA_DIR).")
    flags.DEFINE_integer("num_examples", 3000, "Training examples.")
    flags.DEFINE_float("noise_rate", 0.3, "Share of wrong labels (uniform noise).")
    flags.DEFINE_integer("seed", 0, "Which examples and which labels go wrong.")


if __name__ == "__main__":
    from limit_tf import cli

    cli.run(main, define_flags)
