r"""Real photographs with wrong labels: the README's image-folder recipe against the baselines, on CIFAR-10.

    python benchmarks/real_noise.py                                   # n = 10,000, uniform and pair 40%, 3 seeds
    python benchmarks/real_noise.py --seeds=1 --methods=limit,ce --noise_kinds=uniform      # one cell, two rows
    python benchmarks/real_noise.py --only_finished          # the table of what has finished, training nothing
    python benchmarks/real_noise.py --first_seed=1 --seeds=2 --methods=cleanlab   # seeds 1 and 2 added to the table
    python benchmarks/real_noise.py --noise_kinds=cifar10n:worst   # human labels (CIFAR-10_human.pt in --data_dir)

Per noise kind (``--noise_kinds``: ``uniform``, ``pair``: the paper's CIFAR-10
pair flips, truck -> automobile, bird -> airplane, deer -> horse, cat -> dog,
so 40% of four classes; or a CIFAR-10N label set, ``cifar10n:worst``,
``aggre``, ``random1`` .. ``random3``: the human annotators' labels of the
same photographs, read from the release's ``CIFAR-10_human.pt`` in
``--data_dir``, ``--noise_rates`` aside) and seed, it writes what a person with a photo
collection has: a folder of ``--n`` training photographs from the shared
CIFAR-10 copy, one subfolder per class, each file filed under its *wrong*
label where the noise drew one (hard links to one clean copy), and the clean
test folder. The runs see no truth; the truth stays in ``truth.json`` beside
the folder, and this script scores every row of each run's
``label_issues.csv`` against it. Per method (``--methods``):

- ``limit``: the README's recipe, ``python -m limit_tf.main --dataset=folder:...
  --test_data=... --method=limit`` with no other flag (the photo recipe:
  LIMIT_G, beta 1, ResNet-20, cosine schedule, 60 epochs), then
  ``python -m limit_tf.detection --run=...``;
- ``limit_l``: the paper's MNIST setting, ``--predictor=laplace --beta=10``;
- ``ce``: ``--method=ce`` (the same network, schedule and epochs), detected
  with the ``self_confidence`` score of its in-sample probabilities;
- ``ce_cleaned``: CE on the files the ``limit`` run did not flag
  (``--clean_from``);
- ``cleanlab``: confident learning (``cleanlab.filter.find_label_issues``,
  ``pip install cleanlab``; not a requirement of the package) on 4-fold
  cross-validated probabilities of the same CE network over the training
  split, ranked by self-confidence. It has no clean test accuracy of its own.

Seeds (``--seeds``): for ``uniform`` and ``pair`` a seed draws the noise
again and the runs keep the recipe's defaults (``--seed=0`` among them), as
a person's would, so the spread over seeds is the noise draw's; a CIFAR-10N
label set is the same on every seed, so there the seed is the runs'
``--seed`` (the validation split and the initial weights).

Reported per row: clean test accuracy; over every file of the folder, ROC AUC
of the score and the flagged files' precision and recall; the estimated share
of wrong labels against the training split's true share; wall time
(training and detection; cleanlab trains four times). Runs are ordinary work
dirs under ``--root`` (resumable); the table goes to ``--out`` (.json, .md)
after every row.

The table at ``--out`` grows: a row made now replaces the one of the same
noise, seed and method, and the rows of runs this invocation does not make
(other seeds or methods, or runs whose dirs are gone, made on another day or
machine) are kept (``--nokeep``: a table of this invocation's rows alone). So
seeds can be added one at a time (``--first_seed``), each run where there is
time for it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CIFAR = "cifar10_jpeg/cifar10_jpeg.npz"
METHODS = ("limit", "limit_l", "ce", "ce_cleaned", "cleanlab")
# Detection's default flagging and ordering rule; a detection made by an earlier one is made again (first,
# one threshold over all files, recorded without this key; then class by class, listed by the margin over
# each class's threshold, "estimate, class by class").
FLAGGING = "estimate, class by class; the classes in turn"
CLEANLAB_FOLDS = 4
FLAGS_OF = {
    "limit": ("--method=limit",),
    "limit_l": ("--method=limit", "--predictor=laplace", "--beta=10"),
    "ce": ("--method=ce",),
}


def define_flags() -> None:
    from absl import flags

    from limit_tf import cli

    cli.define_shared_flags(noise_rates=["0.4"], seeds=3)
    cli.define_shared_flags(
        root=str(HERE / "runs" / "real_noise"),
        out=(str(HERE / "results" / "real_noise"), "a path prefix (.json and .md added)."),
    )
    flags.DEFINE_list(
        "noise_kinds",
        ["uniform", "pair"],
        "Noise models: uniform, pair (CIFAR-10's); or human labels: cifar10n:worst|aggre|random1|random2|random3 "
        "(CIFAR-10_human.pt of the CIFAR-N release in --data_dir).",
    )
    flags.DEFINE_list("methods", list(METHODS), f"Rows: {', '.join(METHODS)}.")
    flags.DEFINE_integer("n", 10_000, "Training photographs (the first n of CIFAR-10's training set).")
    flags.DEFINE_integer("test_n", 10_000, "Clean test photographs (spread over the classes).")
    flags.DEFINE_string(
        "data_dir", None, "Holds cifar10_jpeg/ (and CIFAR-10_human.pt for cifar10n:SET; default: $LIMIT_DATA_DIR)."
    )
    flags.DEFINE_list("extra", [], "More flags for every training run (e.g. --epochs=2 for a smoke test).")
    flags.DEFINE_bool(
        "only_finished", False, "Train nothing: tabulate the rows whose runs have finished (an interrupted benchmark)."
    )
    flags.DEFINE_integer("first_seed", 0, "The first seed: seeds first_seed .. first_seed + seeds - 1 are run.")
    flags.DEFINE_bool(
        "keep",
        True,
        "Keep the rows of the table already at --out that this invocation does not make again (other seeds or "
        "methods; runs whose dirs are gone); --nokeep: the table holds this invocation's rows alone.",
    )


# --------------------------------------------------------------------------
# The folders.


def _decode(blob: np.ndarray, offsets: np.ndarray, i: int) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(blob[offsets[i] : offsets[i + 1]].tobytes())) as image:
        return np.asarray(image.convert("RGB"))


def _write_clean(source: Path, out: Path, n: int, test_n: int) -> tuple[list[str], np.ndarray]:
    """``out/train/<class>/NNNNN.png`` (first n) and ``out/test/...`` (test_n, every k-th); once."""
    from PIL import Image

    from limit_tf import workdir

    data = np.load(source)
    names = [str(c) for c in data["class_names"]]
    labels = data["train_labels"][:n].astype(np.int64)
    done = out / "done.json"
    if done.is_file() and json.loads(done.read_text()) == {"n": n, "test_n": test_n}:
        return names, labels
    for split, count in (("train", n), ("test", test_n)):
        y = data[f"{split}_labels"].astype(np.int64)
        blob, offsets = data[f"{split}_jpeg"], data[f"{split}_offsets"]  # read once: each access unzips the array
        picks = range(count) if split == "train" else np.linspace(0, len(y) - 1, count).astype(int)
        for i in picks:
            path = out / split / names[y[i]] / f"{i:05d}.png"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                with workdir.atomic_path(path) as tmp:
                    Image.fromarray(_decode(blob, offsets, i)).save(tmp, "PNG")
    workdir.write_text(done, json.dumps({"n": n, "test_n": test_n}))
    return names, labels


SYNTHETIC = ("uniform", "pair")


def kind_problem(kind: str) -> str | None:
    """Why ``kind`` is not a noise kind of this benchmark (one phrase), or None."""
    from limit_tf.data import cifar_n

    if kind in SYNTHETIC:
        return None
    human = cifar_n.parse(kind)
    if human is None or human[0] != "cifar10n":
        sets = ", ".join(f"cifar10n:{s}" for s in cifar_n.LABEL_SETS["cifar10n"])
        return f"is not allowed; allowed: {', '.join(SYNTHETIC)}, {sets}"
    problem = cifar_n.problem(kind)
    return problem and f"is {problem}"


def cells_of(kinds, rates) -> list[tuple[str, float | None]]:
    """``(kind, rate)`` per cell: each synthetic kind at each rate; a human label set once (its rate is its own)."""
    return [(kind, rate) for kind in kinds for rate in ((None,) if kind not in SYNTHETIC else rates)]


def cell_name(kind: str, rate: float | None, n: int, seed: int) -> str:
    noise = f"{kind}{rate:g}" if rate is not None else kind.replace(":", "-")
    return f"{noise}_n{n}_seed{seed}"


def noisy_labels(
    kind: str, rate: float | None, labels: np.ndarray, num_classes: int, seed: int, data_dir: Path
) -> np.ndarray:
    """The labels the folder files each photograph under: drawn from a noise model, or a CIFAR-10N label set.

    Raises:
      SystemExit: the CIFAR-10N file is missing or damaged, or its clean labels
        are not the shared copy's (another order), in one line.
    """
    from limit_tf import noise
    from limit_tf.data import cifar_n

    if kind in SYNTHETIC:
        matrix = noise.transition_matrix(kind, num_classes, rate, dataset="cifar10")
        return noise.corrupt(labels, matrix, seed).labels
    try:
        human, clean = cifar_n.human_labels(*cifar_n.parse(kind), data_dir)
    except (OSError, ValueError) as e:  # FileNotFoundError, DataFileError: one line each
        raise SystemExit(f"error: {e}") from None
    n = len(labels)
    if not np.array_equal(clean[:n], labels):
        differ = int((clean[:n] != labels).sum())
        raise SystemExit(
            f"error: the clean labels of {cifar_n.find_label_file('cifar10n', data_dir)} differ from the shared "
            f"copy's on {differ} of the first {n} photographs: the file is not in the python batches' order."
        )
    return human[:n]


def noisy_folder(clean: Path, out: Path, names, labels, noisy, about: dict) -> dict:
    """The training photographs filed under their noisy labels (hard links), and the truth beside them (last)."""
    from limit_tf import workdir

    for i, (y, z) in enumerate(zip(labels, noisy, strict=True)):
        target = out / "train" / names[z] / f"{i:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(clean / "train" / names[y] / f"{i:05d}.png", target)
    truth = {
        **about,
        "realized_rate": float(np.mean(np.asarray(noisy) != labels)),
        "true_label": {f"{names[z]}/{i:05d}.png": names[y] for i, (y, z) in enumerate(zip(labels, noisy, strict=True))},
    }
    workdir.write_text(out / "truth.json", json.dumps(truth))
    return truth


# --------------------------------------------------------------------------
# Runs and their scores.


def _python(args, log: Path) -> float:
    """Runs ``python -m ...`` (as a user would) with its output in ``log``; returns the wall time."""
    start = time.perf_counter()
    with open(log, "a") as f:
        done = subprocess.run([sys.executable, *args], stdout=f, stderr=subprocess.STDOUT, cwd=REPO, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args[:3])} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - start


def _score_rows(issues: Path, truth: dict) -> dict:
    """ROC AUC, precision and recall over every row of ``label_issues.csv``, against the truth: the AUC of
    its ``rank`` (the list as a person reads it; flagged class by class, it is not the raw score's order)."""
    from sklearn import metrics as skm

    with open(issues, newline="") as f:
        rows = list(csv.DictReader(f))
    wrong = np.array([truth["true_label"][r["path"]] != r["observed_label"] for r in rows])
    order = np.array([-int(r["rank"]) for r in rows])
    flagged = np.array([r["flagged"] == "1" for r in rows])
    train = np.array([r["split"] == "train" for r in rows])
    tp = float((flagged & wrong).sum())
    return {
        "files_scored": len(rows),
        "roc_auc": float(skm.roc_auc_score(wrong, order)),
        "precision": tp / max(flagged.sum(), 1),
        "recall": tp / max(wrong.sum(), 1),
        "true_rate_train": float(wrong[train].mean()),
    }


def one_run(method: str, folder: Path, test: Path, run: Path, truth: dict, limit_run: Path, extra) -> dict:
    """Trains (or finds) one run with the CLI, detects, scores against the truth."""
    flags = FLAGS_OF.get(method, ("--method=ce", f"--clean_from={limit_run}"))
    _python(
        [
            "-m",
            "limit_tf.main",
            f"--dataset=folder:{folder}",
            f"--test_data={test}",
            f"--workdir={run}",
            *flags,
            *extra,
        ],
        run.parent / f"{run.name}.log",
    )
    results = json.loads((run / "results.json").read_text())
    row = {"method": method, "test_accuracy": results["test_accuracy"], "best_epoch": results["best_epoch"]}
    if method == "ce_cleaned":  # its use is the retrained classifier; its files were flagged by the limit run
        return {**row, "wall_s": results["train_wall_time_s"], **_flags_remade(run, limit_run)}
    from limit_tf import detection

    score = "limit" if method in ("limit", "limit_l") else "self_confidence"
    detect_s = _detect(run, score)
    found = json.loads((run / f"detection_{score}" / "detection.json").read_text())
    scored = _score_rows(run / f"detection_{score}" / "label_issues.csv", truth)
    return {
        **row,
        "estimated_rate": found["estimated_noise_rate"],
        "estimate_error": found["estimated_noise_rate"] - scored["true_rate_train"],
        "estimates": found.get("estimates"),
        **scored,
        "wall_s": results["train_wall_time_s"] + detect_s,  # the training loop's, kept in results.json
        # The current rule on the figures detection recorded: a reused detection may predate the rule.
        "trust_warning": detection.trust_warning(
            found.get("clean_accuracy_by_noise_estimate"), found["estimated_noise_rate"]
        ),
    }


def _flags_remade(run: Path, limit_run: Path) -> dict:
    """Whether the limit run's list was made again after ``run`` trained on it (a new flagging rule): then
    ``run`` dropped an earlier list's files, and its row says so until its dir is deleted and it trains again."""
    lists = sorted(limit_run.glob("detection_*/label_issues.csv"))
    if not lists or lists[0].stat().st_mtime <= (run / "results.json").stat().st_mtime:
        return {}
    print(f"{run}: trained on an earlier list of {lists[0]}; delete {run} to train it on the current one", flush=True)
    return {"earlier_flags": True}


def _detect(run: Path, score: str) -> float:
    """Runs detection on a finished run, once: a rerun of the benchmark reuses it (and its wall time) while it is
    newer than the training's results and was made by the current flagging rule (:data:`FLAGGING`)."""
    from limit_tf import workdir

    record = run / f"detection_{score}" / "benchmark.json"
    if record.is_file() and record.stat().st_mtime >= (run / "results.json").stat().st_mtime:
        kept = json.loads(record.read_text())
        if kept.get("flagging") == FLAGGING:
            return kept["detect_s"]
    detect_s = _python(["-m", "limit_tf.detection", f"--run={run}"], run.parent / f"{run.name}.log")
    workdir.write_text(record, json.dumps({"detect_s": detect_s, "flagging": FLAGGING}))
    return detect_s


def cleanlab_row(folder: Path, test: Path, root: Path, truth: dict, extra) -> dict:
    """cleanlab's find_label_issues on 4-fold cross-validated CE probabilities of the training split."""
    try:
        import cleanlab
        from cleanlab.filter import find_label_issues
    except ImportError:
        return {"method": "cleanlab", "skipped": "not installed (pip install cleanlab)"}
    import detection as detection_benchmark  # beside this script

    from limit_tf import detection, runs
    from limit_tf.config import ExperimentConfig

    base = ExperimentConfig(
        workdir=str(root / "cleanlab"),
        dataset=f"folder:{folder}",
        test_data=str(test),
        noise="none",
        method="ce",
        **_overrides(extra),
    )
    dataset = runs.load_data(base)
    probs = detection_benchmark.cross_validated_probabilities(base, dataset, CLEANLAB_FOLDS, root / "cleanlab")
    start = time.perf_counter()
    labels = dataset.train.labels
    names = dataset.class_names
    wrong = np.array(
        [truth["true_label"][str(o)] != names[y] for o, y in zip(dataset.train.origins, labels, strict=True)]
    )
    flagged = find_label_issues(labels=labels, pred_probs=probs)
    scores = detection.self_confidence_score(probs, labels)
    from sklearn import metrics as skm

    tp = float((flagged & wrong).sum())
    # The four training loops, from each fold's results.json (so folds trained by an earlier, interrupted
    # invocation count too), plus confident learning itself.
    folds = [_train_s(root / "cleanlab" / f"ce_fold{k}") for k in range(CLEANLAB_FOLDS)]
    return {
        "method": "cleanlab",
        "cleanlab_version": cleanlab.__version__,
        "test_accuracy": None,
        "estimated_rate": float(flagged.mean()),
        "estimate_error": float(flagged.mean() - wrong.mean()),
        "files_scored": int(len(labels)),
        "roc_auc": float(skm.roc_auc_score(wrong, scores)),
        "precision": tp / max(flagged.sum(), 1),
        "recall": tp / max(wrong.sum(), 1),
        "true_rate_train": float(wrong.mean()),
        "folds_train_s": folds,
        "wall_s": sum(folds) + time.perf_counter() - start,
    }


def _train_s(run: Path) -> float:
    return json.loads((run / "results.json").read_text())["train_wall_time_s"]


def _overrides(extra) -> dict:
    """``--epochs=2``-style flags as config values (for the in-process cleanlab runs)."""
    out = {}
    for flag in extra:
        name, _, value = flag.lstrip("-").partition("=")
        for kind in (int, float, str):
            try:
                out[name] = kind(value)
                break
            except ValueError:
                continue
    return out


# --------------------------------------------------------------------------
# The table.


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    spread = f" +- {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
    return f"{np.mean(values):.3f}{spread}"


def to_markdown(cells: list[dict]) -> str:
    lines = [
        "| noise | method | seeds | clean test | ROC AUC (every file) | precision | recall | estimate error (points) "
        "| wall time (min) | detection warns |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for cell in cells:
        for row in cell["rows"]:
            if "skipped" not in row:
                noise = cell["kind"] if cell["rate"] is None else f"{cell['kind']} {cell['rate']:g}"
                groups.setdefault((noise, row["method"]), []).append(row)
    for (noise, method), rows in groups.items():

        def values(key, scale=1.0, rows=rows):
            return _mean([None if r.get(key) is None else scale * r[key] for r in rows])

        earlier = sum(bool(r.get("earlier_flags")) for r in rows)
        if earlier:
            method = f"{method} ({earlier} on an earlier list)"
        lines.append(
            f"| {noise} | {method} | {len(rows)} | {values('test_accuracy')} | {values('roc_auc')} | "
            f"{values('precision')} | {values('recall')} | {values('estimate_error', 100)} | "
            f"{values('wall_s', 1 / 60)} | {_warns(rows)} |"
        )
    return "\n".join(lines) + "\n"


def _warns(rows: list[dict]) -> str:
    """On how many seeds detection told the user not to act on its list ("-" for rows that detect nothing)."""
    judged = [r for r in rows if "trust_warning" in r]
    return f"{sum(r['trust_warning'] is not None for r in judged)} of {len(judged)}" if judged else "-"


def cifar_source(data_dir: str | None) -> Path:
    """The shared CIFAR-10 JPEG copy under ``data_dir`` (default: ``$LIMIT_DATA_DIR``), or a one-line exit."""
    root = Path(data_dir or os.environ.get("LIMIT_DATA_DIR", REPO.parent / "shared" / "data"))
    source = root / CIFAR
    if not source.is_file():
        raise SystemExit(f"error: {source} is missing: give --data_dir, the folder that holds {CIFAR}.")
    return source


def kept_cells(out: str, n: int, test_n: int, extra) -> list[dict]:
    """The cells of the table already at ``out`` (.json), to keep; none where there is none yet.

    Raises:
      SystemExit: that table was made with another ``--n``, ``--test_n`` or ``--extra`` (its rows are not
        comparable with this invocation's), in one line.
    """
    path = Path(f"{out}.json")
    if not path.is_file():
        return []
    try:
        table = json.loads(path.read_text())
        made_with = {"n": table["n"], "test_n": table["test_n"], "extra": list(table["extra"])}
        cells = list(table["cells"])
    except (ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"error: {path} is not a table of this benchmark ({e!r}): give another --out.") from None
    wanted = {"n": n, "test_n": test_n, "extra": list(extra)}
    if made_with != wanted:
        differ = ", ".join(f"--{k}={made_with[k]} (not {wanted[k]})" for k in wanted if made_with[k] != wanted[k])
        raise SystemExit(f"error: {path} holds rows made with {differ}: give another --out, or --nokeep to replace it.")
    return cells


def merged(kept: list[dict], made: list[dict]) -> list[dict]:
    """One cell per noise and seed, one row per method in it: a row made now replaces the kept one of its method.

    Cells keep the order in which their noise first appears (kept first), then go by seed; rows go in
    :data:`METHODS` order."""
    cells: dict[tuple, dict] = {}
    for cell in [*kept, *made]:
        key = (cell["kind"], cell["rate"], cell["seed"])
        rows = {row["method"]: row for row in cells.get(key, {"rows": []})["rows"]}
        rows.update({row["method"]: row for row in cell["rows"]})
        ordered = sorted(rows.values(), key=lambda row: METHODS.index(row["method"]))
        cells[key] = {**{name: value for name, value in cell.items() if name != "rows"}, "rows": ordered}
    noises = list(dict.fromkeys((kind, rate) for kind, rate, _ in cells))
    return [cells[key] for key in sorted(cells, key=lambda key: (noises.index(key[:2]), key[2]))]


def _save(f, cells: list[dict]) -> None:
    from limit_tf import workdir

    workdir.write_report(f.out, {"n": f.n, "test_n": f.test_n, "extra": f.extra, "cells": cells}, to_markdown(cells))


def _finished(method: str, run: Path) -> bool:
    """Whether a row's training is done (cleanlab: its four folds), so that scoring it trains nothing."""
    if method == "cleanlab":
        return all((run / f"ce_fold{k}" / "results.json").is_file() for k in range(CLEANLAB_FOLDS))
    return (run / "results.json").is_file()


def main(argv) -> None:
    del argv
    from absl import flags

    f = flags.FLAGS
    unknown = sorted(set(f.methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"error: --methods={unknown[0]} is not allowed; allowed: {', '.join(METHODS)}.")
    for kind in f.noise_kinds:
        problem = kind_problem(kind)
        if problem:
            raise SystemExit(f"error: --noise_kinds={kind} {problem}.")
    if f.first_seed < 0 or f.seeds < 1:
        bad = f"--first_seed={f.first_seed}" if f.first_seed < 0 else f"--seeds={f.seeds}"
        raise SystemExit(f"error: {bad} is not allowed; allowed: --first_seed >= 0 and --seeds >= 1.")
    kept = kept_cells(f.out, f.n, f.test_n, f.extra) if f.keep else []
    source = cifar_source(f.data_dir)
    root = Path(f.root)
    clean = root / "data" / f"clean_n{f.n}"
    print(f"writing the photographs once: {clean}", flush=True)
    names, labels = _write_clean(source, clean, f.n, f.test_n)
    cells = []
    for kind, rate in cells_of(f.noise_kinds, [float(r) for r in f.noise_rates]):
        for seed in range(f.first_seed, f.first_seed + f.seeds):
            name = cell_name(kind, rate, f.n, seed)
            folder = root / "data" / name
            if (folder / "truth.json").is_file():  # written last: the folder is whole
                truth = json.loads((folder / "truth.json").read_text())
            else:
                noisy = noisy_labels(kind, rate, labels, len(names), seed, source.parent.parent)
                truth = noisy_folder(clean, folder, names, labels, noisy, {"kind": kind, "rate": rate, "seed": seed})
            print(f"{name}: {100 * truth['realized_rate']:.1f}% of the labels are wrong", flush=True)
            cell = {"kind": kind, "rate": rate, "seed": seed, "realized_rate": truth["realized_rate"], "rows": []}
            cells.append(cell)
            # A synthetic kind's seed draws the noise, and its runs keep the recipe's defaults (--seed=0 among them),
            # as a person's would; a human label set is the same on every seed, so there the seed is the runs'.
            extra = list(f.extra) if rate is not None else [f"--seed={seed}", *f.extra]
            for method in f.methods:
                run = root / name / method
                if f.only_finished and not _finished(method, run):
                    continue
                run.parent.mkdir(parents=True, exist_ok=True)
                if method == "cleanlab":
                    row = cleanlab_row(folder / "train", clean / "test", root / name, truth, extra)
                else:
                    limit_run = root / name / "limit"
                    row = one_run(method, folder / "train", clean / "test", run, truth, limit_run, extra)
                print(json.dumps(row), flush=True)
                cell["rows"].append(row)
                _save(f, merged(kept, cells))  # after every row: an interrupted benchmark keeps what it finished
    _save(f, merged(kept, cells))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO))
    from limit_tf import cli

    cli.run(main, define_flags)
