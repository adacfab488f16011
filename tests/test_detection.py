import csv
import json

import keras
import numpy as np
import pytest

from limit_tf import LimitModel, detection, models, train, workdir
from tests.conftest import tiny_config, write_fake_mnist

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0], [0.3, 0.4, 0.3]])
Y = np.array([0, 0, 1, 1])


def test_scores_against_hand_values():
    np.testing.assert_allclose(detection.self_confidence_score(P, Y), [0.3, 0.9, 1.0, 0.6])
    np.testing.assert_allclose(detection.normalized_margin_score(P, Y), [0.2 - 0.7, 0.8 - 0.1, 1.0 - 0.0, 0.3 - 0.4])
    ce = detection.cross_entropy_score(P, Y)
    assert np.all(np.isfinite(ce)) and ce[0] == pytest.approx(-np.log(0.7))
    np.testing.assert_allclose(detection.limit_score(P, Y)[0], np.linalg.norm([0.3, -0.2, -0.1]))


def test_rank_by_budget_and_threshold():
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    by_budget = detection.rank(scores, budget=2)
    assert by_budget.ranked.tolist() == [1, 3, 2, 0] and by_budget.flagged.tolist() == [False, True, False, True]
    assert detection.rank(scores, budget=0.5).flagged.tolist() == by_budget.flagged.tolist()
    assert detection.rank(scores, threshold=0.5).flagged.tolist() == [False, True, True, True]
    with pytest.raises(ValueError, match="exactly one"):
        detection.rank(scores)
    with pytest.raises(ValueError, match="budget=9"):
        detection.rank(scores, budget=9)
    with pytest.raises(ValueError, match="threshold=nan is not allowed"):
        detection.rank(scores, threshold=float("nan"))


def test_evaluate_uses_known_mask():
    rng = np.random.default_rng(0)
    mask = rng.random(1000) < 0.3
    scores = mask + rng.normal(scale=0.3, size=1000)  # informative scores
    report = detection.evaluate(detection.rank(scores, budget=int(mask.sum())), mask, ks=(10, 100))
    assert 0.95 < report["roc_auc"] <= 1.0 and report["average_precision"] > 0.85
    assert report["precision_at_100"] > 0.9 and report["num_corrupted"] == mask.sum()
    assert report["precision"] == pytest.approx(report["recall"])  # budget = number corrupted
    random = detection.evaluate(detection.rank(rng.random(1000), budget=300), mask)
    assert random["roc_auc"] == pytest.approx(0.5, abs=0.06)


def test_score_examples_with_a_limit_model_and_a_plain_classifier(rng):
    net = lambda: models.build_model("mlp", 3, (5,))  # noqa: E731
    model = LimitModel(net(), net())
    x = rng.normal(size=(20, 5)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    scores = detection.score_examples(model, x, y, "limit")
    r = keras.ops.convert_to_numpy(keras.ops.softmax(model.predictor_network(x)))
    np.testing.assert_allclose(scores, np.linalg.norm(np.eye(3)[y] - r, axis=1), rtol=1e-5)
    assert detection.score_examples(net(), x, y, "self_confidence").shape == (20,)
    with pytest.raises(ValueError, match="needs a model with a q-network"):
        detection.score_examples(net(), x, y, "limit")
    with pytest.raises(ValueError, match="unknown score 'loss'"):
        detection.score_examples(net(), x, y, "loss")


def test_detect_in_run_writes_outputs(tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=300, n_test=50)
    config = tiny_config(tmp_path / "run", tmp_path / "data", method="limit", predictor="laplace", beta=1.0, epochs=1)
    train.run_experiment(config)
    report = detection.detect_in_run(tmp_path / "run", score="limit")
    out = tmp_path / "run" / "detection_limit"
    assert {"roc_auc", "average_precision", "precision", "recall", "f1"} <= set(report)
    assert json.loads((out / "detection.json").read_text())["score"] == "limit"
    with open(out / "detection.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 200 and rows[0]["rank"] == "1"
    assert float(rows[0]["score"]) >= float(rows[-1]["score"])
    assert (out / "score_histogram.png").is_file() and (out / "suspects_grid.png").is_file()
    assert detection.detect_in_run(tmp_path / "run", score="normalized_margin")["num_examples"] == 200


def test_an_unfinished_run_is_scored_with_its_best_epoch_so_far_and_a_warning(tmp_path, caplog):
    import keras

    write_fake_mnist(tmp_path / "data", n_train=300, n_test=50)
    config = tiny_config(tmp_path / "run", tmp_path / "data", method="limit", predictor="laplace", beta=1.0, epochs=3)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.run_experiment(config, callbacks=[Stop()])
    assert not workdir.RunDir(tmp_path / "run").finished
    with caplog.at_level("WARNING"):
        report = detection.detect_in_run(tmp_path / "run", score="limit", budget=0.5)
    assert report["num_flagged"] == 100
    assert any("is unfinished (2 of at most 3 epochs)" in r.getMessage() for r in caplog.records)
    with pytest.raises(FileNotFoundError, match="not a run's work dir"):
        detection.detect_in_run(tmp_path / "nothing")
