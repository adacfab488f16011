"""The method table: complete, consistent with the config, the builders and the paper."""

import dataclasses
import subprocess
import sys

import pytest

from limit_tf import methods, paper
from limit_tf.config import DEFAULTS, ExperimentConfig
from tests.conftest import REPO


def test_every_method_names_a_builder_that_exists():
    from limit_tf import builders

    for name, spec in methods.METHODS.items():
        assert callable(builders.builder_of(name)), spec.builder


def test_options_are_config_fields_made_from_the_table_and_cannot_collide():
    fields = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    for h in methods.options():
        assert fields[h.name].default == h.default and fields[h.name].metadata["help"] == h.help
    # SCE's weight of reverse CE is its own option, not LIMIT's --beta.
    assert {"sce_alpha", "sce_beta"} <= set(fields) and DEFAULTS["beta"] is None and DEFAULTS["sce_beta"] == 1.0
    assert ExperimentConfig(workdir="w", method="sce", sce_beta=0.5).experiment().get("beta") is None
    clash = methods.MethodSpec("clash", "x", (methods.Hyperparameter("gce_q", default=0.5),))
    table = dict(methods.METHODS, clash=clash)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(methods, "METHODS", table)
        with pytest.raises(ValueError, match="option 'gce_q' of 'clash' collides with 'gce'"):
            methods.options()


def test_hyperparameters_are_config_fields_with_valid_defaults():
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    for spec in methods.METHODS.values():
        for h in spec.hyperparameters:
            assert h.name in fields, (spec.name, h.name)
            assert h.problem(DEFAULTS[h.name]) is None or h.exclusive_minimum, (spec.name, h.name)
            for value in h.grid:
                assert h.problem(value) is None, (spec.name, h.name, value)


def test_variants_name_methods_and_paper_rows():
    labels = [v.paper_label for _, v in methods.VARIANTS.values() if v.paper_label]
    assert sorted(labels) == sorted(paper.MNIST_ROWS)  # every row of the paper's table, once
    assert methods.paper_variants()[0] == methods.CE and len(methods.paper_variants()) == len(paper.MNIST_ROWS)
    for name, (spec, _) in methods.VARIANTS.items():
        settings = methods.variant_settings(name)
        assert settings["method"] == spec.name
        assert methods.variant_of({**DEFAULTS, **settings}).name == name


def test_paper_grids_are_the_papers():
    limit = methods.get(methods.LIMIT)
    assert limit.hyperparameter("beta").grid == (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    assert limit.hyperparameter("sigma_q").grid == (0.01, 0.03, 0.1, 0.3)
    soft = methods.get("soft_reg")
    assert soft.hyperparameter("soft_lambda").grid == (0.001, 0.01, 0.03, 0.1)
    assert soft.hyperparameter("beta").grid == (0.0, 0.01, 0.1, 1.0, 10.0)
    assert methods.get("dmi").hyperparameter("learning_rate").grid == (1e-3, 1e-4, 1e-5, 1e-6)
    assert methods.get(methods.CE).hyperparameter("learning_rate").grid == ()
    assert {m for m, s in methods.METHODS.items() if s.starts_from_ce == "required"} == {"fw", "dmi"}


@pytest.mark.parametrize(
    "settings,name,label",
    [
        ({"method": "ce"}, "ce", "ce"),
        ({"method": "ce", "learning_rate": 1e-4}, "ce_lr0.0001", "ce (lr=0.0001)"),
        ({"method": "limit", "predictor": "laplace", "beta": 10.0}, "limit_l_beta10", "limit_l (beta=10)"),
        (
            {"method": "limit", "predictor": "gaussian", "sample": True, "beta": 3.0, "sigma_q": 0.1},
            "limit_g_s_beta3_sigma0.1",
            "limit_g_s (beta=3, sigma=0.1)",
        ),
        (
            {"method": "limit", "predictor": "laplace", "beta": 1.0, "init_from": "runs/ce"},
            "limit_l_beta1_init",
            "limit_l (beta=1, +init)",
        ),
        ({"method": "gce", "gce_q": 0.5}, "gce_q0.5", "gce (q=0.5)"),
        ({"method": "dmi", "learning_rate": 1e-5}, "dmi_lr1e-05", "dmi (lr=1e-05)"),
        ({"method": "ce_gn", "noise_std": 0.3}, "ce_gn_std0.3", "ce_gn (std=0.3)"),
        (
            {"method": "soft_reg", "beta": 0.1, "soft_lambda": 0.03, "q_architecture": "same"},
            "soft_reg_lambda0.03_beta0.1_qnetsame",
            "soft_reg (lambda=0.03, beta=0.1, qnet=same)",
        ),
    ],
)
def test_run_names_and_labels_come_from_the_table(settings, name, label):
    settings = {**DEFAULTS, **settings}
    assert methods.run_name(settings, defaults=DEFAULTS) == name
    assert methods.label(settings, defaults=DEFAULTS) == label


def test_hyperparameter_ranges():
    sigma = methods.get(methods.LIMIT).hyperparameter("sigma_q")
    assert sigma.problem(0.0) == "it must be > 0"
    assert sigma.problem(float("nan")) == "it must be a finite number"
    assert sigma.active({"sample": True}) and not sigma.active({"sample": False})
    q = methods.get("gce").hyperparameter("gce_q")
    assert q.problem(1.0) is None and q.problem(1.5) == "it must be in (0, 1]"
    assert methods.get(methods.LIMIT).hyperparameter("predictor").problem("student").startswith("allowed:")
    with pytest.raises(ValueError, match="unknown method 'sgd'"):
        methods.get("sgd")


def test_the_table_and_the_work_dir_format_use_no_tensorflow():
    """In a fresh interpreter (this one has TensorFlow loaded already): the pure modules load none."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import limit_tf.methods, limit_tf.config, limit_tf.workdir, limit_tf.report, limit_tf.detection\n"
        "from limit_tf import methods\n"
        "assert methods.get('limit').predictor_network\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stdout[-500:] + done.stderr[-2000:]


def test_importing_the_package_registers_its_keras_classes():
    code = (
        "import keras, limit_tf; "
        "names = ['LimitModel', 'GradientNoiseModel', 'SoftRegularizationModel', 'FusedBatchNormalization', 'DMILoss']; "
        "print(all(keras.saving.get_registered_object('limit_tf>' + n) is not None for n in names))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
