"""Photographs: the default network follows the data, color images are augmented, a cosine schedule."""

import numpy as np
import pytest

from limit_tf import builders, data, models, runs, train
from limit_tf.config import ConfigError, ExperimentConfig


def _photo_folder(root, size=16, per_class=12, color=True):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size, size, 3) if color else (size, size)
            pixels = rng.integers(0, 80, shape, dtype=np.uint8) + 100 * k
            Image.fromarray(pixels).save(root / name / f"{k}{i:02d}.png")
    return root


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((64,), "mlp"),
        ((28, 28, 1), "mnist_cnn"),
        ((32, 32, 1), "mnist_cnn"),
        ((64, 64, 1), "resnet20"),
        ((32, 32, 3), "resnet20"),
        ((8, 8, 3), "resnet20"),
    ],
)
def test_the_default_network_follows_the_data(shape, expected):
    assert models.architecture_for(shape) == expected
    config = ExperimentConfig(workdir="w", dataset="folder:/nowhere")
    assert config.resolved_architecture == "auto"
    assert builders.MethodContext(config, 10, shape).architecture == expected
    assert builders.MethodContext(config.replace(architecture="mlp"), 10, shape).architecture == "mlp"
    assert ExperimentConfig(workdir="w", dataset="csv:/t.csv").resolved_architecture == "mlp"
    assert ExperimentConfig(workdir="w", dataset="cifar10").resolved_architecture == "resnet34"  # the paper's


def test_color_folders_are_augmented_by_default_grayscale_and_tables_are_not(tmp_path):
    color = _photo_folder(tmp_path / "color")
    gray = _photo_folder(tmp_path / "gray", color=False)
    config = ExperimentConfig(workdir=str(tmp_path / "w"), dataset=f"folder:{color}", noise="none")
    assert runs.load_data(config).augment
    assert not runs.load_data(config.replace(augment="off")).augment
    assert not runs.load_data(config.replace(dataset=f"folder:{gray}")).augment
    assert runs.load_data(config.replace(dataset=f"folder:{gray}", augment="on")).augment
    table = tmp_path / "t.csv"
    table.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    with pytest.raises(ConfigError, match=r"--augment=on needs images"):
        runs.load_data(config.replace(dataset=f"csv:{table}", augment="on"))
    with pytest.raises(ConfigError, match=r"--augment='maybe' is not allowed"):
        config.replace(augment="maybe").validate()


def test_the_augmented_stream_is_keyed_by_seed_and_epoch_so_a_resumed_run_sees_the_same_batches(tmp_path):
    folder = _photo_folder(tmp_path / "color", size=32)
    dataset = runs.load_data(ExperimentConfig(workdir="w", dataset=f"folder:{folder}", noise="none"))
    whole, steps = data.training_stream(dataset, batch_size=8, epochs=3, seed=4)
    batches = [x.numpy() for x, _ in whole.take(3 * steps)]
    resumed, _ = data.training_stream(dataset, batch_size=8, epochs=3, seed=4, first_epoch=2)
    for a, (b, _) in zip(batches[2 * steps :], resumed.take(steps), strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    plain = runs.with_augmentation(dataset, "off", users=True)
    unaugmented, _ = data.training_stream(plain, batch_size=8, epochs=1, seed=4)
    first = next(iter(unaugmented))[0].numpy()
    assert not np.array_equal(first, batches[0])  # the same order (same seed), other pixels: crops and flips
    other_seed = next(iter(data.training_stream(dataset, batch_size=8, epochs=1, seed=5)[0]))[0].numpy()
    assert not np.array_equal(other_seed, batches[0])


def test_sgd_with_momentum_is_an_option():
    import keras

    ctx = builders.MethodContext(ExperimentConfig(workdir="w", optimizer="sgd", learning_rate=0.05), 10, (8,))
    optimizer = ctx.optimizer()
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == 0.9 and optimizer.nesterov
    assert isinstance(
        builders.MethodContext(ExperimentConfig(workdir="w"), 10, (8,)).optimizer(), keras.optimizers.Adam
    )
    with pytest.raises(ConfigError, match=r"--optimizer='rmsprop' is not allowed; allowed: adam, sgd"):
        ExperimentConfig(workdir="w", optimizer="rmsprop").validate()


def test_cosine_schedule_decays_to_zero_over_the_run():
    config = ExperimentConfig(workdir="w", lr_schedule="cosine", learning_rate=0.01, epochs=10)
    ctx = builders.MethodContext(config, 10, (8,), steps_per_epoch=5)
    schedule = ctx.learning_rate()
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(25)) == pytest.approx(0.005, rel=1e-4)
    assert float(schedule(50)) == pytest.approx(0.0, abs=1e-9)
    assert builders.MethodContext(config.replace(lr_schedule="constant"), 10, (8,)).learning_rate() == 0.01
    with pytest.raises(ValueError, match="needs the number of training steps per epoch"):
        builders.MethodContext(config, 10, (8,)).learning_rate()


