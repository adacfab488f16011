import csv
import dataclasses
import itertools
import json
import shutil

import keras
import numpy as np
import pytest

from limit_tf import LimitModel, detection, issue_report, models, runs, train, workdir
from limit_tf.config import ExperimentConfig
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


def test_detect_flags_the_estimated_number_and_measures_against_the_truth():
    rng = np.random.default_rng(1)
    n, k = 400, 4
    clean = rng.integers(0, k, n)
    wrong = rng.random(n) < 0.25
    observed = np.where(wrong, (clean + 1) % k, clean)
    probs = np.full((n, k), 0.1 / (k - 1))
    probs[np.arange(n), clean] = 0.9  # a classifier that did not learn the wrong labels
    scores = detection.self_confidence_score(probs, observed)
    found, estimate, summary = detection.detect(scores, probs, observed, noise_mask=wrong)
    assert estimate.num_issues == wrong.sum() == summary["num_flagged"] == found.flagged.sum()
    np.testing.assert_array_equal(found.flagged, wrong)
    assert summary["roc_auc"] == 1.0 and summary["flagged_by"] == "estimate, class by class"
    assert summary["flagged_per_class"] == np.bincount(observed[wrong], minlength=k).tolist()
    _, _, over_all = detection.detect(scores, probs, observed, noise_mask=wrong, per_class=False)
    assert over_all["flagged_by"] == "estimate" and over_all["num_flagged"] == wrong.sum()
    _, _, by_budget = detection.detect(scores, probs, observed, budget=10)
    assert by_budget["num_flagged"] == 10 and "roc_auc" not in by_budget


def test_clean_drops_or_relabels_the_flagged_examples(rng):
    from limit_tf import data

    x = rng.normal(size=(30, 3)).astype(np.float32)
    y = np.arange(30) % 3
    ds = data.from_arrays(x, y, x_test=x[:6], y_test=y[:6], noise="none", class_names=["a", "b", "c"])
    flagged = np.zeros(len(ds.train), bool)
    flagged[[0, 3]] = True
    dropped = data.clean(ds, flagged, ["c"] * len(ds.train), "drop")
    assert len(dropped.train) == len(ds.train) - 2 and dropped.num_dropped == 2
    np.testing.assert_array_equal(dropped.train.labels, ds.train.labels[~flagged])
    relabelled = data.clean(ds, flagged, ["c"] * len(ds.train), "relabel")
    np.testing.assert_array_equal(relabelled.train.labels, np.where(flagged, 2, ds.train.labels))
    with pytest.raises(ValueError, match="mode='fix' is not allowed"):
        data.clean(ds, flagged, ["c"] * len(ds.train), "fix")


