"""How far apart two floating-point computations of the same quantity may honestly be.

Rounding a real number to a float changes it by at most u relative (the unit roundoff:
2^-24 for float32). A sum or dot product of n terms, added in any order, is off by at most
γ_n = n·u / (1 − n·u) times Σ|terms| (Higham, Accuracy and Stability of Numerical Algorithms,
2nd ed., §3.1). Convolutions, matmuls and reductions are such sums, and TF's kernels, oneDNN's,
Eigen's and XLA's add them in different orders and blockings, which also depend on the CPU's
vector width (AVX2 or AVX-512) and on TF_ENABLE_ONEDNN_OPTS. So:

- same kernels on the same inputs give the same bits: those tests compare exactly;
- one reduction is compared with `assert_within_rounding`, its bound γ_n·Σ|terms| with the
  magnitude Σ|terms| computed by the test (|A|·|B| for a matmul, the value itself for a sum of
  squares), doubled when both sides are float32 computations;
- a quantity computed through a chain of reductions (VGG19's layers, optimisation steps) is
  compared with `chain_tolerance`. The worst case compounds uselessly over 16 layers, so this
  uses the probabilistic bound instead: rounding errors are independent and of mean zero, so a
  sum of n of them stays below λ·√n·u·Σ|terms| except with probability about n·exp(−λ²/2)
  (Higham and Mary, SIAM J. Sci. Comput. 41(5), 2019). λ = 10 makes a chance failure
  impossible in practice (e^-50), and the bound is taken relative to the compared tensor's
  largest magnitude, the scale at which its small elements' errors live.
- Adam is scale-free: its step lr·m̂/(√v̂ + ε) is about ±lr wherever |gradient| >> ε, so an
  element whose gradient is within rounding of zero may step either way in two computations
  of the same run, however close their gradients are. Trajectories computed with different
  kernels are compared with ε from `smooth_adam_epsilon`, which makes the step a smooth
  function of the gradient, so that rounding is not amplified.
- 16-bit activations (mixed precision) are dominated by rounding each layer's inputs and
  weights to 16 bits, once per layer, not by the float32 accumulation: `storage_tolerance`.
"""
from __future__ import annotations

from typing import Iterable, Union

import numpy as np

UNIT_ROUNDOFF = {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "float16": 2.0 ** -11,
                 "bfloat16": 2.0 ** -8}
CONFIDENCE = 10.0  # λ of the probabilistic bound

# Terms summed by each VGG19 convolution (3 × 3 × input channels), in order.
VGG19_CONVS = {
    "block1_conv1": 27, "block1_conv2": 576,
    "block2_conv1": 576, "block2_conv2": 1152,
    "block3_conv1": 1152, "block3_conv2": 2304, "block3_conv3": 2304, "block3_conv4": 2304,
    "block4_conv1": 2304, "block4_conv2": 4608, "block4_conv3": 4608, "block4_conv4": 4608,
    "block5_conv1": 4608, "block5_conv2": 4608, "block5_conv3": 4608, "block5_conv4": 4608,
}

ArrayLike = Union[np.ndarray, float, "tf.Tensor"]  # noqa: F821


def gamma(terms: int, dtype: str = "float32") -> float:
    """γ_n: the worst-case relative error of an n-term sum, relative to Σ|terms|."""
    nu = terms * UNIT_ROUNDOFF[dtype]
    assert nu < 1, f"γ_{terms} is unbounded in {dtype}; use chain_tolerance"
    return nu / (1 - nu)


def assert_within_rounding(actual: ArrayLike, expected: ArrayLike, terms: int,
                           magnitude: ArrayLike = None, computations: int = 1,
                           dtype: str = "float32") -> None:
    """|actual − expected| <= computations · γ_terms · magnitude, elementwise.

    `terms`: the number of roundings on the longest path to a value (the reduction length plus
    the elementwise operations before and after it). `magnitude`: Σ|terms| of that value
    (default |expected|, right for sums of non-negative terms). `computations`: 1 when
    `expected` is exact (float64 from the formula), 2 when both sides are float32 results.
    """
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    magnitude = np.abs(expected) if magnitude is None else np.asarray(magnitude, np.float64)
    bound = computations * gamma(terms, dtype) * magnitude
    # Exact references are float64 computations themselves: allow their rounding too.
    bound = bound + gamma(terms, "float64") * np.abs(expected)
    excess = np.abs(actual - expected) - bound
    assert np.all(excess <= 0), (
        f"{np.count_nonzero(excess > 0)} of {excess.size} values differ by more than "
        f"{computations}·γ_{terms}·magnitude; worst: {np.abs(actual - expected).ravel()[np.argmax(excess)]:.3g} "
        f"against a bound of {np.broadcast_to(bound, excess.shape).ravel()[np.argmax(excess)]:.3g}")


def chain_tolerance(reductions: Iterable[int], dtype: str = "float32") -> float:
    """Relative tolerance, to the compared tensor's largest magnitude, for two computations of
    a chain of reductions of these lengths: 2 · λ·√(Σn)·u (see the module docstring)."""
    return 2 * CONFIDENCE * np.sqrt(sum(reductions)) * UNIT_ROUNDOFF[dtype]


def vgg19_path(*layers: str) -> list[int]:
    """Reduction lengths from the image to the deepest of `layers`: every convolution on the way."""
    order = list(VGG19_CONVS)
    deepest = max(order.index(name) for name in layers)
    return [VGG19_CONVS[name] for name in order[:deepest + 1]]


def vgg19_step_path(*layers: str, pixels: int) -> list[int]:
    """A step's chain: the forward path, the same convolutions again for the input gradient,
    and the sums over the image that make a cost (one per pixel position)."""
    forward = vgg19_path(*layers)
    return [*forward, *forward, pixels]


def assert_chain_close(actual: ArrayLike, expected: ArrayLike, reductions: Iterable[int],
                       dtype: str = "float32") -> None:
    """|actual − expected| <= chain_tolerance(reductions) · max|expected|, elementwise."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    scale = np.max(np.abs(expected))
    tolerance = chain_tolerance(reductions, dtype)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance * scale,
                               err_msg=f"chain tolerance {tolerance:.3g} of the largest "
                                       f"magnitude {scale:.3g}")


def smooth_adam_epsilon(gradient: ArrayLike) -> float:
    """An Adam ε under which two runs whose gradients differ by rounding stay as close as
    `chain_tolerance` says. With ε = max|g| = G, the step u = lr·m̂/(√v̂ + ε) moves by at most
    lr·|δm̂|/G + lr·|δ√v̂|/G·|m̂|/(√v̂ + ε) <= 2·lr·|δg|/G when the gradients differ by δg (m̂
    and √v̂ are averages of the gradients, so they move by at most |δg|): the step's error,
    relative to the image's scale of 1, is at most 2·lr times the gradient's, relative to G,
    which is the chain's own size for lr <= 1/2. With a tiny ε the same δg can flip a step of
    ±lr where g is near 0."""
    return float(np.max(np.abs(np.asarray(gradient, np.float64))))


def storage_tolerance(layers: int, dtype: str) -> float:
    """Relative difference from float32 of a cost computed through `layers` convolutions whose
    inputs and weights are rounded to the 16-bit `dtype` and accumulated in float32.

    Each rounding is at most u relative, so a layer's sums move by at most 2u (inputs, weights)
    of Σ|terms|; over L layers, to first order and without cancellation, 2·L·u; and a cost is
    quadratic in the activations, which doubles it: 4·L·u.
    """
    return 4 * layers * UNIT_ROUNDOFF[dtype]
