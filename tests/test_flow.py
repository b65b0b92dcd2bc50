"""Optical flow, warping, Ruder et al.'s consistency weights and the temporal cost."""
import numpy as np
import pytest

from tfstyle import images
from tfstyle.costs import temporal_cost
from tfstyle.flow import consistency_weights, optical_flow, warp


@pytest.fixture(scope="module")
def photo():
    return np.asarray(images.load_image("sample:tubingen").resize((128, 96)), np.float32) / 255


def constant_flow(height, width, dx, dy):
    return np.broadcast_to(np.float32([dx, dy]), (height, width, 2)).copy()


def test_a_shifted_image_warps_back_exactly(photo):
    # b is a moved 3 right and 2 down: a(x) = b(x + (3, 2)), so warping b along (3, 2) gives a.
    moved = np.roll(photo, (2, 3), axis=(0, 1))
    back = warp(moved, constant_flow(96, 128, 3, 2))
    np.testing.assert_array_equal(back[:-2, :-3], photo[:-2, :-3])
    # Half a pixel is the mean of the two neighbours.
    half = warp(photo, constant_flow(96, 128, 0.5, 0))
    np.testing.assert_allclose(half[:, :-1], (photo[:, :-1] + photo[:, 1:]) / 2, atol=1e-6)


def test_the_flow_of_a_shifted_photo_is_the_shift(photo):
    moved = np.roll(photo, (1, 3), axis=(0, 1))
    forward, backward = optical_flow(photo, moved), optical_flow(moved, photo)
    inside = (slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(np.median(forward[inside], axis=(0, 1)), [3, 1], atol=0.1)
    np.testing.assert_allclose(np.median(backward[inside], axis=(0, 1)), [-3, -1], atol=0.1)
    # uint8 frames give the same flow as [0, 1] floats.
    np.testing.assert_allclose(optical_flow((photo * 255).round().astype(np.uint8),
                                            (moved * 255).round().astype(np.uint8)), forward,
                               atol=1e-4)


def test_consistent_flows_are_trusted_except_where_they_leave_the_frame():
    forward, backward = constant_flow(20, 30, 2, 0), constant_flow(20, 30, -2, 0)
    weights = consistency_weights(forward, backward)
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights[:, :2], 0)  # came from left of frame a
    np.testing.assert_array_equal(weights[:, 2:], 1)


def test_a_disocclusion_and_a_motion_boundary_are_not_trusted():
    # An object moves 4 px right over a still background: in frame b, the strip it uncovered
    # (columns 10..13) maps back onto the object in a, whose forward flow does not return.
    forward = np.zeros((20, 40, 2), np.float32)
    forward[:, 10:20, 0] = 4
    backward = np.zeros((20, 40, 2), np.float32)
    backward[:, 14:24, 0] = -4
    weights = consistency_weights(forward, backward)
    np.testing.assert_array_equal(weights[:, :9], 1)
    np.testing.assert_array_equal(weights[:, 26:], 1)
    np.testing.assert_array_equal(weights[:, 10:14], 0)  # uncovered
    np.testing.assert_array_equal(weights[:, 13:15], 0)  # the object's edge: a motion boundary
    assert weights[:, 16:22].min() == 1  # the object itself followed


def test_the_temporal_cost_weighs_squared_differences_where_trusted():
    image = np.zeros((1, 2, 2, 3), np.float32)
    warped = np.full((1, 2, 2, 3), 0.5, np.float32)
    warped[0, 1, 1] = 1.0
    weights = np.float32([[[1, 0], [1, 1]]])
    # (0.25·3 + 0·3 + 0.25·3 + 1·3) / (2·2·3)
    assert float(temporal_cost(image, warped, weights)[0]) == pytest.approx(4.5 / 12)
    assert float(temporal_cost(warped, warped, weights)[0]) == 0