def test_score_examples_with_a_limit_model_and_a_plain_classifier(rng):
    net = lambda: models.build_model("mlp", 3, (5,))  # noqa: E731
    model = LimitModel(net(), net())
    x = rng.normal(size=(20, 5)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    scores = runs.score_examples(model, x, y, "limit")
    r = keras.ops.convert_to_numpy(keras.ops.softmax(model.predictor_network(x)))
    np.testing.assert_allclose(scores, np.linalg.norm(np.eye(3)[y] - r, axis=1), rtol=1e-5)
    plain = net()
    s = keras.ops.convert_to_numpy(keras.ops.softmax(plain(x)))
    np.testing.assert_allclose(
        runs.score_examples(plain, x, y, "self_confidence"), 1 - s[np.arange(20), y], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="needs a model with a q-network"):
        runs.score_examples(net(), x, y, "limit")
    with pytest.raises(ValueError, match="unknown score 'loss'"):
        runs.score_examples(net(), x, y, "loss")


def test_detect_in_run_writes_outputs(tmp_path):
    write_fake_mnist(tmp_path / "data", n_train=300, n_test=50)
    config = tiny_config(tmp_path / "run", tmp_path / "data", method="limit", predictor="laplace", beta=1.0, epochs=1)
    train.run_experiment(config)
    report = runs.detect_in_run(tmp_path / "run")  # LIMIT: the limit score by default
    out = tmp_path / "run" / "detection_limit"
    assert {"roc_auc", "average_precision", "precision", "recall", "f1", "realized_noise_rate"} <= set(report)
    assert report["flagged_by"] == "estimate, class by class" and report["num_flagged"] == report["estimated_issues"]
    assert sum(report["flagged_per_class"].values()) == report["num_flagged"]
    assert json.loads((out / "detection.json").read_text()) == json.loads(json.dumps(report))
    with open(out / "label_issues.csv") as f:
        every = list(csv.DictReader(f))
    rows = [r for r in every if r["split"] == "train"]
    validation = [r for r in every if r["split"] == "validation"]
    assert len(rows) == 200 and len(validation) == report["validation_scored"] > 0  # every example given has a row
    assert [int(r["rank"]) for r in every] == list(range(1, len(every) + 1))
    # Flagged rows first; in each part every class's rows by score, the classes taken in turn.
    thresholds = {c: np.inf if t is None else t for c, t in report["class_thresholds"].items()}
    flags = [r["flagged"] == "1" for r in every]
    assert flags == sorted(flags, reverse=True) and sum(flags) == report["num_flagged"] + report["validation_flagged"]
    for part in (True, False):
        for c in thresholds:
            shown = [float(r["score"]) for r in every if (r["flagged"] == "1") == part and r["observed_label"] == c]
            assert all(m >= after - 1e-5 for m, after in itertools.pairwise(shown))  # the file's scores: 6 digits
    first = [r["observed_label"] for r in every[: report["num_flagged"] // 2]]
    assert len(set(first)) >= min(3, sum(n > 0 for n in report["flagged_per_class"].values()))
    assert sum(r["flagged"] == "1" for r in validation) == report["validation_flagged"]
    assert all((float(r["score"]) >= thresholds[r["observed_label"]]) == (r["flagged"] == "1") for r in validation)
    assert 0 <= report["validation_roc_auc"] <= 1
    assert {"classifier", "q", "classifier_calibrated", "temperature"} <= set(report["estimates"])
    # LIMIT's estimate: the midpoint of the classifier's (errs high) and q's (errs low), flagged by count.
    by_both = (report["estimates"]["classifier"] + report["estimates"]["q"]) / 2
    assert report["estimated_noise_rate"] == pytest.approx(by_both, abs=1 / report["num_examples"])
    assert report["estimator"].startswith("the midpoint")
    assert report["estimate_bounds"] == sorted([report["estimates"]["q"], report["estimates"]["classifier"]])
    assert "source_index" in every[0] and "true_label" in every[0]
    labels = np.load(tmp_path / "run" / "labels.npz")
    first = int(rows[0]["split_index"])
    assert rows[0]["observed_label"] == str(labels["train_labels"][first])
    assert rows[0]["true_label"] == str(labels["train_clean_labels"][first])
    assert flags[0] or report["num_flagged"] == 0
    assert (out / "score_histogram.png").is_file() and (out / "suspects_grid.png").is_file()
    text = issue_report.describe(report, out).splitlines()  # what the command prints
    assert text[0].startswith(f"200 training examples; estimated {report['estimated_issues']} wrong labels")
    top = max(report["flagged_per_class"], key=report["flagged_per_class"].get)
    assert text[1].startswith(f"Flagged most under: {top} {report['flagged_per_class'][top]}")
    assert text[2].startswith(f"Known truth: {100 * report['realized_noise_rate']:.1f}% of the labels are wrong")
    assert text[3] == "Most suspicious (by the 'source_index' column of label_issues.csv):"
    assert text[4] == (
        f"  training example {every[0]['source_index']}: labelled {every[0]['observed_label']}, "
        f"looks like {every[0]['suggested_label']} (score {every[0]['score']})"
    )
    # A one-epoch network is weak: the detection says how weak, and not to trust it.
    assert 0 <= report["estimated_clean_accuracy"] <= 1 and 0 <= report["validation_accuracy"] <= 1
    weak = report["estimated_clean_accuracy"] < detection.TRUSTED_ACCURACY
    assert bool(report["trust_warning"]) == (weak or report["estimated_noise_rate"] > detection.TRUSTED_NOISE)
    if report["trust_warning"]:
        assert f"Warning: {report['trust_warning']}" in text
    assert any(line.startswith("The classifier on the validation split:") for line in text)
    assert runs.detect_in_run(tmp_path / "run", score="normalized_margin")["num_examples"] == 200
    # One threshold over all examples (--noper_class): the same count, the list by score alone.
    over_all = runs.detect_in_run(tmp_path / "run", out_dir=tmp_path / "over_all", per_class=False)
    assert over_all["flagged_by"] == "estimate" and over_all["num_flagged"] == report["num_flagged"]
    assert "class_thresholds" not in over_all
    with open(tmp_path / "over_all" / "label_issues.csv") as f:
        listed = list(csv.DictReader(f))
    assert [float(r["score"]) for r in listed] == sorted((float(r["score"]) for r in listed), reverse=True)
    assert all((float(r["score"]) >= over_all["threshold"]) == (r["flagged"] == "1") for r in listed)
    # A damaged best.keras: the run's weights file serves instead, with a warning (not "File not found").
    (tmp_path / "run" / "best.keras").write_bytes(b"garbage")
    again = runs.detect_in_run(tmp_path / "run", out_dir=tmp_path / "again")
    assert again["num_flagged"] == report["num_flagged"] and again["roc_auc"] == pytest.approx(report["roc_auc"])
    (tmp_path / "run" / "best.weights.h5").unlink()
    with pytest.raises(
        workdir.CorruptFileError, match=r"best.keras is not a readable Keras model .* train the run again"
    ):
        runs.detect_in_run(tmp_path / "run")


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
        report = runs.detect_in_run(tmp_path / "run", score="limit", budget=0.5)
    assert report["num_flagged"] == 100
    assert any("is unfinished (2 of at most 3 epochs)" in r.getMessage() for r in caplog.records)
    with pytest.raises(FileNotFoundError, match="not a run's work dir"):
        runs.detect_in_run(tmp_path / "nothing")


def test_the_noise_estimate_from_label_free_probabilities():
    rng = np.random.default_rng(0)
    n, k, rate = 4000, 5, 0.3
    truth = rng.integers(0, k, n)
    logits = 3.0 * np.eye(k)[truth] + rng.normal(size=(n, k))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # a model that never saw the labels
    wrong = rng.random(n) < rate
    given = np.where(wrong, (truth + rng.integers(1, k, n)) % k, truth)
    estimate = detection.estimate_noise(probs, given)
    assert estimate.noise_rate == pytest.approx(wrong.mean(), abs=0.03)
    assert estimate.joint.sum() == pytest.approx(n) and estimate.suggested.tolist() == probs.argmax(1).tolist()
    clean = detection.estimate_noise(probs, truth)
    assert clean.noise_rate < 0.08  # only the model's own mistakes remain


def test_the_estimates_interval_covers_it_and_narrows_with_more_examples():
    rng = np.random.default_rng(1)

    def sample(n, k=5, rate=0.3):
        truth = rng.integers(0, k, n)
        logits = 3.0 * np.eye(k)[truth] + rng.normal(size=(n, k))
        wrong = rng.random(n) < rate
        return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), np.where(wrong, (truth + 1) % k, truth)

    probs, given = sample(4000)
    low, high = detection.estimate_interval(probs, given)
    assert low < detection.estimate_noise(probs, given).noise_rate < high and high - low < 0.05
    assert detection.estimate_interval(probs, given) == (low, high)  # seeded: the same interval again
    small_low, small_high = detection.estimate_interval(*(a[:400] for a in sample(400)))
    assert small_high - small_low > 1.5 * (high - low)  # ten times fewer examples: a wider interval
    with pytest.raises(ValueError, match="level=1.5 is not allowed"):
        detection.estimate_interval(probs, given, level=1.5)
    # LIMIT's: between a label-free estimate (high) and one from probabilities that learned the labels (low).
    learned = 0.5 * probs + 0.5 * np.eye(probs.shape[1])[given]
    both, low, high = detection.estimate_noise_from_both(probs, learned, given)
    alone, memorized = detection.estimate_noise(probs, given), detection.estimate_noise(learned, given)
    assert (low, high) == (memorized.noise_rate, alone.noise_rate) and low < both.noise_rate < high
    assert both.num_issues == round((alone.num_issues + memorized.num_issues) / 2)
    low_b, high_b = detection.estimate_interval(probs, given, predictor_probs=learned)
    assert low_b < both.noise_rate < high_b


def test_find_clean_and_retrain_on_an_image_folder(tmp_path):
    from PIL import Image

    from limit_tf import issue_report

    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 60)
    wrong = rng.random(len(truth)) < 0.25
    given = np.where(wrong, (truth + rng.integers(1, 3, len(truth))) % 3, truth)
    for i, (g, t) in enumerate(zip(given, truth, strict=True)):
        (tmp_path / "imgs" / f"c{g}").mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 40, (8, 8), dtype=np.uint8)
        pixels[:, 2 * t : 2 * t + 3] = 255  # the true class is a bright band
        Image.fromarray(pixels).save(tmp_path / "imgs" / f"c{g}" / f"{i}.png")
    base = dict(dataset=f"folder:{tmp_path / 'imgs'}", architecture="mlp", epochs=15, batch_size=32, patience=15)
    config = ExperimentConfig(workdir=str(tmp_path / "limit"), method="limit", predictor="laplace", beta=1.0, **base)
    first = train.run_experiment(config)
    assert first["test_accuracy"] is None and first["realized_noise_rate"] is None  # no test set, truth unknown
    summary = runs.detect_in_run(tmp_path / "limit")
    assert summary["score"] == "limit" and not summary["truth_known"]
    assert summary["estimated_noise_rate"] == pytest.approx(wrong.mean(), abs=0.1)
    low, high = summary["estimated_noise_interval"]
    assert low <= summary["estimated_noise_rate"] <= high
    with open(tmp_path / "limit" / "detection_limit" / issue_report.ISSUES) as f:
        every = list(csv.DictReader(f))
    header = ["path", "observed_label", "suggested_label", "score", "rank", "flagged", "split", "split_index"]
    assert list(every[0]) == header
    assert sorted(r["path"] for r in every) == sorted(
        str(p.relative_to(tmp_path / "imgs")) for p in (tmp_path / "imgs").rglob("*.png")
    )  # every file given has a row, the validation part included
    rows = [r for r in every if r["split"] == "train"]
    flagged = [r for r in rows if r["flagged"] == "1"]
    assert len(flagged) == summary["num_flagged"] == summary["estimated_issues"]
    # Most flagged files sit in a wrong folder (their true class is in the file name's index).
    hits = [given[int(r["path"].split("/")[1][:-4])] != truth[int(r["path"].split("/")[1][:-4])] for r in flagged]
    assert np.mean(hits) > 0.8
    for mode in ("drop", "relabel"):
        retrained = train.run_experiment(
            ExperimentConfig(
                workdir=str(tmp_path / f"ce_{mode}"),
                method="ce",
                clean_from=str(tmp_path / "limit"),
                clean=mode,
                **base,
            )
        )
        used = len(rows) - len(flagged) if mode == "drop" else len(rows)
        assert retrained["num_train_examples_used"] == used and retrained["num_train_examples"] == len(rows)
    # A run without a detection gets one first (the defaults: the same flags as above).
    shutil.rmtree(tmp_path / "limit" / "detection_limit")
    fresh = ExperimentConfig(
        workdir=str(tmp_path / "ce_fresh"), method="ce", clean_from=str(tmp_path / "limit"), **base
    )
    assert len(runs.cleaned(runs.load_data(fresh.replace(clean_from=None)), fresh).train) == len(rows) - len(flagged)
    assert (tmp_path / "limit" / "detection_limit" / issue_report.ISSUES).is_file()
    with pytest.raises(Exception, match="trained on other data"):
        train.prepare(ExperimentConfig(workdir=str(tmp_path / "x"), method="ce", clean_from=str(tmp_path / "limit")))


