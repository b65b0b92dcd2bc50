import numpy as np
import pytest
import tensorflow as tf

from conftest import make_stage, make_style, run_steps, save_png
from tfstyle import images
from tfstyle.api import run_config
from tfstyle.config import make_config
from tfstyle.costs import content_cost, gram_matrix, layer_style_cost
from tfstyle.errors import UserError
from tfstyle.schedule import initial_image
from tolerances import assert_chain_close, assert_within_rounding, vgg19_step_path

LAYERS = "block1_conv1=0.5,block2_conv1=0.3,block3_conv1=0.2"


def adam(**settings):
    """The Coursera-formulation objective (no normalisation) with Adam on one scale."""
    return make_config(style_layers=LAYERS, optimizer="adam", scales=1, normalize_costs=False,
                       **settings)


@pytest.fixture
def batch(content_array, style_array):
    return content_array[None, :64, :64], style_array[None, :64, :64]


def test_initial_images(content_array):
    assert np.array_equal(initial_image("content", content_array, 0), content_array)
    noisy = initial_image("content_noise", content_array, 1)
    assert np.abs(noisy - content_array).max() <= 0.25 + 1e-6
    assert noisy.min() >= 0 and noisy.max() <= 1 and noisy.dtype == np.float32
    assert np.array_equal(noisy, initial_image("content_noise", content_array, 1))
    assert not np.array_equal(noisy, initial_image("content_noise", content_array, 2))
    noise = initial_image("noise", content_array, 0)
    assert 0 <= noise.min() and noise.max() <= 1 and noise.std() > 0.25


def test_initial_images_from_a_picture_and_blended_with_noise(content_array, style_array):
    picture = style_array[:64, :80]
    assert np.array_equal(initial_image("style", content_array, 0, picture=picture), picture)
    blended = initial_image("content", content_array, 3, noise=0.3)
    noise = np.random.default_rng(3).uniform(0.0, 1.0, content_array.shape)
    np.testing.assert_allclose(blended, 0.7 * content_array + 0.3 * noise, rtol=0, atol=1e-6)
    # Each image of a batch starts as it would alone.
    batch = initial_image("content", np.stack([content_array] * 2), 3, noise=0.3)
    assert np.array_equal(batch[0], blended) and np.array_equal(batch[1], blended)
    assert np.array_equal(initial_image("noise", content_array, 3, noise=0.3),
                          initial_image("noise", content_array, 3))


@pytest.mark.parametrize("init", ["style", "file"])
def test_a_run_starts_from_the_style_or_an_image_file(tmp_path, image_files, init):
    content, style = image_files
    start = save_png(make_style(96, 40)[:, ::-1], tmp_path / "start.png")
    first = []
    config = make_config(content=content, style=style, max_size=64, scales=1, steps=1,
                         optimizer="adam", init=start if init == "file" else "style", quiet=True)
    result = run_config(config, callbacks=[lambda iterate: first.append(iterate)])
    expected = images.to_array(images.load_image(start if init == "file" else style), (64, 51))
    assert result.image.shape == (1, 51, 64, 3)
    # One Adam step moves each pixel by about the learning rate at most.
    assert np.abs(result.image[0] - expected).max() <= 2 * config.learning_rate
    assert np.abs(result.image[0] - images.to_array(images.load_image(content), (64, 51))).max() > 0.2


def test_an_init_that_is_neither_a_name_nor_an_image_is_refused(image_files):
    content, style = image_files
    with pytest.raises(UserError, match="--init 'zeros' is none of content, content_noise, noise, "
                                        "style, so it must be an image: Image file 'zeros' does "
                                        "not exist"):
        run_config(make_config(content=content, style=style, max_size=64, init="zeros"))


