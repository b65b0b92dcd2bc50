"""Optical flow between video frames, warping along it, and where it cannot be trusted.

Ruder et al. 2016 ("Artistic style transfer for videos") start each frame from the previous
stylised frame warped along the flow, and keep the pixels the flow can follow close to it.
Conventions: a flow [H, W, 2] from frame a to frame b gives, for each pixel x of a, the
displacement (dx, dy) to where it is in b, so that a(x) ≈ b(x + flow(x)).
"""
from __future__ import annotations

import numpy as np

from tfstyle.errors import UserError

try:
    import cv2
except ImportError:  # video is an extra: pip install tfstyle[video]
    cv2 = None

# Ruder et al.'s thresholds (section 3.2): the forward-backward check,
# |w̃ + ŵ|² > CONSISTENCY·(|w̃|² + |ŵ|²) + CONSISTENCY_SLACK, and motion boundaries,
# |∇u|² + |∇v|² > BOUNDARY·|w|² + BOUNDARY_SLACK; flows in pixels.
CONSISTENCY = 0.01
CONSISTENCY_SLACK = 0.5
BOUNDARY = 0.01
BOUNDARY_SLACK = 0.002


def _opencv():
    if cv2 is None:
        raise UserError("Video needs OpenCV: pip install 'tfstyle[video]' (or "
                        "opencv-python-headless).")
    return cv2


def _grey(frame: np.ndarray) -> np.ndarray:
    """A frame [H, W, 3] (uint8, or float in [0, 1]) as uint8 luminance, which DIS works on."""
    if frame.dtype != np.uint8:
        frame = np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
    return _opencv().cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def optical_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The dense flow [H, W, 2] (float32, pixels) from frame `first` to frame `second`
    (Kroeger et al.'s DIS flow, OpenCV's fastest dense method that follows large motion)."""
    method = _opencv().DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return method.calc(_grey(first), _grey(second), None).astype(np.float32)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image(x + flow(x)) for every pixel x, bilinear, edges repeated: `image` (a frame b,
    [H, W, C]) brought to frame a's pixels by the flow from a to b."""
    height, width = flow.shape[:2]
    columns, rows = np.meshgrid(np.arange(width, dtype=np.float32),
                                np.arange(height, dtype=np.float32))
    return _opencv().remap(np.ascontiguousarray(image), columns + flow[..., 0],
                           rows + flow[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)


def consistency_weights(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s per-pixel weights c [H, W] (float32, 0 or 1) of frame b: 1 where the
    flow back to frame a (`backward`, b → a) can be trusted, 0 where b shows what a did not
    (disocclusions: following `backward` and then `forward`, a → b, does not come back,

        |ŵ + w̃|² > 0.01·(|ŵ|² + |w̃|²) + 0.5,  ŵ = backward(x), w̃ = forward(x + ŵ)

    ), at motion boundaries (|∇ŵ_x|² + |∇ŵ_y|² > 0.01·|ŵ|² + 0.002) and where the flow
    leaves the frame."""
    height, width = backward.shape[:2]
    there = warp(forward, backward)  # w̃: the forward flow where each pixel of b came from
    round_trip = np.sum(np.square(there + backward), axis=-1)
    occluded = round_trip > CONSISTENCY * (np.sum(np.square(there), axis=-1)
                                           + np.sum(np.square(backward), axis=-1)) \
        + CONSISTENCY_SLACK
    gradient = sum(np.square(np.gradient(backward[..., channel], axis=axis))
                   for channel in range(2) for axis in range(2))
    boundary = gradient > BOUNDARY * np.sum(np.square(backward), axis=-1) + BOUNDARY_SLACK
    columns, rows = np.meshgrid(np.arange(width), np.arange(height))
    x, y = columns + backward[..., 0], rows + backward[..., 1]
    outside = (x < 0) | (x > width - 1) | (y < 0) | (y > height - 1)
    return (~(occluded | boundary | outside)).astype(np.float32)