def test_settings_left_at_auto_take_the_photo_recipe_on_photos_and_the_papers_elsewhere(tmp_path):
    folder = ExperimentConfig(workdir="w", dataset=f"folder:{tmp_path}", method="limit")
    photos = folder.for_data((32, 32, 3), 8000)
    assert (photos.epochs, photos.patience, photos.lr_schedule, photos.predictor, photos.beta) == (
        60,
        60,
        "cosine",
        "gaussian",
        1.0,
    )
    assert photos.batch_size == 256 and photos.resolved and photos.for_data((32, 32, 3), 8000) == photos
    # Grayscale digits in a folder, tables and the named datasets keep the paper's protocol.
    for config, shape in (
        (folder, (28, 28, 1)),
        (folder.replace(dataset="csv:t.csv"), (13,)),
        (folder.replace(dataset="mnist"), (28, 28, 1)),
    ):
        paper = config.for_data(shape, 8000)
        assert (paper.epochs, paper.patience, paper.lr_schedule, paper.predictor, paper.beta) == (
            400,
            100,
            "constant",
            "laplace",
            10.0,
        )
    # A given setting wins; the photos' patience follows the given epochs (no early stop).
    given = folder.replace(epochs=12, predictor="laplace", beta=3.0, lr_schedule="constant", batch_size=64)
    mine = given.for_data((32, 32, 3), 8000)
    assert (mine.epochs, mine.patience, mine.lr_schedule, mine.predictor, mine.beta, mine.batch_size) == (
        12,
        12,
        "constant",
        "laplace",
        3.0,
        64,
    )
    # --architecture picks the recipe too: a residual network on a folder of digits is trained as photos.
    assert folder.replace(architecture="resnet20").for_data((28, 28, 1)).predictor == "gaussian"
    assert folder.replace(architecture="mnist_cnn").for_data((32, 32, 3)).predictor == "laplace"
    with pytest.raises(ConfigError, match="--warmup_epochs=70 is not allowed: it must be < --epochs=60"):
        folder.replace(warmup_epochs=70).validate().for_data((32, 32, 3), 8000)


def test_a_color_folder_trains_limit_end_to_end_with_the_photo_network_and_recipe(tmp_path):
    folder = _photo_folder(tmp_path / "color", size=16, per_class=16)
    config = ExperimentConfig(
        workdir=str(tmp_path / "run"), dataset=f"folder:{folder}", noise="none", method="limit", epochs=2
    )
    results = train.run_experiment(config)
    assert results["epochs_run"] == 2
    # results.json: the settings as trained (the photo recipe filled in) and as given (what a rerun matches).
    trained, given = results["config"], results["requested"]
    assert (trained["predictor"], trained["beta"], trained["lr_schedule"], trained["patience"]) == (
        "gaussian",
        1.0,
        "cosine",
        2,
    )
    assert (given["predictor"], given["beta"], given["lr_schedule"], given["patience"]) == ("auto", None, "auto", 0)
    assert train.run_experiment(config)["test_accuracy"] == results["test_accuracy"]  # finished: not trained again
    import tensorflow as tf

    model = train.build_model(config, runs.load_data(config), tf.distribute.get_strategy())
    assert "stage3_block3_add" in {layer.name for layer in model.classifier.layers}  # the pre-activation ResNet-20
    assert model.predictor_network.count_params() == model.classifier.count_params()  # q: the same network