def test_the_clean_accuracy_is_estimated_from_noisy_labels_and_a_weak_classifier_is_flagged():
    rng = np.random.default_rng(3)
    n, k, rate = 20_000, 10, 0.4
    clean = rng.integers(0, k, n)
    wrong = rng.random(n) < rate
    observed = np.where(wrong, (clean + rng.integers(1, k, n)) % k, clean)
    right = rng.random(n) < 0.8  # a classifier right about the true label 80% of the time
    predicted = np.where(right, clean, (clean + rng.integers(1, k, n)) % k)
    joint = np.zeros((k, k))
    np.add.at(joint, (observed, clean), 1.0)  # [given, true] as confident learning estimates it
    assert np.mean(predicted == observed) == pytest.approx(0.8 * 0.6 + 0.2 * 0.4 / 9, abs=0.01)  # what val shows
    assert detection.estimated_clean_accuracy(predicted, observed, joint) == pytest.approx(0.8, abs=0.01)
    assert detection.confidence([[0.9, 0.1], [0.4, 0.6]]) == pytest.approx(0.75)
    assert detection.trust_warning(0.85) is None and detection.trust_warning(0.85, 0.4) is None
    assert detection.trust_warning(None, 0.3) is None  # no validation split: only the estimate can warn
    assert "estimated clean accuracy is only 39%" in detection.trust_warning(0.39)
    assert "only 74% (under 75%)" in detection.trust_warning(0.7496)  # rounded down: never "75% (under 75%)"


