"""tfstyle.costs against an independent float64 NumPy implementation, plus the properties the
formulas must have (symmetry, zeros, scaling laws, batch broadcasting) and XLA compilation."""
import numpy as np
import pytest
import tensorflow as tf

from tfstyle import costs
from tolerances import assert_within_rounding, gamma

SHAPES = [(2, 5, 7, 3), (1, 4, 4, 8)]


# --- reference implementation: float64 NumPy, written from the formulas, not from costs.py ---

def np_gram(a):
    batch, height, width, channels = a.shape
    f = a.astype(np.float64).reshape(batch, height * width, channels)
    return np.einsum("bpi,bpj->bij", f, f)


def np_content(a_c, a_g):
    _, height, width, channels = a_g.shape
    diff = a_c.astype(np.float64) - a_g.astype(np.float64)
    return (diff ** 2).sum(axis=(1, 2, 3)) / (4 * height * width * channels)


def np_layer_style(gram_s, a_g):
    _, height, width, channels = a_g.shape
    diff = gram_s.astype(np.float64) - np_gram(a_g)
    return (diff ** 2).sum(axis=(1, 2)) / (2 * height * width * channels) ** 2


def activations(shape, seed):
    # Non-negative like ReLU outputs, with an offset so that costs are far from zero.
    return np.random.default_rng(seed).uniform(0.0, 3.0, shape).astype(np.float32)


def np_layer_style_magnitude(gram_s, a_g):
    """Σ(|G_S| + |G_G|)² / (2·n_H·n_W·n_C)²: what a style cost's rounding errors scale with.
    Both Grams carry γ_(n_H·n_W) errors relative to them, which the difference and its square
    carry on, so the cost's error is within 2·γ of this (tolerances.py), not of the cost itself:
    a small cost can be a difference of large Grams."""
    _, height, width, channels = a_g.shape
    total = np.abs(gram_s.astype(np.float64)) + np_gram(np.abs(a_g))
    return (total ** 2).sum(axis=(1, 2)) / (2 * height * width * channels) ** 2


def positions(shape):
    return shape[1] * shape[2]


def elements(shape):
    return shape[1] * shape[2] * shape[3]


def check_gram(gram, a):
    """A Gram entry is a dot product over the positions: γ_(n_H·n_W) of |F|ᵀ|F|."""
    assert_within_rounding(gram, np_gram(a), terms=positions(a.shape), magnitude=np_gram(np.abs(a)))


def check_content(cost, a_c, a_g, computations=1, scale=1.0):
    """A sum of squared differences: a subtraction, a square, the sum, the division."""
    assert_within_rounding(cost, scale * np_content(a_c, a_g), terms=elements(a_g.shape) + 3,
                           computations=computations)


def check_layer_style(cost, gram_s, a_g, computations=1, scale=1.0, expected=None):
    """Both Grams (n_H·n_W terms), then n_C² squared differences summed, and the division;
    float32 Grams on the expected side too, hence 2 computations."""
    expected = scale * np_layer_style(gram_s, a_g) if expected is None else expected
    assert_within_rounding(cost, expected,
                           terms=positions(a_g.shape) + a_g.shape[3] ** 2 + 4,
                           magnitude=scale * np_layer_style_magnitude(gram_s, a_g),
                           computations=max(2, computations))


# --- agreement with the reference ---

@pytest.mark.parametrize("shape", SHAPES)
def test_gram_matrix_matches_numpy(shape):
    a = activations(shape, 0)
    gram = costs.gram_matrix(a)
    assert gram.shape == (shape[0], shape[3], shape[3])
    assert gram.dtype == tf.float32
    check_gram(gram, a)


@pytest.mark.parametrize("shape", SHAPES)
def test_content_cost_matches_numpy(shape):
    a_c, a_g = activations(shape, 1), activations(shape, 2)
    cost = costs.content_cost(a_c, a_g)
    assert cost.shape == (shape[0],)
    check_content(cost, a_c, a_g)


@pytest.mark.parametrize("shape", SHAPES)
def test_layer_style_cost_matches_numpy(shape):
    a_s, a_g = activations(shape, 3), activations(shape, 4)
    cost = costs.layer_style_cost(costs.gram_matrix(a_s), a_g)
    assert cost.shape == (shape[0],)
    check_layer_style(cost, np_gram(a_s), a_g)


def test_style_gram_from_a_different_sized_style_image():
    # The style image need not match the generated image's size: only n_C must agree, and the
    # normalisation uses the generated activations' n_H, n_W.
    a_s, a_g = activations((1, 9, 6, 3), 5), activations((2, 5, 7, 3), 6)
    check_layer_style(costs.layer_style_cost(costs.gram_matrix(a_s), a_g), np_gram(a_s), a_g)


