"""tfstyle.coursera: the course notebook's API, checked against the course's own expected values.

Where the numbers come from: the assignment "Art Generation with Neural Style Transfer"
(Deep Learning Specialization, course 4 week 4, TF2 version). Its public_tests.py builds
inputs with tf.random.set_seed(1) and tf.random.normal(..., mean=1, stddev=4) and expects
    compute_content_cost   7.0568767  (and 0 for identical inputs)
    gram_matrix            first row [63.193256, -26.729713, -7.732155]
    compute_layer_style_cost  14.01649  (0 for identical inputs, > 0 otherwise)
    total_cost             34 for (0.2, 0.8); 4.9 for (0.3, 0.5, 3, 8)
and the notebook's "Expected Output" for total_cost after np.random.seed(1) is 32.9832.
The tests below restate those checks in this project's words.

The content and total cost values reproduce exactly on the CPU. The gram_matrix and
compute_layer_style_cost values were evidently produced on a GPU with TensorFloat-32 matmuls
(inputs rounded to a 10-bit mantissa): rounding the very same inputs that way reproduces the
course's numbers to its own tolerance (np.isclose, rtol=1e-5), while our float32 results agree
with an independent float64 NumPy computation. Both facts are asserted below.
"""
import inspect

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.ops import EagerTensor  # what the course's tests check

from tfstyle import costs, coursera
from tfstyle.coursera import (STYLE_LAYERS, compute_content_cost, compute_layer_style_cost,
                              compute_style_cost, content_layer, gram_matrix, total_cost)
from tolerances import assert_within_rounding

COURSE_GRAM_ROW_0 = [63.193256, -26.729713, -7.732155]
COURSE_LAYER_STYLE_COST = 14.01649


