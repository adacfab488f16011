import csv
import json

import pytest

from limit_tf import report
from limit_tf import workdir as workdir_lib
from limit_tf.config import ExperimentConfig


def _fake_run(root, name, *, method, accuracy, rate=0.8, n=1000, seed=0, epochs=5, **config):
    path = root / name / f"seed{seed}"
    path.mkdir(parents=True)
    cfg = json.loads(
        ExperimentConfig(
            workdir=str(path), method=method, noise_rate=rate, num_train_examples=n, seed=seed, **config
        ).to_json()
    )
    results = {"test_accuracy": accuracy, "best_epoch": 3, "num_train_examples": n, "config": cfg}
    run = workdir_lib.RunDir(path)
    run.write_results(results)
    rows = [
        {
            "epoch": e,
            "accuracy": 0.1 * e,
            "val_accuracy": 0.2,
            "train_acc_observed": 0.1 * e,
            "train_acc_clean_subset": 0.5,
            "train_acc_corrupted_subset": 0.05 * e,
        }
        for e in range(epochs)
    ]
    run.write_metrics(rows)
    return path


def test_report_on_fabricated_runs(tmp_path):
    for seed, acc in enumerate([0.25, 0.29]):
        _fake_run(tmp_path, "ce", method="ce", accuracy=acc, seed=seed)
    for seed, acc in enumerate([0.36, 0.38, 0.40]):
        _fake_run(tmp_path, "limit_l", method="limit", predictor="laplace", beta=10.0, accuracy=acc, seed=seed)
    _fake_run(
        tmp_path, "limit_g_s", method="limit", predictor="gaussian", sample=True, sigma_q=0.1, beta=3.0, accuracy=0.3
    )
    _fake_run(tmp_path, "other_cell", method="ce", accuracy=0.9, rate=0.3)
    _fake_run(tmp_path, "gce", method="gce", gce_q=0.5, accuracy=0.5)
    markdown, rows = report.write_report(tmp_path, tmp_path / "out")
    by_label = {(r.noise_rate, r.label): r for r in rows}
    ce = by_label[(0.8, "ce")]
    assert ce.mean == pytest.approx(27.0) and ce.std == pytest.approx(2.828, abs=1e-3)
    assert ce.paper == (27.0, 3.8)  # Table 5, p = 0.8, n = 10^3
    limit_l = by_label[(0.8, "limit_l (beta=10)")]
    assert limit_l.mean == pytest.approx(38.0) and limit_l.paper == (35.9, 4.3)
    assert by_label[(0.8, "limit_g_s (beta=3, sigma=0.1)")].paper == (35.9, 6.3)
    assert by_label[(0.3, "ce")].paper is None  # the paper has no p = 0.3 cell
    assert "| ce | 27.0 +- 2.8 | 2 | 3, 3 | 27.0 +- 3.8 |" in markdown
    assert "| gce (q=0.5) | 50.0 +- 0.0 | 1 | 3 | not in the paper |" in markdown
    assert "### mnist, uniform noise p = 0.3, n = 1000" in markdown
    with open(tmp_path / "out" / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 5 and {r["label"] for r in table} >= {"ce", "limit_l (beta=10)"}
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == ["curves_mnist_uniform0.3_n1000.png", "curves_mnist_uniform0.8_n1000.png"]


def test_report_without_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished run"):
        report.write_report(tmp_path)


def test_figures_do_not_touch_the_pyplot_backend(tmp_path):
    import matplotlib

    matplotlib.use("svg")  # a notebook user's choice
    _fake_run(tmp_path, "ce", method="ce", accuracy=0.3)
    report.write_report(tmp_path)
    assert matplotlib.get_backend() == "svg"
    assert (tmp_path / "curves_mnist_uniform0.8_n1000.png").read_bytes()[:4] == b"\x89PNG"


def test_report_on_your_own_data_names_the_labels_as_given(tmp_path):
    folder = tmp_path / "my images"
    folder.mkdir()
    dataset = f"folder:{folder}"
    for method, accuracy in (("ce", 0.9), ("limit", 0.95)):
        path = _fake_run(tmp_path / "runs", method, method=method, accuracy=accuracy, rate=0.0, n=2400, dataset=dataset)
        run = workdir_lib.RunDir(path)
        run.write_metrics([{"epoch": e, "val_accuracy": 0.6, "train_acc_observed": 0.1 * e} for e in range(4)])
    markdown, rows = report.write_report(tmp_path / "runs", tmp_path / "out")
    assert f"### {dataset}, labels as given, n = 2400" in markdown
    assert "| ce | 90.0 +- 0.0 | 1 | 3 |\n" in markdown  # no paper column: the paper never saw this data
    assert "paper" not in markdown and "uniform" not in markdown
    (png,) = (tmp_path / "out").glob("*.png")  # one file name, with no ':' or '/' from the dataset
    assert png.name.startswith("curves_folder_") and png.name.endswith("_my_images_uniform0_n2400.png")
    assert ":" not in png.name
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_only_seeds_are_averaged_other_differences_get_rows_of_their_own(tmp_path):
    _fake_run(tmp_path, "a", method="ce", accuracy=0.93, seed=0)
    _fake_run(tmp_path, "a", method="ce", accuracy=0.95, seed=1)
    _fake_run(tmp_path, "b", method="ce", accuracy=0.61, seed=0, architecture="mlp")
    rows = report.collect(report.find_runs(tmp_path))
    assert len(rows) == 2
    by_seeds = {len(r.test_accuracies): r for r in rows}
    assert by_seeds[2].mean == pytest.approx(94.0)  # the two seeds of one experiment
    assert by_seeds[1].mean == pytest.approx(61.0)  # not averaged in
    assert "architecture=mlp" in by_seeds[1].label and "architecture=" in by_seeds[2].label