def test_costs_are_the_formulas(batch):
    config = adam(content_layer="block3_conv2", alpha=3.0, beta=7.0, init="content_noise")
    objective = make_stage(config, *batch).optimizer.objective
    image = initial_image(config.init, batch[0], config.seed)
    costs = {name: float(value) for name, value in objective.costs(image).items()}
    features = objective.extractor(image)
    style_features = objective.extractor(batch[1])
    expected_content = float(content_cost(objective.extractor(batch[0])["block3_conv2"],
                                          features["block3_conv2"])[0])
    expected_layers = {name: float(np.float32(weight) * layer_style_cost(
                           gram_matrix(style_features[name]), features[name])[0].numpy())
                       for name, weight in config.style_layers}
    # The same kernels on the same activations: the same bits.
    assert costs["content"] == expected_content
    for name, value in expected_layers.items():
        assert costs[f"style/{name}"] == value
    # Sums in float32 against float64: a rounding per addition and product.
    assert_within_rounding(costs["style"], sum(expected_layers.values()),
                           terms=len(expected_layers) - 1)
    assert_within_rounding(costs["total"], 3.0 * costs["content"] + 7.0 * costs["style"], terms=3)


def test_steps_lower_the_cost_and_keep_pixels_in_range(batch):
    optimizer = make_stage(adam(learning_rate=0.05), *batch).optimizer
    first = float(optimizer.step()["total"])
    for _ in range(15):
        last = float(optimizer.step()["total"])
    assert last < 0.5 * first
    image = optimizer.image.numpy()
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert not np.array_equal(image, batch[0])


def test_xla_and_plain_graph_agree(batch):
    runs = []
    for jit in (True, False):
        config = adam(jit=jit)
        optimizer = make_stage(config, *batch).optimizer
        runs.append([float(optimizer.step()["total"]) for _ in range(3)])
    # Other kernels, so other rounding, through three steps.
    path = vgg19_step_path(*config.layers, pixels=64 * 64)
    assert_chain_close(runs[0], runs[1], path * 3)


def test_same_seed_same_result(batch):
    config = adam(init="content_noise", seed=5, steps=3)
    results = []
    for _ in range(2):
        results.append(run_steps(make_stage(config, *batch), 3).image)
    np.testing.assert_array_equal(results[0], results[1])  # the same kernels twice


def test_loop_saves_every_n_steps_and_at_the_end(batch):
    saved = []
    result = run_steps(make_stage(adam(), *batch), 7, lambda image, step: saved.append(step),
                       save_every=3)
    assert saved == [3, 6, 7]
    assert result.steps == 7 and len(result.history) == 7 and not result.interrupted


def test_coursera_preset_takes_the_notebooks_steps(content_array, style_array):
    """Three steps of the coursera preset equal three steps of the notebook's own train_step
    (written here as the course writes it, with tfstyle.coursera's functions)."""
    from tfstyle import coursera

    config = make_config("coursera", image_size=48, jit=False)
    content, style = content_array[None, :48, :48], style_array[None, :48, :48]
    step = make_stage(config, content, style).optimizer
    ours = [float(step.step()["total"]) for _ in range(3)]

    layers = [name for name, _ in coursera.STYLE_LAYERS] + [coursera.content_layer[0][0]]
    extractor = step.objective.extractor
    vgg, order = extractor.model, extractor.layers
    # The course's model: [0, 1] images straight in, style layers first, content layer last.
    outputs = lambda image: [vgg(image)[order.index(name)] for name in layers]
    a_C, a_S = outputs(content), outputs(style)
    generated = tf.Variable(initial_image("content_noise", content, config.seed))
    optimizer = tf.keras.optimizers.Adam(learning_rate=0.01)
    course = []
    for _ in range(3):
        with tf.GradientTape() as tape:
            a_G = outputs(generated)
            J = coursera.total_cost(coursera.compute_content_cost(a_C, a_G),
                                    coursera.compute_style_cost(a_S, a_G), alpha=10, beta=40)
        optimizer.apply_gradients([(tape.gradient(J, generated), generated)])
        generated.assign(tf.clip_by_value(generated, 0.0, 1.0))
        course.append(float(J))
    # The same model, costs and Adam, without XLA: the same kernels. Only the sums that make
    # the total (the layers' terms, α and β) may be grouped otherwise by the graph optimiser.
    assert_within_rounding(ours, course, terms=len(layers) + 3, computations=2)
    # Adam's arithmetic may be grouped otherwise too, and the steps carry that on.
    path = vgg19_step_path(*layers, pixels=48 * 48)
    assert_chain_close(step.image.numpy(), generated.numpy(), path * 3)
