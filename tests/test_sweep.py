import pytest

from limit_tf import grid, train
from limit_tf.config import ConfigError, ExperimentConfig
from tests.conftest import tiny_config


def test_the_grid_runs_ce_first_and_wires_init(tmp_path):
    base = ExperimentConfig(workdir="x", noise="uniform", beta=1.0)
    configs = grid.sweep_configs(
        base,
        root=str(tmp_path),
        noise_rates=[0.5, 0.8],
        sizes=[1000],
        variants=["limit_l", "fw"],
        seeds=[0, 1],
        grids={"beta": [3, 10]},
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


def test_paper_grids_and_grid_flags_expand_each_methods_own_hyperparameters(tmp_path):
    base = ExperimentConfig(workdir="x")
    configs = grid.sweep_configs(
        base,
        root=str(tmp_path),
        noise_rates=[0.8],
        sizes=[1000],
        variants=["limit_l_s", "ce_gn", "dmi", "soft_reg", "mae"],
        seeds=[0],
        grids={"beta": [1.0, 10.0]},
        paper_grids=True,
    )
    names = [c.workdir.split("/")[-2] for c in configs]
    assert names[0] == "ce"  # DMI needs it
    assert sum(n.startswith("limit_l_s_beta") for n in names) == 2 * 4  # betas x the paper's sigma_q grid
    assert "limit_l_s_beta10_sigma0.03" in names
    assert [n for n in names if n.startswith("ce_gn")] == [f"ce_gn_std{s:g}" for s in (0.01, 0.03, 0.1, 0.3)]
    assert [n for n in names if n.startswith("dmi")] == [f"dmi_lr{v:g}" for v in (1e-3, 1e-4, 1e-5, 1e-6)]
    soft = [n for n in names if n.startswith("soft_reg")]
    assert len(soft) == 4 * 2 and "soft_reg_lambda0.03_beta10" in soft  # the beta grid flag wins over the paper's
    assert "mae" in names and len(names) == len(set(names))


def test_a_learning_rate_grid_for_dmi_does_not_sweep_the_ce_run_it_starts_from(tmp_path):
    base = ExperimentConfig(workdir="x")

    def names(variants, start="ce"):
        configs = grid.sweep_configs(
            base,
            root=str(tmp_path),
            noise_rates=[0.8],
            sizes=[1000],
            variants=variants,
            seeds=[0],
            grids={"learning_rate": [1e-3, 1e-4]},
        )
        for c in configs:
            if c.method == "dmi":
                assert c.init_from.endswith(f"mnist_uniform0.8_n1000/{start}/seed0")
        return [c.workdir.split("/")[-2] for c in configs]

    # CE only as DMI's start: the cell's CE, once
    assert names(["dmi"]) == ["ce", "dmi_lr0.001", "dmi_lr0.0001"]
    # CE asked for with the grid: swept, and the CE that DMI starts from is among the runs
    assert names(["ce", "dmi"]) == ["ce", "ce_lr0.0001", "dmi_lr0.001", "dmi_lr0.0001"]
    base = base.replace(learning_rate=1e-2)
    # a CE grid without the base learning rate still runs the CE that DMI starts from (the base's), first
    assert names(["ce", "dmi"], start="ce_lr0.01")[:3] == ["ce_lr0.01", "ce", "ce_lr0.0001"]


def test_unknown_variant(tmp_path):
    with pytest.raises(ValueError, match="unknown 'limit_x'"):
        grid.sweep_configs(
            ExperimentConfig(workdir="x"),
            root=str(tmp_path),
            noise_rates=[0.5],
            sizes=[None],
            variants=["limit_x"],
            seeds=[0],
        )


def test_a_rerun_with_other_settings_over_a_finished_run_is_refused_before_anything_runs(tmp_path, fake_data):
    base = tiny_config("x", fake_data, epochs=1)
    first = grid.sweep_configs(
        base, root=str(tmp_path / "root"), noise_rates=[0.5], sizes=[200], variants=["ce"], seeds=[0]
    )
    train.run_experiment(first[0])
    again = grid.sweep_configs(
        base.replace(epochs=3), root=str(tmp_path / "root"), noise_rates=[0.5], sizes=[200], variants=["ce"], seeds=[0]
    )
    assert again[0].workdir == first[0].workdir
    with pytest.raises(ConfigError, match="finished run of a different experiment .differs in: epochs"):
        train.finished_results(again[0])


def test_the_sweep_command_refuses_a_finished_run_of_other_settings(tmp_path, fake_data):
    import subprocess
    import sys

    from tests.conftest import REPO

    args = [f"--root={tmp_path / 'root'}", f"--data_dir={fake_data}", "--noverify_data", "--architecture=mlp"]
    args += ["--variants=ce", "--noise_rate=0.5", "--num_train_examples=200", "--batch_size=64", "--epochs=1"]
    command = [sys.executable, "-m", "limit_tf.sweep", *args]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run([*command, "--epochs=3"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2
    assert "holds a finished run of a different experiment (differs in: epochs)" in again.stderr.splitlines()[-1]


def test_a_runs_seed_draws_its_split_too_unless_one_noise_seed_is_given(tmp_path):
    base = ExperimentConfig(workdir="w", noise_rate=0.5)
    kwargs = dict(root=str(tmp_path), noise_rates=[0.5], sizes=[100], variants=["ce"], seeds=[0, 1, 2])
    assert [(c.seed, c.noise_seed) for c in grid.sweep_configs(base, **kwargs)] == [(0, 0), (1, 1), (2, 2)]
    fixed = grid.sweep_configs(base, **kwargs, noise_seed=5)  # the demo: --seed and --noise_seed as in main
    assert [(c.seed, c.noise_seed) for c in fixed] == [(0, 5), (1, 5), (2, 5)]