def test_weighted_style_costs_and_style_cost():
    layers = [(2, 5, 7, 3), (2, 3, 4, 6), (2, 2, 2, 8)]
    style = [activations((1,) + shape[1:], 10 + i) for i, shape in enumerate(layers)]
    generated = [activations(shape, 20 + i) for i, shape in enumerate(layers)]
    weights = [0.5, 0.3, 0.2]
    grams = [costs.gram_matrix(a) for a in style]

    terms = costs.weighted_style_costs(grams, generated, weights)
    assert len(terms) == len(layers)
    for term, gram_s, a_g, weight in zip(terms, style, generated, weights):
        assert term.shape == (2,)
        check_layer_style(term, np_gram(gram_s), a_g, scale=weight)
    total = costs.style_cost(grams, generated, weights)
    assert total.shape == (2,)
    # Three non-negative terms added: two roundings.
    assert_within_rounding(total, np.sum([np.asarray(t, np.float64) for t in terms], axis=0),
                           terms=len(terms) - 1)


def test_weighted_style_costs_need_matching_lists():
    a = activations((1, 4, 4, 3), 0)
    with pytest.raises(ValueError, match="one weight per layer"):
        costs.weighted_style_costs([costs.gram_matrix(a)], [a], [0.5, 0.5])
    with pytest.raises(ValueError, match="at least one"):
        costs.style_cost([], [], [])


def test_total_cost():
    content = tf.constant([1.5, 2.0])
    style = tf.constant([0.25, 4.0])
    # These products and sums of small binary fractions are exact in float32.
    np.testing.assert_array_equal(costs.total_cost(content, style, 10, 40),
                                  [10 * 1.5 + 40 * 0.25, 10 * 2.0 + 40 * 4.0])
    # 0.3 and 0.5·8 are not: the inputs' rounding, two products and a sum.
    assert_within_rounding(costs.total_cost(0.3, 0.5, 3, 8), 0.3 * 3 + 0.5 * 8, terms=4)


# --- properties of the formulas ---

@pytest.mark.parametrize("shape", SHAPES)
def test_gram_matrix_is_symmetric_positive_semidefinite(shape):
    a = activations(shape, 7)
    gram = np.asarray(costs.gram_matrix(a), np.float64)
    # G[i, j] and G[j, i] are the same dot product, perhaps added in two orders.
    assert_within_rounding(gram, np.swapaxes(gram, 1, 2), terms=positions(shape),
                           magnitude=np_gram(np.abs(a)), computations=2)
    for g, magnitude in zip(gram, np_gram(np.abs(a))):
        # The exact Gram is PSD; rounding perturbs it by E with |E| <= γ·|F|ᵀ|F|, which moves
        # an eigenvalue by at most ||E||_2 <= ||E||_F.
        eigenvalues = np.linalg.eigvalsh(g)
        assert eigenvalues.min() >= -gamma(positions(shape)) * np.linalg.norm(magnitude) * 1.01


@pytest.mark.parametrize("shape", SHAPES)
def test_identical_inputs_cost_nothing(shape):
    a = activations(shape, 8)
    np.testing.assert_array_equal(costs.content_cost(a, a), np.zeros(shape[0]))
    np.testing.assert_array_equal(costs.layer_style_cost(costs.gram_matrix(a), a),
                                  np.zeros(shape[0]))


@pytest.mark.parametrize("shape", SHAPES)
def test_scaling_activations_by_k(shape):
    # Content cost is quadratic in the activations; the Gram is quadratic, so the style cost
    # (a squared Gram difference) is quartic.
    # Both sides are float32 computations, and k·a adds one rounding per activation.
    k = 3.0
    a_1, a_2 = activations(shape, 9), activations(shape, 10)
    check_content(costs.content_cost(k * a_1, k * a_2), a_1, a_2, computations=2, scale=k ** 2)
    check_layer_style(costs.layer_style_cost(costs.gram_matrix(k * a_1), k * a_2), np_gram(a_1),
                      a_2, scale=k ** 4)


def test_one_target_broadcasts_over_the_generated_batch():
    target = activations((1, 5, 7, 3), 11)
    generated = activations((3, 5, 7, 3), 12)
    content = costs.content_cost(target, generated)
    style = costs.layer_style_cost(costs.gram_matrix(target), generated)
    assert content.shape == style.shape == (3,)
    for i in range(3):
        one = generated[i:i + 1]
        check_content(content[i], target, one, computations=2)
        check_content(costs.content_cost(target, one)[0], target, one)
        check_layer_style(style[i], np_gram(target), one)
        check_layer_style(costs.layer_style_cost(costs.gram_matrix(target), one)[0],
                          np_gram(target), one)