def tensorfloat32(x) -> np.ndarray:
    """Round float32 values to TF32 (10-bit mantissa, round to nearest), as Ampere GPUs do
    for matmul inputs by default."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    return ((bits + 0x1000) & 0xFFFFE000).astype(np.uint32).view(np.float32)


def course_content_inputs():
    tf.random.set_seed(1)
    a_C = tf.random.normal([1, 1, 4, 4, 3], mean=1, stddev=4)
    a_G = tf.random.normal([1, 1, 4, 4, 3], mean=1, stddev=4)
    return a_C, a_G


def course_gram_input():
    tf.random.set_seed(1)
    return tf.random.normal([3, 2 * 1], mean=1, stddev=4)


def course_style_inputs():
    tf.random.set_seed(1)
    a_S = tf.random.normal([1, 4, 4, 3], mean=1, stddev=4)
    a_G = tf.random.normal([1, 4, 4, 3], mean=1, stddev=4)
    return a_S, a_G


def np_layer_style(a_s, a_g, absolute=False):
    """The layer's style cost in float64; with absolute=True, Σ(|F_S|ᵀ|F_S| + |F_G|ᵀ|F_G|)² over
    the same denominator, the magnitude its float32 rounding errors scale with."""
    _, height, width, channels = a_g.shape
    f_s = np.asarray(a_s, np.float64).reshape(-1, channels)
    f_g = np.asarray(a_g, np.float64).reshape(-1, channels)
    if absolute:
        f_s, f_g = np.abs(f_s), np.abs(f_g)
    difference = f_s.T @ f_s + (1 if absolute else -1) * (f_g.T @ f_g)
    return (difference ** 2).sum() / (4 * channels ** 2 * (height * width) ** 2)


def check_layer_style(cost, a_s, a_g, weight=1.0):
    """Two Grams over n_H·n_W positions (both float32 here), n_C² squares summed, a division."""
    _, height, width, channels = a_g.shape
    assert_within_rounding(cost, weight * np_layer_style(a_s, a_g),
                           terms=height * width + channels ** 2 + 4, computations=2,
                           magnitude=weight * np_layer_style(a_s, a_g, absolute=True))


# --- the course's public tests, restated ---

def test_content_cost_course_values():
    a_C, a_G = course_content_inputs()
    # The course passes 5-D tensors: "output lists" whose last element is (1, 4, 4, 3).
    J_content = compute_content_cost(a_C, a_G)
    assert type(J_content) == EagerTensor
    assert J_content.shape == ()
    assert np.isclose(compute_content_cost(a_C, a_C), 0.0)
    assert np.isclose(J_content, 7.0568767)


def test_gram_matrix_shape_type_and_numpy_agreement():
    A = course_gram_input()
    GA = gram_matrix(A)
    assert type(GA) == EagerTensor
    assert GA.shape == (3, 3)
    a = A.numpy().astype(np.float64)
    assert_within_rounding(GA, a @ a.T, terms=a.shape[1], magnitude=np.abs(a) @ np.abs(a).T)


def test_gram_matrix_course_value_with_tf32_inputs():
    GA = gram_matrix(tensorfloat32(course_gram_input()))
    assert np.allclose(GA[0, :], COURSE_GRAM_ROW_0)


def test_layer_style_cost_zero_positive_and_numpy_agreement():
    a_S, a_G = course_style_inputs()
    J_GG = compute_layer_style_cost(a_G, a_G)
    J_SG = compute_layer_style_cost(a_S, a_G)
    assert type(J_GG) == EagerTensor and type(J_SG) == EagerTensor
    assert J_SG.shape == ()
    assert np.isclose(J_GG, 0.0)
    assert J_SG > 0
    check_layer_style(J_SG, a_S, a_G)


def test_layer_style_cost_course_value_with_tf32_inputs():
    a_S, a_G = (tensorfloat32(a) for a in course_style_inputs())
    assert np.isclose(compute_layer_style_cost(a_S, a_G), COURSE_LAYER_STYLE_COST)


def test_total_cost_course_values():
    J = total_cost(0.2, 0.8)
    assert type(J) == EagerTensor  # i.e. still a tf.function returning a tensor
    assert J == 34
    assert np.isclose(total_cost(0.3, 0.5, 3, 8), 4.9)
    np.random.seed(1)
    J = total_cost(np.random.uniform(0, 1), np.random.uniform(0, 1))
    assert np.isclose(J, 32.9832, rtol=0, atol=1e-4)  # printed to 4 decimals in the notebook


def test_total_cost_is_a_tf_function():
    assert hasattr(total_cost, "get_concrete_function")


# --- compute_style_cost (given to learners, so the course has no expected number) ---

def vgg_like_outputs(seed, batch=1):
    # Five style layers and the content layer last, as the notebook's model returns them.
    rng = np.random.default_rng(seed)
    shapes = [(8, 8, 3), (4, 4, 5), (4, 4, 6), (2, 2, 7), (2, 2, 8), (2, 2, 8)]
    return [tf.constant(rng.uniform(0, 2, (batch,) + s), tf.float32) for s in shapes]


def test_style_cost_weights_every_style_layer_but_not_the_content_layer():
    style, generated = vgg_like_outputs(1), vgg_like_outputs(2)
    J_style = compute_style_cost(style, generated)
    assert type(J_style) == EagerTensor
    terms = [weight * np_layer_style(s, g)
             for (_, weight), s, g in zip(STYLE_LAYERS, style[:-1], generated[:-1])]
    magnitudes = [weight * np_layer_style(s, g, absolute=True)
                  for (_, weight), s, g in zip(STYLE_LAYERS, style[:-1], generated[:-1])]
    # The largest layer is 8×8 positions; its 3² squares, the weight and the sum of 5 layers.
    assert_within_rounding(J_style, sum(terms), terms=64 + 9 + 4 + 5, computations=2,
                           magnitude=sum(magnitudes))
    # The content layer (last output) must not count: the same sums of the same values.
    changed = generated[:-1] + [generated[-1] + 100.0]
    np.testing.assert_array_equal(compute_style_cost(style, changed), J_style)


def test_style_cost_uses_the_given_layer_weights():
    style, generated = vgg_like_outputs(3), vgg_like_outputs(4)
    weights = [('a', 1.0), ('b', 0.0), ('c', 0.0), ('d', 0.0), ('e', 0.5)]
    expected = np_layer_style(style[0], generated[0]) + 0.5 * np_layer_style(style[4],
                                                                             generated[4])
    magnitude = (np_layer_style(style[0], generated[0], absolute=True)
                 + 0.5 * np_layer_style(style[4], generated[4], absolute=True))
    assert_within_rounding(compute_style_cost(style, generated, weights), expected,
                           terms=64 + 9 + 4 + 5, computations=2, magnitude=magnitude)
    with pytest.raises(ValueError):
        compute_style_cost(style, generated, weights[:3])


def test_course_layer_choices():
    assert STYLE_LAYERS == [('block1_conv1', 0.2), ('block2_conv1', 0.2), ('block3_conv1', 0.2),
                            ('block4_conv1', 0.2), ('block5_conv1', 0.2)]
    assert content_layer == [('block5_conv4', 1)]
    assert coursera.CONTENT_LAYER is content_layer
    assert set(coursera.__all__) >= {"compute_content_cost", "gram_matrix",
                                     "compute_layer_style_cost", "compute_style_cost",
                                     "total_cost", "STYLE_LAYERS", "content_layer"}


def test_works_inside_a_tf_function_like_the_notebooks_train_step():
    style, generated, content = vgg_like_outputs(5), vgg_like_outputs(6), vgg_like_outputs(7)

    @tf.function
    def cost(content, style, generated):
        return total_cost(compute_content_cost(content, generated),
                          compute_style_cost(style, generated), alpha=10, beta=40)

    eager = total_cost(compute_content_cost(content, generated),
                       compute_style_cost(style, generated))
    # The same kernels in a graph as eagerly: the same bits.
    np.testing.assert_array_equal(cost(content, style, generated), eager)


# --- one implementation: the course API gives tfstyle.costs' numbers ---

def test_same_numbers_as_costs_module():
    # One implementation: the course's functions run costs' kernels on the same values, so
    # they give the same bits.
    style, generated, content = vgg_like_outputs(8), vgg_like_outputs(9), vgg_like_outputs(10)
    np.testing.assert_array_equal(compute_content_cost(content, generated),
                                  costs.content_cost(content[-1], generated[-1])[0])
    for a_s, a_g in zip(style[:-1], generated[:-1]):
        np.testing.assert_array_equal(
            compute_layer_style_cost(a_s, a_g),
            costs.layer_style_cost(costs.gram_matrix(a_s), a_g)[0])
        # The course's Gram of the (n_C, n_H·n_W) unrolling is costs' Gram of the activations.
        unrolled = tf.transpose(tf.reshape(a_s, [-1, a_s.shape[-1]]))
        np.testing.assert_array_equal(gram_matrix(unrolled), costs.gram_matrix(a_s)[0])
    weights = [weight for _, weight in STYLE_LAYERS]
    np.testing.assert_array_equal(
        compute_style_cost(style, generated),
        costs.style_cost([costs.gram_matrix(a) for a in style[:-1]], generated[:-1], weights)[0])
    np.testing.assert_array_equal(total_cost(1.25, 0.5, 3, 8), costs.total_cost(1.25, 0.5, 3, 8))


def test_no_second_copy_of_the_maths():
    source = inspect.getsource(coursera)
    assert "matmul" not in source and "tf.square" not in source
