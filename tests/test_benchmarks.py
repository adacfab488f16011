"""Benchmark helpers whose correctness a figure depends on."""

import importlib.util
from pathlib import Path

import numpy as np

from limit_tf import data
from tests.conftest import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_authors_draw_is_the_authors_split_subset_and_noise(mnist_dir):
    # Golden values: the authors' `split` and `corrupt_labels` (v0.1, modules/data_utils.py) run for seed 0
    # on the same MNIST files gave these indices and label sums; the draw must reproduce them exactly.
    reference_curve = _load("reference_curve")
    cell = data.load_noisy_dataset(
        "mnist", data_dir=mnist_dir, num_train_examples=10_000, noise="uniform", noise_rate=0.8, seed=5
    )
    drawn = reference_curve.authors_draw(cell, 0, str(mnist_dir))
    assert drawn.train.source_indices[:5].tolist() == [26017, 26992, 10284, 30612, 46343]
    assert drawn.validation.source_indices[:3].tolist() == [54228, 39139, 51630]
    assert drawn.train.labels[:10].tolist() == [2, 2, 9, 9, 5, 1, 0, 7, 6, 8]
    assert int(drawn.train.labels.sum()) == 44884 and int(drawn.validation.labels.sum()) == 54397
    assert (len(drawn.train), len(drawn.validation), len(drawn.test)) == (10_000, 12_000, 10_000)
    assert not set(drawn.train.source_indices) & set(drawn.validation.source_indices)
    # Images and clean labels follow the indices; only the labels are noisy (about 80%, never the true class's share).
    full = data.load_noisy_dataset("mnist", data_dir=mnist_dir, noise="none")
    where = {int(i): k for k, i in enumerate(full.train.source_indices)}
    for i in range(0, 10_000, 997):
        k = where.get(int(drawn.train.source_indices[i]))
        if k is not None:  # in the full set's training part
            np.testing.assert_array_equal(drawn.train.x[i], full.train.x[k])
            assert drawn.train.clean_labels[i] == full.train.clean_labels[k]
    assert 0.78 < drawn.train.noise_mask.mean() < 0.82
    np.testing.assert_array_equal(drawn.test.labels, cell.test.labels)


def test_the_mnist_benchmarks_loop_reads_the_shared_flags_and_saves_after_every_cell(tmp_path):
    import json

    from absl import flags

    from limit_tf import cli
    from limit_tf.config import ExperimentConfig

    cells = _load("cells")
    values = flags.FlagValues()
    cli.define_shared_flags(values, noise_rates=["0.5"], seeds=1, root="r", out=("o", "a prefix"))
    values(["prog", "--noise_rates=0.2,0.4", "--seeds=2", f"--root={tmp_path / 'runs'}", f"--out={tmp_path / 'res'}"])
    seen = []

    def one_cell(config, root):
        seen.append((config.noise_rate, config.seed, config.noise_seed, root.name))
        return {"noise_rate": config.noise_rate, "seed": config.seed}

    base = ExperimentConfig(workdir="w", noise_rate=0.5)
    done = cells.run_from_flags(base, one_cell, lambda c: f"{len(c)} cells\n", flag_values=values)
    assert seen == [
        (0.2, 0, 0, "p0.2_seed0"),
        (0.2, 1, 1, "p0.2_seed1"),
        (0.4, 0, 0, "p0.4_seed0"),
        (0.4, 1, 1, "p0.4_seed1"),
    ]
    assert len(done) == 4 and json.loads((tmp_path / "res.json").read_text())["cells"] == done
    assert (tmp_path / "res.md").read_text() == "4 cells\n"


