"""keras.applications bodies (--architecture=keras:NAME): offline, with random weights or a saved file."""

import numpy as np
import pytest

from limit_tf import backbones, builders, paths, train
from limit_tf.config import ConfigError, ExperimentConfig

SHAPE = (16, 16, 3)


def _folder(root, per_class=10):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = (rng.integers(0, 80, SHAPE) + 100 * k).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k}{i:02d}.png")
    return root


def test_a_weights_file_starts_the_body_and_predictions_match_the_saved_network(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, *SHAPE)).astype("float32")
    stats = {"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.25, 0.3)}
    first = backbones.build("MobileNetV3Small", 5, SHAPE, weights=None, **stats)
    body = next(layer for layer in first.layers if layer.name.startswith("MobileNetV3Small"))
    path = tmp_path / "body.weights.h5"
    body.save_weights(path)
    second = backbones.build("MobileNetV3Small", 5, SHAPE, weights=str(path), **stats)
    second.get_layer("logits").set_weights(first.get_layer("logits").get_weights())
    expected = first.predict(x, verbose=0)  # a random body's logits are tiny: compare them relatively
    np.testing.assert_allclose(second.predict(x, verbose=0), expected, rtol=1e-4, atol=0)
    # A random start differs; a frozen body leaves only the head to train.
    third = backbones.build("MobileNetV3Small", 5, SHAPE, weights=None, **stats)
    third.get_layer("logits").set_weights(first.get_layer("logits").get_weights())
    assert not np.allclose(third.predict(x, verbose=0), expected, rtol=1e-2, atol=0)
    frozen = backbones.build("MobileNetV3Small", 5, SHAPE, weights=str(path), freeze=True, **stats)
    assert [w.name for w in frozen.trainable_weights] == ["kernel", "bias"]


def test_the_body_sees_pixels_as_it_expects_them():
    # Standardized inputs are turned back into 0-255 pixels, then the body's own preprocessing: caffe's is
    # BGR minus the ImageNet mean, a fixed map on the channels.
    model = backbones.build("ResNet50", 3, (8, 8, 3), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), weights=None)
    import keras

    pre = keras.Model(model.input, model.get_layer("keras_ResNet50_bgr_minus_mean").output)
    rgb = np.zeros((1, 8, 8, 3), "float32")
    rgb[..., 0] = 2.0  # red: 0.5 + 2 * 0.25 = 1.0 -> 255
    out = pre.predict(rgb, verbose=0)[0, 0, 0]
    np.testing.assert_allclose(out, [127.5 - 103.939, 127.5 - 116.779, 255.0 - 123.68], rtol=1e-5)
    assert model.get_layer("keras_ResNet50_resize").output.shape[1:3] == (32, 32)  # the smallest side


def test_limit_trains_on_a_folder_with_a_keras_body_and_q_gets_the_same_start(tmp_path):
    folder = _folder(tmp_path / "photos")
    path = tmp_path / "body.weights.h5"
    start = backbones.build("MobileNetV3Small", 2, SHAPE, mean=(0.5,), std=(0.2,), weights=None)
    next(layer for layer in start.layers if layer.name.startswith("MobileNetV3Small")).save_weights(path)
    config = ExperimentConfig(
        workdir=str(tmp_path / "run"),
        dataset=f"folder:{folder}",
        noise="none",
        method="limit",
        architecture="keras:MobileNetV3Small",
        weights=str(path),
        epochs=1,
    )
    dataset = train.prepare(config)
    model = builders.build_for_data(config, dataset, __import__("tensorflow").distribute.get_strategy())
    bodies = [
        next(layer for layer in net.layers if layer.name.startswith("MobileNetV3Small"))
        for net in (model.classifier, model.predictor_network)
    ]
    for a, b in zip(bodies[0].get_weights(), bodies[1].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # q starts from the classifier's weights file
    results = train.run_experiment(config)
    assert results["epochs_run"] == 1 and results["config"]["predictor"] == "gaussian"  # the photo recipe


def test_bad_bodies_and_weights_are_one_line_errors(tmp_path):
    base = ExperimentConfig(workdir=str(tmp_path / "w"), dataset=f"folder:{_folder(tmp_path / 'd', 2)}")
    with pytest.raises(ConfigError, match="--architecture='keras:ResNet9' is not allowed: keras:NAME takes one of"):
        base.replace(architecture="keras:ResNet9").validate()
    with pytest.raises(ConfigError, match="--weights=imagenet with --architecture=keras:ResNet50 downloads"):
        base.replace(architecture="keras:ResNet50").validate()
    base.replace(architecture="keras:ResNet50", weights="imagenet", allow_download=True).validate()
    with pytest.raises(ConfigError, match="--weights='/nope.h5' is not a file"):
        paths.check(base.replace(architecture="keras:ResNet50", weights="/nope.h5").validate())
    with pytest.raises(ValueError, match="not inputs of shape"):
        backbones.build("ResNet50", 3, (13,), mean=(0.0,), std=(1.0,))


@pytest.mark.parametrize(
    "settings, expected",
    [
        (dict(architecture="keras:MobileNetV3Small"), 1e-4),  # ImageNet weights, fine-tuned
        (dict(architecture="keras:MobileNetV3Small", weights="body.weights.h5"), 1e-4),
        (dict(architecture="keras:MobileNetV3Small", freeze_backbone=True), 1e-3),  # a head on a frozen body
        (dict(architecture="keras:MobileNetV3Small", weights="none"), 1e-3),  # from scratch
        (dict(architecture="keras:MobileNetV3Small", learning_rate=3e-3), 3e-3),  # given: kept
        (dict(architecture="resnet20"), 1e-3),
        (dict(), 1e-3),
    ],
)
def test_fine_tuning_a_pretrained_body_takes_a_tenth_of_the_learning_rate_unless_given(settings, expected):
    config = ExperimentConfig(workdir="w", dataset="folder:photos", **settings)
    resolved = config.for_data(SHAPE, 100)
    assert resolved.learning_rate == pytest.approx(expected) and resolved.resolved
    assert resolved.for_data(SHAPE, 100) == resolved
    assert builders.MethodContext(config, 2, SHAPE).config.learning_rate == pytest.approx(expected)  # what trains


def test_an_auto_learning_rate_is_the_same_experiment_and_name_as_the_rate_it_takes():
    from limit_tf import config as config_lib
    from limit_tf import methods

    plain = ExperimentConfig(workdir="w", dataset="folder:photos")
    assert plain.differences(plain.replace(learning_rate=1e-3)) == []  # runs that recorded 1e-3 continue
    assert plain.differences(plain.replace(learning_rate=1e-4)) == ["learning_rate"]
    body = plain.replace(architecture="keras:MobileNetV3Small")
    assert body.differences(body.replace(learning_rate=1e-4)) == []
    assert body.differences(body.replace(learning_rate=1e-3)) == ["learning_rate"]
    for config, name in ((plain, "ce"), (plain.replace(learning_rate=1e-4), "ce_lr0.0001"), (body, "ce")):
        settings, defaults = config_lib.naming(config)
        assert methods.run_name(settings, defaults=defaults) == name
