"""--precision: VGG19 in float16 or bfloat16, with the image, the costs and Adam in float32."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import make_content, make_stage, make_style, poison_from, run_steps
from tfstyle import optimizers
from tfstyle.api import run_config
from tfstyle.config import make_config
from tfstyle.errors import UserError
from tfstyle.features import FeatureExtractor
from tfstyle.loop import NonFiniteCost
from tolerances import storage_tolerance, vgg19_path

LAYERS = "block1_conv1=0.5,block2_conv1=0.3,block3_conv1=0.2"
CONTENT_LAYER = "block4_conv2"
COMPUTE_DTYPE = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def config_for(precision, **settings):
    return make_config(style_layers=LAYERS, content_layer=CONTENT_LAYER, init="content_noise",
                       optimizer="adam", scales=1, normalize_costs=False, alpha=10.0,
                       beta=1e-5, learning_rate=0.05, precision=precision, **settings)


@pytest.fixture(scope="module")
def images():
    return make_content()[None, :64, :64], make_style()[None, :64, :64]


@pytest.fixture(scope="module")
def float32_first_costs(images):
    costs = make_stage(config_for("float32"), *images).optimizer.step()
    return {name: float(value) for name, value in costs.items()}


def test_unknown_precision_is_refused():
    with pytest.raises(UserError, match="Unknown --precision 'float16'; choose one of: float32, "
                                        "mixed_float16, mixed_bfloat16"):
        make_config(precision="float16")


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_vgg_computes_in_the_low_precision_dtype(precision):
    extractor = FeatureExtractor(["block1_conv1", "block2_conv1"], precision=precision)
    for name in ("block1_conv1", "block1_conv2", "block2_conv1"):
        layer = extractor.model.get_layer(name)
        assert layer.compute_dtype == COMPUTE_DTYPE[precision]
        assert layer.kernel.dtype == "float32"  # mixed policies keep the weights in float32
    assert extractor.model.compute_dtype == COMPUTE_DTYPE[precision]
    images = tf.random.uniform([1, 40, 40, 3], seed=3)
    raw = extractor.model(images)
    assert [output.dtype for output in raw] == [COMPUTE_DTYPE[precision]] * 2
    assert all(value.dtype == tf.float32 for value in extractor(images).values())
    # The policy was scoped to building the model, and float32 extractors get their own model.
    assert keras.mixed_precision.dtype_policy().name == "float32"
    plain = FeatureExtractor(["block1_conv1"])
    assert plain.model.get_layer("block1_conv1").compute_dtype == "float32"
    np.testing.assert_array_equal(plain.model.get_layer("block1_conv1").kernel.numpy(),
                                  extractor.model.get_layer("block1_conv1").kernel.numpy())


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_steps_are_close_to_float32_and_lower_the_cost(precision, images,
                                                             float32_first_costs):
    config = config_for(precision)
    transfer = make_stage(config, *images).optimizer
    first = transfer.step()
    assert all(value.dtype == tf.float32 for value in first.values())
    first = {name: float(value) for name, value in first.items()}
    assert first.keys() == float32_first_costs.keys()
    rtol = storage_tolerance(len(vgg19_path(CONTENT_LAYER, *config.layer_names)),
                             COMPUTE_DTYPE[precision])
    for name, value in first.items():
        assert value == pytest.approx(float32_first_costs[name], rel=rtol), name
    for _ in range(7):
        last = float(transfer.step()["total"])
    assert last < 0.7 * first["total"]
    assert transfer.image.dtype == tf.float32
    assert all(variable.dtype == "float32" for variable in transfer.optimizer.variables
               if variable.dtype.startswith("float"))
    assert int(transfer.optimizer.iterations) == 8  # no step was skipped
    image = transfer.image.numpy()
    assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0


def test_float16_overflow_skips_the_step_but_not_the_run(images, monkeypatch):
    # A loss scale far too large: the first gradients overflow float16 although every cost is
    # finite. Those steps leave the image and Adam alone and halve the scale; the run goes on.
    monkeypatch.setattr(optimizers, "INITIAL_LOSS_SCALE", 2.0 ** 20)
    stage = make_stage(config_for("mixed_float16"), *images)
    transfer = stage.optimizer
    start = transfer.image.numpy()
    costs = transfer.step()
    assert all(np.isfinite(float(value)) for value in costs.values())
    np.testing.assert_array_equal(transfer.image.numpy(), start)
    assert float(transfer.optimizer.dynamic_scale) == 2.0 ** 19
    assert int(transfer.optimizer.iterations) == 0
    result = run_steps(stage, 30)
    assert result.steps == 30 and len(result.history) == 30
    skipped = 30 - int(transfer.optimizer.iterations)
    assert 0 < skipped < 30
    assert float(transfer.optimizer.dynamic_scale) == 2.0 ** (19 - skipped)
    assert result.history[-1]["total"] < 0.7 * result.history[0]["total"]


def test_non_finite_costs_still_stop_a_float16_run(images):
    broken = poison_from(make_stage(config_for("mixed_float16"), *images), 3)
    saved = []
    with pytest.raises(NonFiniteCost, match="became nan at step 3; stopped and kept the image of "
                                            "step 2. Activations in float16 overflow above 65504"):
        run_steps(broken, 10, lambda image, step: saved.append(step), precision="mixed_float16")
    assert saved == [2]


def test_float16_run_resumes_exactly(tmp_path, image_files):
    """The loss scale and its counter are checkpointed with Adam's state."""
    content, style = image_files

    def run(output, steps, **settings):
        return run_config(config_for("mixed_float16", content=content, style=style,
                                     output=str(tmp_path / output), max_size=48, steps=steps,
                                     quiet=True, **settings))

    whole = run("whole.png", 4, checkpoint_every=2)
    run("split.png", 2, checkpoint_every=2)
    resumed = run("split.png", 4, resume=True)
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert resumed.history == whole.history[2:]
    with pytest.raises(UserError, match=r"--precision \(was 'mixed_float16', now 'float32'\)"):
        run_config(config_for("float32", content=content, style=style, max_size=48, steps=6,
                              output=str(tmp_path / "split.png"), resume=True, quiet=True))
