"""tfstyle.costs against an independent float64 NumPy implementation, plus the properties the
formulas must have (symmetry, zeros, scaling laws, batch broadcasting) and XLA compilation."""
import numpy as np
import pytest
import tensorflow as tf

from tfstyle import costs

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


def close(actual, expected, rtol=1e-5):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=0)


# --- agreement with the reference ---

@pytest.mark.parametrize("shape", SHAPES)
def test_gram_matrix_matches_numpy(shape):
    a = activations(shape, 0)
    gram = costs.gram_matrix(a)
    assert gram.shape == (shape[0], shape[3], shape[3])
    assert gram.dtype == tf.float32
    close(gram, np_gram(a))


@pytest.mark.parametrize("shape", SHAPES)
def test_content_cost_matches_numpy(shape):
    a_c, a_g = activations(shape, 1), activations(shape, 2)
    cost = costs.content_cost(a_c, a_g)
    assert cost.shape == (shape[0],)
    close(cost, np_content(a_c, a_g))


@pytest.mark.parametrize("shape", SHAPES)
def test_layer_style_cost_matches_numpy(shape):
    a_s, a_g = activations(shape, 3), activations(shape, 4)
    cost = costs.layer_style_cost(costs.gram_matrix(a_s), a_g)
    assert cost.shape == (shape[0],)
    close(cost, np_layer_style(np_gram(a_s), a_g))


def test_style_gram_from_a_different_sized_style_image():
    # The style image need not match the generated image's size: only n_C must agree, and the
    # normalisation uses the generated activations' n_H, n_W.
    a_s, a_g = activations((1, 9, 6, 3), 5), activations((2, 5, 7, 3), 6)
    close(costs.layer_style_cost(costs.gram_matrix(a_s), a_g), np_layer_style(np_gram(a_s), a_g))


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
        close(term, weight * np_layer_style(np_gram(gram_s), a_g))
    total = costs.style_cost(grams, generated, weights)
    assert total.shape == (2,)
    close(total, np.sum([np.asarray(t, np.float64) for t in terms], axis=0))


def test_weighted_style_costs_need_matching_lists():
    a = activations((1, 4, 4, 3), 0)
    with pytest.raises(ValueError, match="one weight per layer"):
        costs.weighted_style_costs([costs.gram_matrix(a)], [a], [0.5, 0.5])
    with pytest.raises(ValueError, match="at least one"):
        costs.style_cost([], [], [])


def test_total_cost():
    content = tf.constant([1.5, 2.0])
    style = tf.constant([0.25, 4.0])
    close(costs.total_cost(content, style, 10, 40), [10 * 1.5 + 40 * 0.25, 10 * 2.0 + 40 * 4.0])
    close(costs.total_cost(0.3, 0.5, 3, 8), 0.3 * 3 + 0.5 * 8)


# --- properties of the formulas ---

@pytest.mark.parametrize("shape", SHAPES)
def test_gram_matrix_is_symmetric_positive_semidefinite(shape):
    gram = np.asarray(costs.gram_matrix(activations(shape, 7)), np.float64)
    np.testing.assert_allclose(gram, np.swapaxes(gram, 1, 2), rtol=1e-6)
    for g in gram:
        eigenvalues = np.linalg.eigvalsh(g)
        assert eigenvalues.min() >= -1e-5 * eigenvalues.max()


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
    k = 3.0
    a_1, a_2 = activations(shape, 9), activations(shape, 10)
    close(costs.content_cost(k * a_1, k * a_2), k ** 2 * np.asarray(costs.content_cost(a_1, a_2)))
    close(costs.layer_style_cost(costs.gram_matrix(k * a_1), k * a_2),
          k ** 4 * np.asarray(costs.layer_style_cost(costs.gram_matrix(a_1), a_2)))


def test_one_target_broadcasts_over_the_generated_batch():
    target = activations((1, 5, 7, 3), 11)
    generated = activations((3, 5, 7, 3), 12)
    content = costs.content_cost(target, generated)
    style = costs.layer_style_cost(costs.gram_matrix(target), generated)
    assert content.shape == style.shape == (3,)
    for i in range(3):
        one = generated[i:i + 1]
        close(content[i], costs.content_cost(target, one)[0])
        close(style[i], costs.layer_style_cost(costs.gram_matrix(target), one)[0])


def test_mixed_precision_activations_are_costed_in_float32():
    a_16, b_16 = (activations((1, 4, 4, 8), s).astype(np.float16) for s in (13, 14))
    gram = costs.gram_matrix(tf.constant(a_16))
    content = costs.content_cost(tf.constant(a_16), tf.constant(b_16))
    style = costs.layer_style_cost(gram, tf.constant(b_16))
    assert gram.dtype == content.dtype == style.dtype == tf.float32
    close(content, np_content(a_16, b_16))
    close(style, np_layer_style(np_gram(a_16), b_16))


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

    # Two different sizes through the same traced functions: nothing may be baked in.
    for shape in [(2, 5, 7, channels), (1, 6, 3, channels)]:
        a_s, a_c, a_g, b_g = (activations(shape, s) for s in (15, 16, 17, 18))
        gram_s = costs.gram_matrix(a_s)
        close(gram(a_s), np.asarray(gram_s))
        close(content(a_c, a_g), np.asarray(costs.content_cost(a_c, a_g)))
        close(layer_style(gram_s, a_g), np.asarray(costs.layer_style_cost(gram_s, a_g)))
        expected = costs.total_cost(
            costs.content_cost(a_c, a_g),
            costs.style_cost([gram_s, gram_s], [a_g, b_g], [0.7, 0.3]), 10.0, 40.0)
        close(total(gram_s, gram_s, a_c, a_g, a_g, b_g, 0.7, 0.3, 10.0, 40.0),
              np.asarray(expected))
        # ...and the compiled numbers agree with the float64 reference, not just with eager.
        close(content(a_c, a_g), np_content(a_c, a_g))