def test_an_estimate_over_half_warns_even_when_the_implied_accuracy_looks_high():
    # A weak classifier counts its own mistakes as wrong labels, and the accuracy the estimate implies rises
    # with it (CIFAR-10, LIMIT_L: 40% clean, 51% of the labels estimated wrong against 16%, implied 88%).
    line = detection.trust_warning(0.877, 0.509)
    assert line.startswith("50.9% of the labels are estimated wrong, over half") and "suspects_grid.png" in line
    assert detection.trust_warning(None, 0.7).startswith("70.0% of the labels")
    assert detection.trust_warning(0.877, 0.5) is None
    both = detection.trust_warning(0.6, 0.7)
    assert both.startswith("the classifier's estimated clean accuracy is only 60% (under 75%), and 70.0% of the")


def test_suspect_titles_name_the_file_and_the_suggested_label():
    names = ["cat", "dog"]
    assert issue_report.suspect_title(names, 0, 1, "cat/003.png") == "cat/003.png\ncat -> dog?"
    assert issue_report.suspect_title(names, 0, 0, "cat/003.png", truth=1) == "cat/003.png\ncat\n(true: dog)"
    assert issue_report.suspect_title(names, 1, None) == "dog"


def test_temperature_scaling_undoes_overconfidence():
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=2.0, size=(5000, 4))
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in calibrated])  # labels drawn from the calibrated model
    overconfident = detection.scaled(calibrated, 0.5)  # sharpened: logits doubled
    assert detection.temperature(overconfident, labels) == pytest.approx(2.0, rel=0.1)
    assert detection.temperature(calibrated, labels) == pytest.approx(1.0, rel=0.1)
    np.testing.assert_allclose(detection.scaled(overconfident, 2.0), calibrated, atol=1e-9)