def test_mixed_precision_activations_are_costed_in_float32():
    a_16, b_16 = (activations((1, 4, 4, 8), s).astype(np.float16) for s in (13, 14))
    gram = costs.gram_matrix(tf.constant(a_16))
    content = costs.content_cost(tf.constant(a_16), tf.constant(b_16))
    style = costs.layer_style_cost(gram, tf.constant(b_16))
    assert gram.dtype == content.dtype == style.dtype == tf.float32
    # float16 values are exact in float32: the costs round as float32 costs do.
    check_content(content, a_16, b_16)
    check_layer_style(style, np_gram(a_16), b_16)


# --- graphs and XLA with shapes unknown until run time ---

def test_costs_compile_with_xla_for_dynamic_shapes():
    channels = 3
    features = tf.TensorSpec([None, None, None, channels], tf.float32)
    gram_spec = tf.TensorSpec([None, channels, channels], tf.float32)
    weight = tf.TensorSpec([], tf.float32)

    gram = tf.function(costs.gram_matrix, jit_compile=True, input_signature=[features])
    content = tf.function(costs.content_cost, jit_compile=True,
                          input_signature=[features, features])
    layer_style = tf.function(costs.layer_style_cost, jit_compile=True,
                              input_signature=[gram_spec, features])

    @tf.function(jit_compile=True,
                 input_signature=[gram_spec, gram_spec, features, features, features, features,
                                  weight, weight, weight, weight])
    def total(gram_1, gram_2, a_c, a_g, g_1, g_2, w_1, w_2, alpha, beta):
        style = costs.style_cost([gram_1, gram_2], [g_1, g_2], [w_1, w_2])
        return costs.total_cost(costs.content_cost(a_c, a_g), style, alpha, beta)

    # Two different sizes through the same traced functions: nothing may be baked in. Each
    # compiled result is checked against the float64 formula, as the eager ones are above.
    for shape in [(2, 5, 7, channels), (1, 6, 3, channels)]:
        a_s, a_c, a_g, b_g = (activations(shape, s) for s in (15, 16, 17, 18))
        gram_s = costs.gram_matrix(a_s)
        check_gram(gram(a_s), a_s)
        check_content(content(a_c, a_g), a_c, a_g)
        check_layer_style(layer_style(gram_s, a_g), np_gram(a_s), a_g)
        expected = (10.0 * np_content(a_c, a_g) + 40.0 * (0.7 * np_layer_style(np_gram(a_s), a_g)
                                                          + 0.3 * np_layer_style(np_gram(a_s), b_g)))
        magnitude = (10.0 * np_content(a_c, a_g)
                     + 40.0 * (0.7 * np_layer_style_magnitude(np_gram(a_s), a_g)
                               + 0.3 * np_layer_style_magnitude(np_gram(a_s), b_g)))
        assert_within_rounding(total(gram_s, gram_s, a_c, a_g, a_g, b_g, 0.7, 0.3, 10.0, 40.0),
                               expected, terms=positions(shape) + elements(shape) + 10,
                               magnitude=magnitude, computations=2)


# --- total variation ---

def np_total_variation(x):
    x = x.astype(np.float64)
    _, height, width, _ = x.shape
    vertical = ((x[:, 1:] - x[:, :-1]) ** 2).sum(axis=(1, 2, 3))
    horizontal = ((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum(axis=(1, 2, 3))
    return (vertical + horizontal) / (height * width)


@pytest.mark.parametrize("shape", SHAPES)
def test_total_variation_matches_numpy(shape):
    images = np.random.default_rng(19).uniform(0, 1, shape).astype(np.float32)
    cost = costs.total_variation_cost(images)
    assert cost.shape == (shape[0],)
    # Differences, squares, a sum over the image's values, the division.
    assert_within_rounding(cost, np_total_variation(images), terms=2 * elements(shape) + 3)


def test_total_variation_of_flat_and_striped_images():
    flat = np.full((1, 6, 5, 3), 0.7, np.float32)
    np.testing.assert_array_equal(costs.total_variation_cost(flat), [0.0])
    stripes = np.zeros((1, 4, 4, 3), np.float32)
    stripes[:, :, 1::2] = 1.0  # every horizontal neighbour differs by 1, vertical ones by 0
    np.testing.assert_array_equal(costs.total_variation_cost(stripes), [4 * 3 * 3 / 16])
