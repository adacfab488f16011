import csv
import json

import pytest

from limit_tf import report, sweep
from limit_tf.config import ExperimentConfig


def _fake_run(root, name, *, method, accuracy, rate=0.8, n=1000, seed=0, epochs=5, **config):
    workdir = root / name / f"seed{seed}"
    workdir.mkdir(parents=True)
    cfg = json.loads(
        ExperimentConfig(
            workdir=str(workdir), method=method, noise_rate=rate, num_train_examples=n, seed=seed, **config
        ).to_json()
    )
    results = {"test_accuracy": accuracy, "best_epoch": 3, "num_train_examples": n, "config": cfg}
    (workdir / "results.json").write_text(json.dumps(results))
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
    with open(workdir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return workdir


def test_report_on_fabricated_runs(tmp_path):
    for seed, acc in enumerate([0.25, 0.29]):
        _fake_run(tmp_path, "ce", method="ce", accuracy=acc, seed=seed)
    for seed, acc in enumerate([0.36, 0.38, 0.40]):
        _fake_run(tmp_path, "limit_l", method="limit", predictor="laplace", beta=10.0, accuracy=acc, seed=seed)
    _fake_run(
        tmp_path, "limit_g_s", method="limit", predictor="gaussian", sample=True, sigma_q=0.1, beta=3.0, accuracy=0.3
    )
    _fake_run(tmp_path, "other_cell", method="ce", accuracy=0.9, rate=0.3)
    markdown, rows = report.write_report(tmp_path, tmp_path / "out")
    by_label = {(r.noise_rate, r.label): r for r in rows}
    ce = by_label[(0.8, "ce")]
    assert ce.mean == pytest.approx(27.0) and ce.std == pytest.approx(2.828, abs=1e-3)
    assert ce.paper == (27.0, 3.8)  # Table 5, p = 0.8, n = 10^3
    limit_l = by_label[(0.8, "limit_l (beta=10)")]
    assert limit_l.mean == pytest.approx(38.0) and limit_l.paper == (35.9, 4.3)
    assert by_label[(0.8, "limit_g_s (beta=3, sigma_q=0.1)")].paper == (35.9, 6.3)
    assert by_label[(0.3, "ce")].paper is None  # the paper has no p = 0.3 cell
    assert "| ce | 27.0 +- 2.8 | 2 | 3, 3 | 27.0 +- 3.8 |" in markdown
    assert "### mnist, uniform noise p = 0.3, n = 1000" in markdown
    with open(tmp_path / "out" / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and {r["label"] for r in table} >= {"ce", "limit_l (beta=10)"}
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == ["curves_mnist_uniform0.3_n1000.png", "curves_mnist_uniform0.8_n1000.png"]


def test_report_without_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished run"):
        report.write_report(tmp_path)


def test_sweep_grid_runs_ce_first_and_wires_init(tmp_path):
    base = ExperimentConfig(workdir="x", noise="uniform", beta=1.0)
    configs = sweep.sweep_configs(
        base,
        root=str(tmp_path),
        noise_rates=[0.5, 0.8],
        sizes=[1000],
        variants=["limit_l", "fw"],
        seeds=[0, 1],
        betas=[3, 10],
        plus_init=True,
    )
    # per (rate, seed): ce, limit_l x 2 betas, fw
    assert len(configs) == 2 * 2 * 4
    assert [c.method for c in configs[:4]] == ["ce", "limit", "limit", "fw"]
    ce_dir = configs[0].workdir
    assert ce_dir.endswith("mnist_uniform0.5_n1000/ce/seed0")
    assert configs[1].init_from == ce_dir and configs[3].init_from == ce_dir
    assert configs[1].workdir.endswith("limit_l_beta3_init/seed0") and configs[1].beta == 3.0
    assert {c.noise_seed == c.seed for c in configs} == {True}
    assert len({c.workdir for c in configs}) == len(configs)


def test_sweep_rejects_unknown_variant(tmp_path):
    with pytest.raises(ValueError, match="unknown 'limit_x'"):
        sweep.sweep_configs(
            ExperimentConfig(workdir="x"),
            root=str(tmp_path),
            noise_rates=[0.5],
            sizes=[None],
            variants=["limit_x"],
            seeds=[0],
        )