def test_an_underconfident_classifier_that_is_right_is_trusted():
    # Early-stopped CE on a small table predicts nearly flat probabilities with the right argmax (wine: mean
    # confidence 0.36 at 92% clean accuracy): its confidence decides nothing.
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    n, k = 3000, 3
    clean = rng.integers(0, k, n)
    observed = np.where(rng.random(n) < 0.25, (clean + rng.integers(1, k, n)) % k, clean)
    predicted = np.where(rng.random(n) < 0.95, clean, (clean + 1) % k)
    probs = np.full((n, k), 0.32)
    probs[np.arange(n), predicted] = 0.36
    joint = np.zeros((k, k))
    np.add.at(joint, (observed, clean), 1.0)
    estimate = SimpleNamespace(joint=joint, noise_rate=float(np.mean(observed != clean)))
    dataset = SimpleNamespace(validation=SimpleNamespace(labels=observed))
    out = runs.validation_trust({"classifier": probs}, dataset, estimate)
    assert out["mean_confidence"] == pytest.approx(0.36)
    assert out["estimated_clean_accuracy"] == pytest.approx(0.95, abs=0.03) and out["trust_warning"] is None
    assert runs.validation_trust(None, dataset, SimpleNamespace(noise_rate=0.6))["trust_warning"].startswith("60.0%")


