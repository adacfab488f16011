"""benchmarks/real_noise.py: the folders it files photographs into, the truth it scores against, its table."""

import csv
import io
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from limit_tf import detection
from tests.conftest import REPO
from tests.test_benchmarks import _load
from tests.test_cifar_n import _save_like_torch

NAMES = [f"class{k}" for k in range(10)]


def _fake_copy(root, rng, n=60, test_n=20):
    """A miniature of the shared cifar10_jpeg.npz layout: concatenated JPEGs, offsets, labels, class names."""

    def split(count):
        labels = np.arange(count) % 10
        blobs = []
        for y in labels:
            pixels = np.clip(rng.normal(25 * y, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG")
            blobs.append(np.frombuffer(buffer.getvalue(), np.uint8))
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
        return np.concatenate(blobs), offsets, labels.astype(np.uint8)

    train, test = split(n), split(test_n)
    (root / "cifar10_jpeg").mkdir(parents=True)
    np.savez(
        root / "cifar10_jpeg" / "cifar10_jpeg.npz",
        train_jpeg=train[0],
        train_offsets=train[1],
        train_labels=train[2],
        test_jpeg=test[0],
        test_offsets=test[1],
        test_labels=test[2],
        class_names=np.array(NAMES),
    )
    return train[2].astype(np.int64)


def _label_file(root, labels, rng, *, order_ok=True):
    """A CIFAR-10_human.pt whose first len(labels) clean labels are the copy's; worse_label flips 40% of them."""
    clean = rng.integers(0, 10, 50_000)
    clean[: len(labels)] = labels if order_ok else np.roll(labels, 1)
    worse = np.where(rng.random(50_000) < 0.4, (clean + 3) % 10, clean)
    _save_like_torch(root / "CIFAR-10_human.pt", pickle.dumps({"clean_label": clean, "worse_label": worse}, protocol=2))
    return worse


def test_a_human_label_set_files_each_photograph_under_the_annotators_label_and_keeps_the_truth(tmp_path, rng):
    rn = _load("real_noise")
    labels = _fake_copy(tmp_path, rng)
    worse = _label_file(tmp_path, labels, rng)
    names, read = rn._write_clean(tmp_path / "cifar10_jpeg" / "cifar10_jpeg.npz", tmp_path / "clean", 60, 20)
    assert names == NAMES and np.array_equal(read, labels)

    noisy = rn.noisy_labels("cifar10n:worst", None, labels, 10, 0, tmp_path)
    assert np.array_equal(noisy, worse[:60])
    folder = tmp_path / "cifar10n-worst_n60_seed0"
    truth = rn.noisy_folder(tmp_path / "clean", folder, names, labels, noisy, {"kind": "cifar10n:worst", "rate": None})
    assert truth["realized_rate"] == pytest.approx(np.mean(worse[:60] != labels)) and truth["realized_rate"] > 0
    for i in range(60):
        filed = folder / "train" / NAMES[worse[i]] / f"{i:05d}.png"
        assert os.path.samefile(filed, tmp_path / "clean" / "train" / NAMES[labels[i]] / f"{i:05d}.png")
        assert truth["true_label"][f"{NAMES[worse[i]]}/{i:05d}.png"] == NAMES[labels[i]]
    assert sum(1 for _ in (folder / "train").rglob("*.png")) == 60
    assert json.loads((folder / "truth.json").read_text()) == truth


def test_a_label_file_in_another_order_or_missing_or_an_unknown_kind_is_one_line(tmp_path, rng):
    rn = _load("real_noise")
    labels = _fake_copy(tmp_path, rng)
    with pytest.raises(SystemExit, match=r"^error: CIFAR-10_human.pt is neither in"):
        rn.noisy_labels("cifar10n:worst", None, labels, 10, 0, tmp_path)
    _label_file(tmp_path, labels, rng, order_ok=False)
    with pytest.raises(SystemExit, match=r"differ from the shared copy's on \d+ of the first 60 photographs"):
        rn.noisy_labels("cifar10n:worst", None, labels, 10, 0, tmp_path)
    assert rn.kind_problem("pair") is None and rn.kind_problem("cifar10n:aggre") is None
    assert rn.kind_problem("cifar10n:best").startswith("is not a label set; allowed: cifar10n:worst")
    assert rn.kind_problem("cifar100n:noisy").startswith("is not allowed; allowed: uniform, pair, cifar10n:worst")


def test_synthetic_cells_follow_the_rates_and_a_human_set_is_one_cell_named_without_a_colon():
    rn = _load("real_noise")
    assert rn.cells_of(["uniform", "cifar10n:worst"], [0.2, 0.4]) == [
        ("uniform", 0.2),
        ("uniform", 0.4),
        ("cifar10n:worst", None),
    ]
    assert rn.cell_name("pair", 0.4, 10_000, 2) == "pair0.4_n10000_seed2"
    assert rn.cell_name("cifar10n:worst", None, 10_000, 0) == "cifar10n-worst_n10000_seed0"


def test_rows_are_scored_against_the_truth_and_tabulated_per_noise_and_method(tmp_path):
    rn = _load("real_noise")
    truth = {"true_label": {"a/1.png": "a", "b/2.png": "a", "b/3.png": "b", "a/4.png": "b"}}
    rows = [  # path, observed label, split, score, rank, flagged: files 2 and 4 are wrong
        ("a/1.png", "a", "train", 0.1, 4, 0),
        ("b/2.png", "b", "train", 0.9, 1, 1),
        ("b/3.png", "b", "validation", 0.8, 3, 1),
        ("a/4.png", "a", "train", 0.2, 2, 0),
    ]
    with open(tmp_path / "label_issues.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "observed_label", "split", "score", "rank", "flagged"])
        writer.writerows(rows)
    scored = rn._score_rows(tmp_path / "label_issues.csv", truth)
    assert scored["files_scored"] == 4
    # The AUC of the list's order (rank: 2, 4 | 3, 1), not of the scores (0.9, 0.2 over 0.1, 0.8 would be 0.75):
    # flagged class by class, a file of a class with a lower threshold ranks above a higher score.
    assert scored["roc_auc"] == pytest.approx(1.0)
    assert scored["precision"] == pytest.approx(0.5) and scored["recall"] == pytest.approx(0.5)
    assert scored["true_rate_train"] == pytest.approx(2 / 3)

    cells = [
        {
            "kind": "uniform",
            "rate": 0.4,
            "rows": [{"method": "ce", "test_accuracy": 0.5, "wall_s": 60, "trust_warning": None}],
        },
        {
            "kind": "uniform",
            "rate": 0.4,
            "rows": [{"method": "ce", "test_accuracy": 0.7, "wall_s": 120, "trust_warning": "weak"}],
        },
        {"kind": "cifar10n:worst", "rate": None, "rows": [{"method": "cleanlab", "roc_auc": 0.8, "wall_s": 60}]},
    ]
    table = rn.to_markdown(cells).splitlines()
    assert table[2].startswith("| uniform 0.4 | ce | 2 | 0.600 +- 0.141 |")
    assert table[2].endswith("| 1.500 +- 0.707 | 1 of 2 |")  # detection warned on one seed of two
    assert table[3].startswith("| cifar10n:worst | cleanlab | 1 | - | 0.800 |") and table[3].endswith("| - |")


def test_a_detection_made_by_an_earlier_flagging_rule_is_made_again(tmp_path, monkeypatch):
    rn = _load("real_noise")
    calls = []
    monkeypatch.setattr(rn, "_python", lambda args, log: calls.append(args) or 2.5)
    run = tmp_path / "limit"
    (run / "detection_limit").mkdir(parents=True)
    (run / "results.json").write_text("{}")
    record = run / "detection_limit" / "benchmark.json"
    record.write_text(json.dumps({"detect_s": 30.0}))  # before the rule was recorded: one threshold over all
    assert rn._detect(run, "limit") == 2.5 and len(calls) == 1
    assert json.loads(record.read_text()) == {"detect_s": 2.5, "flagging": rn.FLAGGING}
    assert rn._detect(run, "limit") == 2.5 and len(calls) == 1  # made by the current rule: reused


def test_a_cleaned_run_says_when_the_list_it_dropped_was_made_again(tmp_path):
    rn = _load("real_noise")
    cleaned, limit = tmp_path / "ce_cleaned", tmp_path / "limit"
    (limit / "detection_limit").mkdir(parents=True)
    cleaned.mkdir()
    issues = limit / "detection_limit" / "label_issues.csv"
    issues.write_text("path\n")
    (cleaned / "results.json").write_text("{}")
    os.utime(issues, (1_000, 1_000))  # the list it trained on: older than its results
    assert rn._flags_remade(cleaned, limit) == {}
    os.utime(issues, None)
    os.utime(cleaned / "results.json", (1_000, 1_000))  # the list was made again afterwards
    assert rn._flags_remade(cleaned, limit) == {"earlier_flags": True}
    rows = [{"method": "ce_cleaned", "test_accuracy": 0.6, "wall_s": 60, "earlier_flags": True}]
    table = rn.to_markdown([{"kind": "uniform", "rate": 0.4, "rows": rows}])
    assert "| uniform 0.4 | ce_cleaned (1 on an earlier list) | 1 | 0.600 |" in table


def test_rows_made_now_replace_the_kept_ones_of_their_method_and_the_rest_are_kept():
    rn = _load("real_noise")

    def cell(kind, seed, *methods, acc=0.5):
        rows = [{"method": m, "test_accuracy": acc} for m in methods]
        return {"kind": kind, "rate": 0.4, "seed": seed, "realized_rate": 0.4, "rows": rows}

    kept = [cell("uniform", 0, "limit", "ce"), cell("uniform", 1, "limit"), cell("pair", 0, "ce", "limit")]
    made = [cell("pair", 1, "cleanlab", acc=0.9), cell("uniform", 0, "ce", "limit_l", acc=0.9)]
    out = rn.merged(kept, made)
    assert [(c["kind"], c["seed"]) for c in out] == [("uniform", 0), ("uniform", 1), ("pair", 0), ("pair", 1)]
    assert [(r["method"], r["test_accuracy"]) for r in out[0]["rows"]] == [
        ("limit", 0.5),  # kept
        ("limit_l", 0.9),  # new
        ("ce", 0.9),  # made again: replaces the kept row
    ]
    assert [r["method"] for r in out[2]["rows"]] == ["limit", "ce"]  # the methods' order
    assert out[3] == made[0]  # its fields in their order, the rows last
    assert [(c["kind"], [r["method"] for r in c["rows"]]) for c in rn.merged([], made)] == [
        ("pair", ["cleanlab"]),  # the noise seen first comes first
        ("uniform", ["limit_l", "ce"]),
    ]
    assert kept[0]["rows"][1]["test_accuracy"] == 0.5  # the kept cells are not changed in place


def test_a_kept_table_must_have_been_made_with_the_same_photographs_and_flags(tmp_path):
    rn = _load("real_noise")
    out = str(tmp_path / "table")
    assert rn.kept_cells(out, 100, 20, []) == []  # none yet
    cells = [{"kind": "uniform", "rate": 0.4, "seed": 0, "rows": []}]
    (tmp_path / "table.json").write_text(json.dumps({"n": 100, "test_n": 20, "extra": ["--epochs=2"], "cells": cells}))
    assert rn.kept_cells(out, 100, 20, ["--epochs=2"]) == cells
    with pytest.raises(SystemExit, match=r"^error: .*table.json holds rows made with --n=100 \(not 200\), --extra="):
        rn.kept_cells(out, 200, 20, [])
    (tmp_path / "table.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match=r"is not a table of this benchmark .*: give another --out\.$"):
        rn.kept_cells(out, 100, 20, [])


@pytest.mark.slow
def test_the_benchmark_runs_a_human_label_set_end_to_end_and_scores_every_file(tmp_path, rng):
    labels = _fake_copy(tmp_path, rng, n=200, test_n=40)
    _label_file(tmp_path, labels, rng)
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "real_noise.py"),
        f"--data_dir={tmp_path}",
        f"--root={tmp_path / 'runs'}",
        f"--out={tmp_path / 'table'}",
        "--n=200",
        "--test_n=40",
        "--seeds=2",
        "--noise_kinds=cifar10n:worst",
        "--methods=ce",
        "--extra=--epochs=2,--architecture=mlp",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    cell, other = json.loads((tmp_path / "table.json").read_text())["cells"]
    (row,) = cell["rows"]
    assert cell["kind"] == "cifar10n:worst" and cell["rate"] is None
    assert row["files_scored"] == 200 and 0 <= row["roc_auc"] <= 1
    assert "| cifar10n:worst | ce | 2 |" in (tmp_path / "table.md").read_text()
    # The human labels are the same on both seeds, so the seed is the runs' own: another split and other weights.
    assert other["realized_rate"] == cell["realized_rate"]
    configs = [
        json.loads((tmp_path / "runs" / f"cifar10n-worst_n200_seed{s}" / "ce" / "config.json").read_text())
        for s in (0, 1)
    ]
    assert [c["seed"] for c in configs] == [0, 1]
    issues = tmp_path / "runs" / "cifar10n-worst_n200_seed0" / "ce" / "detection_self_confidence" / "label_issues.csv"
    recorded = json.loads((issues.parent / "detection.json").read_text())
    rule = detection.trust_warning(recorded["clean_accuracy_by_noise_estimate"], recorded["estimated_noise_rate"])
    assert row["trust_warning"] == rule
    # Run again: the finished run is neither trained nor detected again, and its row is the same, its warning
    # still the current rule's even where the recorded detection predates it.
    (issues.parent / "detection.json").write_text(json.dumps({**recorded, "trust_warning": "an earlier rule's"}))
    written = issues.stat().st_mtime_ns
    again = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    assert again.returncode == 0 and issues.stat().st_mtime_ns == written
    assert json.loads((tmp_path / "table.json").read_text())["cells"][0]["rows"] == [row]
    assert json.loads((tmp_path / "table.json").read_text())["cells"][1] == other
    bad = subprocess.run([*command[:-3], "--noise_kinds=cifar10n:best"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and "error: --noise_kinds=cifar10n:best is not a label set" in bad.stderr + bad.stdout
    # A third seed added later, with the first two runs' dirs gone: their rows are kept, the new one joins them.
    shutil.rmtree(tmp_path / "runs" / "cifar10n-worst_n200_seed0")
    third = subprocess.run([*command, "--first_seed=2", "--seeds=1"], capture_output=True, text=True, cwd=REPO)
    assert third.returncode == 0, third.stdout[-2000:] + third.stderr[-2000:]
    cells = json.loads((tmp_path / "table.json").read_text())["cells"]
    assert [c["seed"] for c in cells] == [0, 1, 2] and cells[:2] == [cell, other]
    assert "| cifar10n:worst | ce | 3 |" in (tmp_path / "table.md").read_text()
    assert not (tmp_path / "runs" / "cifar10n-worst_n200_seed0").exists()  # nothing trained again
    for flag, said in (("--n=100", "holds rows made with --n=200 (not 100)"), ("--first_seed=-1", "--first_seed=-1")):
        refused = subprocess.run([*command, flag], capture_output=True, text=True, cwd=REPO)
        assert refused.returncode != 0 and said in refused.stderr + refused.stdout
    fresh = subprocess.run([*command, "--nokeep", "--first_seed=2", "--seeds=1"], capture_output=True, cwd=REPO)
    assert fresh.returncode == 0 and json.loads((tmp_path / "table.json").read_text())["cells"] == cells[2:]