def test_small_data_scores_the_training_rows_and_every_row_against_the_truth(tmp_path):
    import csv
    import json

    small = _load("small_data")
    with open(tmp_path / "truth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["origin", "given_label", "true_label"])
        writer.writerows([(1, "a", "a"), (2, "b", "a"), (3, "b", "b"), (4, "a", "b"), (5, "a", "a")])
    found = tmp_path / "run" / "detection_limit"
    found.mkdir(parents=True)
    with open(found / "label_issues.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["origin", "split", "score", "flagged"])  # wrong: 2 and 4; 4 is a validation row
        writer.writerows([(1, "train", 0.1, 0), (2, "train", 0.9, 1), (3, "train", 0.2, 0), (4, "validation", 0.05, 0)])
        writer.writerow((5, "validation", 0.6, 1))
    (found / "detection.json").write_text(json.dumps({"estimated_noise_rate": 0.25, "score": "limit"}))
    scored = small.score_detection(tmp_path / "run", tmp_path / "truth.csv")
    assert scored["examples_scored"] == 3 and scored["files_scored"] == 5
    assert scored["roc_auc"] == 1.0  # the training rows rank their one wrong label first
    assert scored["roc_auc_every_file"] == 0.5  # 0.9 over 0.1, 0.2, 0.6; 0.05 under all three
    assert scored["true_noise_rate"] == 1 / 3 and round(scored["estimate_error_points"], 6) == round(25 - 100 / 3, 6)
    assert scored["precision"] == 1.0 and scored["recall"] == 1.0


def test_the_trust_check_scores_the_warning_against_the_truth(tmp_path):
    import json
    from types import SimpleNamespace

    trust = _load("trust_check")

    def run(name, *, auc, precision, true, estimate, implied, confidence):
        found = tmp_path / name / "detection_limit"
        found.mkdir(parents=True)
        (tmp_path / name / "results.json").write_text(json.dumps({"test_accuracy": 0.5}))
        figures = {"roc_auc": auc, "precision": precision, "realized_noise_rate": true}
        figures.update(estimated_noise_rate=estimate, clean_accuracy_by_noise_estimate=implied)
        (found / "detection.json").write_text(json.dumps({**figures, "mean_confidence": confidence}))

    run("strong", auc=0.99, precision=0.95, true=0.3, estimate=0.31, implied=0.95, confidence=0.35)  # underconfident
    run("weak", auc=0.52, precision=0.17, true=0.16, estimate=0.51, implied=0.88, confidence=0.84)  # overconfident
    run("unsure", auc=0.74, precision=0.32, true=0.16, estimate=0.15, implied=0.71, confidence=0.68)
    f = SimpleNamespace(runs=[str(tmp_path / "*")], real_noise="absent", small_data="absent")
    rows = {Path(r["run"]).name: r for r in trust.collect(f)}
    assert [rows[n]["reliable"] for n in ("strong", "weak", "unsure")] == [True, False, False]
    assert [rows[n]["warns"] for n in ("strong", "weak", "unsure")] == [False, True, True]
    assert [rows[n]["warned_before"] for n in ("strong", "weak", "unsure")] == [True, False, True]
    summary = trust.summarize(list(rows.values()))
    assert summary["verdicts_right"] == 3 and summary["false_alarms_before"] == 1 and summary["missed_before"] == 1
    assert "3 runs, 2 unreliable. The warning: right on 3" in trust.to_markdown(list(rows.values()), summary)


def test_flagging_compares_both_rules_on_a_trained_run_and_reads_a_folders_truth(tmp_path):
    import json
    from types import SimpleNamespace

    from limit_tf import train
    from tests.conftest import tiny_config, write_fake_mnist

    flagging = _load("flagging")
    write_fake_mnist(tmp_path / "data", n_train=300, n_test=50)
    config = tiny_config(tmp_path / "seed0" / "limit", tmp_path / "data", method="limit", predictor="laplace", epochs=2)
    train.run_experiment(config)
    row = flagging.one_run(str(tmp_path / "seed0" / "limit"))
    one, by_class = row["one_threshold"], row["class_by_class"]
    assert one["flagged"] == by_class["flagged"] > 0  # the same estimate, put in other places
    assert all(0 <= rule[m] <= 1 for rule in (one, by_class) for m in ("precision", "recall", "roc_auc"))
    assert row["score"] == "limit" and 0 < row["true_rate"] < 1
    assert flagging.group_of(str(tmp_path / "pair0.4_seed2" / "ce")) == f"{tmp_path.name}/pair0.4 ce"
    assert "| " + flagging.group_of(row["run"]) + " | 1 |" in flagging.table([row])
    # A folder's truth stays beside it (real_noise.py): the files whose folder is not their true class.
    (tmp_path / "cell" / "train").mkdir(parents=True)
    truth = {"a/1.png": "a", "b/2.png": "a", "a/3.png": "a", "b/4.png": "b"}
    (tmp_path / "cell" / "truth.json").write_text(json.dumps({"true_label": truth}))
    part = lambda origins, labels: SimpleNamespace(origins=origins, labels=np.array(labels))  # noqa: E731
    dataset = SimpleNamespace(
        truth_known=False,
        class_names=["a", "b"],
        train=part(["a/1.png", "b/2.png"], [0, 1]),
        validation=part(["a/3.png", "b/4.png"], [0, 1]),
    )
    masks = flagging.truth_masks(dataset, SimpleNamespace(dataset=f"folder:{tmp_path / 'cell' / 'train'}"))
    assert [m.tolist() for m in masks] == [[False, True], [False, False]]
    assert flagging.truth_masks(dataset, SimpleNamespace(dataset=f"folder:{tmp_path}")) is None