def test_rank_class_by_class():
    scores = np.array([0.9, 0.2, 0.5, 0.4, 0.3, 0.1])
    labels = np.array([0, 0, 0, 1, 1, 1])
    found = detection.rank(scores, budget=[1, 2], labels=labels)
    assert found.flagged.tolist() == [True, False, False, True, True, False]
    np.testing.assert_allclose(found.class_thresholds, [0.9, 0.3])
    assert found.threshold == 0.3
    # Flagged first; each class's most suspicious in turn, in proportion to its flags (ties by score).
    np.testing.assert_allclose(found.standing(), [2.0, 0.5, 1.0, 2.0, 1.5, 1.0])
    assert found.ranked.tolist() == [0, 3, 4, 2, 5, 1]
    # Other examples are placed where their scores fall among the training examples of their class.
    np.testing.assert_allclose(found.standing([0.95, 0.35, 0.0], [0, 1, 1]), [2.0, 1.5, 0.0])
    none_of_one = detection.rank(scores, budget=[0, 1], labels=labels)
    assert none_of_one.flagged.tolist() == [False, False, False, True, False, False]
    assert none_of_one.class_thresholds[0] == np.inf and none_of_one.ranked[0] == 3
    # Other examples at the same thresholds (the validation split).
    other = found.apply([0.95, 0.8, 0.35, 0.1], [0, 0, 1, 1])
    assert other.flagged.tolist() == [True, False, True, False]
    assert detection.rank(scores, threshold=[0.5, 0.35], labels=labels).flagged.tolist() == [
        True,
        False,
        True,
        True,
        False,
        False,
    ]
    with pytest.raises(ValueError, match=r"budget=\[4, 0\] is not allowed: per class, a count between 0"):
        detection.rank(scores, budget=[4, 0], labels=labels)
    with pytest.raises(ValueError, match="needs labels="):
        detection.rank(scores, budget=[1, 1])
    with pytest.raises(ValueError, match=r"labels span \[0, 1\]: a per-class value is given for \[0, 1\)"):
        detection.rank(scores, budget=[1], labels=labels)
    with pytest.raises(ValueError, match="one label per score"):
        detection.rank(scores, budget=[1, 1], labels=labels[:3])


def test_class_budgets_share_the_estimate_like_the_joint():
    labels = np.repeat(np.arange(3), [100, 100, 50])
    joint = np.array([[70.0, 30.0, 0.0], [0.0, 100.0, 0.0], [10.0, 0.0, 40.0]])
    estimate = detection.NoiseEstimate(40, 0.16, np.ones(3), joint, np.zeros(250, int))
    assert detection.class_budgets(estimate, labels).tolist() == [30, 0, 10]
    more = dataclasses.replace(estimate, num_issues=41)  # rounded by the largest remainder, adding up
    assert detection.class_budgets(more, labels).tolist() == [31, 0, 10]
    capped = dataclasses.replace(estimate, num_issues=200)  # no class gives more than it has
    budgets = detection.class_budgets(capped, labels)
    assert budgets.sum() == 200 and np.all(budgets <= [100, 100, 50]) and budgets[0] == 100
    flat = dataclasses.replace(estimate, joint=np.diag([100.0, 100.0, 50.0]), num_issues=25)
    assert detection.class_budgets(flat, labels).tolist() == [10, 10, 5]  # nothing off the diagonal: by size


def test_flagging_class_by_class_finds_noise_that_hits_some_classes():
    # Classes 0/1 and 2/3 look alike, and 40% of the 0s and 2s are filed as their look-alike (pair noise);
    # class 4 has no wrong labels but is hard: its correct examples get low confidence. One threshold over
    # all examples flags many of those; class by class, each class's own threshold takes its difficulty out.
    rng = np.random.default_rng(0)
    n, k = 4000, 5
    clean = rng.integers(0, k, n)
    alike = np.array([1, 0, 3, 2, 4])
    wrong = np.isin(clean, [0, 2]) & (rng.random(n) < 0.4)
    observed = np.where(wrong, alike[clean], clean)
    hard = clean == 4
    logits = np.where(hard, 1.0, 3.0)[:, None] * np.eye(k)[clean] + rng.normal(size=(n, k))
    logits += 1.5 * np.eye(k)[alike[clean]] * ~hard[:, None]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = detection.self_confidence_score(probs, observed)
    _, _, by_class = detection.detect(scores, probs, observed, noise_mask=wrong)
    _, _, over_all = detection.detect(scores, probs, observed, noise_mask=wrong, per_class=False)
    assert by_class["num_flagged"] == over_all["num_flagged"]
    assert by_class["flagged_per_class"][4] < 0.6 * over_all["flagged_per_class"][4]
    assert by_class["precision"] > over_all["precision"] + 0.03 and by_class["recall"] > over_all["recall"] + 0.04
    assert by_class["roc_auc"] > over_all["roc_auc"] + 0.01  # the ranking a person reads: flagged first, by margin
