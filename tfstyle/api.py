"""The Python API: `stylize` for a picture, `run_config` for a whole configured run."""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from tfstyle import checkpoints, features, images, monitor, schedule, tiles
from tfstyle.checkpoints import Checkpoints
from tfstyle.config import Config, make_config
from tfstyle.errors import UserError
from tfstyle.features import FeatureExtractor
from tfstyle.images import ImageLike
from tfstyle.loop import Result, StageRun, StepCallback, optimize
from tfstyle.objective import Objective
from tfstyle.optimizers import make_optimizer, optimizer_memory_bytes


# A batch shares one size, so every content image is resized to the first one's: refused when
# that would stretch an image by more than this, rather than stretched (the distortion would
# be painted in), cropped (silently losing part of the picture) or padded (the padding would
# be painted too and would shift the style statistics).
ASPECT_TOLERANCE = 0.05


def load_inputs(config: Config, content: Sequence[ImageLike], style: ImageLike
                ) -> tuple[list[Image.Image], Image.Image]:
    """The content images and the style image, loaded and checked, at their own sizes."""
    content_images = [images.load_image(item) for item in content]
    if not config.image_size:  # the course squashes every image to a square anyway
        check_aspect_ratios(content, content_images)
    return content_images, images.load_image(style)


def arrays_at(config: Config, content_images: Sequence[Image.Image], style_image: Image.Image,
              size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The content batch [B, H, W, 3] at `size` (width, height) and the style image
    [1, h, w, 3] with as many pixels (the same square in --image_size mode), RGB in [0, 1]."""
    style_size = (size if config.image_size else images.match_area(style_image.size, size))
    batch = np.stack([images.to_array(image, size) for image in content_images])
    return batch, images.to_array(style_image, style_size)[None]


def prepare_images(config: Config, content: Sequence[ImageLike], style: ImageLike
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Content batch and style image (see arrays_at) at the configured size. Refuses sizes this
    machine's memory cannot hold before allocating anything large."""
    content_images, style_image = load_inputs(config, content, style)
    size = images.fit_size(content_images[0].size, config.max_size, config.image_size)
    check_memory(config, size, len(content_images))
    return arrays_at(config, content_images, style_image, size)


def check_aspect_ratios(sources: Sequence[ImageLike], loaded: Sequence[Image.Image]) -> None:
    """Refuse a content image that resizing to the first one's size would visibly stretch."""
    def aspect(image: Image.Image) -> float:
        return image.width / image.height

    first = aspect(loaded[0])
    for position, (source, image) in enumerate(zip(sources, loaded)):
        if max(aspect(image) / first, first / aspect(image)) > 1 + ASPECT_TOLERANCE:
            name = (f"'{source}'" if isinstance(source, (str, os.PathLike))
                    else f"Content image {position + 1}")
            raise UserError(f"{name} ({image.width}x{image.height}) is not the shape of the first "
                            f"content image ({loaded[0].width}x{loaded[0].height}) and a batch "
                            f"shares one size, which would stretch it by more than "
                            f"{ASPECT_TOLERANCE:.0%}; stylise it in a separate run.")


def memory_needed(config: Config, size: tuple[int, int], batch: int, tile: int = 0) -> int:
    """Bytes one step at `size` (width, height) needs, with the optimiser's state; in tiles of
    `tile` pixels a side, the step of one tile and its margins, beside the whole image's
    buffers (the image, its gradient and the content target, float32)."""
    width, height = size
    layers = (config.content_layer, *config.layer_names)
    state = optimizer_memory_bytes(config, width * height * batch)
    if not tile:
        return features.step_memory_bytes(height, width, layers, batch) + state
    side = tile + 2 * tiles.halo(layers)
    return (features.step_memory_bytes(min(side, height), min(side, width), layers, batch)
            + state + 3 * 4 * 3 * width * height * batch)


SMALLEST_TILE = 64  # below this the margins would be most of each tile's work
# Larger tiles save little time (at this size the margins add a third to the pixels) but raise
# the peak, which TensorFlow's allocator then keeps for the rest of the run.
LARGEST_TILE = 1024
# Of the memory free before the run, what a step may plan to use: the rest is for XLA's
# compilation, the allocator's fragmentation, the previous scale's pool and what the estimate
# leaves out.
USABLE_MEMORY = 0.7


def tile_for(config: Config, size: tuple[int, int], batch: int) -> int:
    """The tile size for a step at `size` (0: the whole image at once): --tile_size, or when it
    is 0 the largest tile that fits in the memory this machine has free when a whole step does
    not. Refuses a size that fits neither way, naming the largest that would."""
    if config.tile_size:
        return config.tile_size if max(size) > config.tile_size else 0
    available = USABLE_MEMORY * features.available_memory_bytes()
    if memory_needed(config, size, batch) <= available:
        return 0
    for tile in range(min(max(size), LARGEST_TILE) // 16 * 16, SMALLEST_TILE - 1, -16):
        if memory_needed(config, size, batch, tile) <= available:
            if config.precision == "mixed_float16":
                raise UserError(f"A {size[0]}x{size[1]} step must run in tiles to fit in memory, "
                                "and --precision=mixed_float16 cannot (its loss scaling would not "
                                "see them); use mixed_bfloat16 or float32.")
            return tile
    largest = largest_fitting_side(config, size, batch, available)
    flag = "--image_size" if config.image_size else "--max_size"
    fits = (f"the largest that fits is {flag}={largest}" if largest >= images.MIN_SIDE
            else "nothing fits")
    what = (f"A {size[0]}x{size[1]} image" if batch == 1
            else f"A batch of {batch} {size[0]}x{size[1]} images")
    raise UserError(f"{what} needs about {memory_needed(config, size, batch, SMALLEST_TILE) / 2**30:.1f} "
                    f"GiB for one step with --optimizer={config.optimizer}, even in tiles, more "
                    f"than the {available / 2**30:.1f} GiB this machine can give it; {fits}.")


def largest_fitting_side(config: Config, size: tuple[int, int], batch: int, available: int) -> int:
    """The longest side at which an image of `size`'s shape fits in `available` bytes, in the
    smallest tiles."""
    low, high = 0, max(size)
    while low < high:  # memory grows with the side
        side = (low + high + 1) // 2
        if memory_needed(config, images.fit_size(size, side), batch, SMALLEST_TILE) <= available:
            low = side
        else:
            high = side - 1
    return low


def check_memory(config: Config, size: tuple[int, int], batch: int) -> None:
    """Refuse a size this machine's memory cannot hold, even in tiles."""
    tile_for(config, size, batch)


def stage_run(config: Config, extractor: FeatureExtractor, content: np.ndarray,
              style: np.ndarray, start: np.ndarray, tile: int = 0) -> StageRun:
    """One scale's objective (in tiles of `tile` pixels if > 0), image variable (from
    `start`), optimiser and average."""
    image = tf.Variable(start, name="image")
    objective = (tiles.TiledObjective(config, extractor, content, style, tile) if tile
                 else Objective.of_images(config, extractor, content, style))
    optimizer = make_optimizer(config, objective, image)
    average = schedule.Average(image, config.average_decay) if config.average_decay else None
    return StageRun(optimizer, average)


def resolve_config(config: Optional[Config] = None, **overrides: Any) -> Config:
    """`config` (default: make_config()) with `overrides` on top."""
    if config is None:
        return make_config(**overrides)
    if "preset" in overrides:
        # Replacing the name alone would label the run with a preset whose values it lacks.
        raise UserError("A preset chooses the starting settings: pass preset= without config=, "
                        "or build the config with tfstyle.make_config(preset, ...).")
    return config.replace(**overrides) if overrides else config


def run_config(config: Config, content: Optional[Sequence[ImageLike]] = None,
        style: Optional[ImageLike] = None, callbacks: Sequence[StepCallback] = ()) -> Result:
    """Stylise with `config`; images default to the config's paths. When config.output is set,
    the result is written there (every save_every steps, at the end, and on Ctrl-C); with
    several content images, each to OUTPUT-<content name>.<ext> (see batch_output_paths)."""
    if content is None:
        content = [path for path in config.content.split(",") if path]
    style = config.style if style is None else style
    if not content or (isinstance(style, str) and not style):
        raise UserError("Both a content image and a style image are needed (--content, --style).")
    named = all(isinstance(item, (str, os.PathLike)) for item in (*content, style))
    if named:
        # Name the inputs actually used in the run record and the logs (arrays have no name).
        config = config.replace(content=",".join(map(str, content)), style=str(style))
    outputs = (images.batch_output_paths(config.output, [images.image_name(item, position)
                                                         for position, item in enumerate(content)])
               if config.output else [])
    for path in outputs:
        images.check_output_path(path, overwrite=config.overwrite or config.resume)
    if not config.output and (config.resume or config.checkpoint_every):
        raise UserError("Checkpoints live beside the output: --resume and --checkpoint_every "
                        "need --output.")
    # Each output's record describes a run of its content image alone: the images of a batch
    # are independent, so that run reproduces it, and --from_image re-runs just that picture.
    records = [config.replace(output=path, content=str(item) if named else config.content)
               for item, path in zip(content, outputs)]
    if config.logdir:
        monitor.prepare_logdir(config.logdir)
    content_images, style_image = load_inputs(config, content, style)
    stages = schedule.plan(config, content_images[0].size, style_image.size)
    tile_sizes = {stage.scale: tile_for(config, stage.size, len(content_images))
                  for stage in stages}
    if config.resume or config.checkpoint_every:
        # A resumed run must end exactly where the uninterrupted one would have.
        tf.config.experimental.enable_op_determinism()
    start_step = checkpoints.latest_step(config.output) if config.resume else 0
    extractor = FeatureExtractor((config.content_layer, *config.layer_names), config.weights,
                                 config.preprocess, config.precision)

    def begin(stage: schedule.Stage, picture: Optional[np.ndarray]) -> StageRun:
        content_batch, style_batch = arrays_at(config, content_images, style_image, stage.size)
        start = (schedule.initial_image(config.init, content_batch, config.seed)
                 if picture is None else schedule.upsample(picture, stage.size))
        run = stage_run(config, extractor, content_batch, style_batch, start,
                        tile_sizes[stage.scale])
        saver = Checkpoints(config, run.state()) if config.output else None
        if saver and config.resume and picture is None:
            saver.restore()
        width, height = stage.size
        tile = tile_sizes[stage.scale]
        logging.info("Scale %d of %d: %s of %dx%d pixels, steps %d to %d (preset %s, %s, %s%s).",
                     stage.scale, len(stages), "1 image" if len(content_images) == 1
                     else f"{len(content_images)} images", width, height,
                     max(stage.first_step, start_step) + 1, stage.last_step, config.preset,
                     config.optimizer, config.precision,
                     f", in tiles of {tile} pixels" if tile else "")
        run.checkpoint = saver.save if saver else None
        return run

    def save(batch_images: np.ndarray, step: int) -> None:
        for image, path, record in zip(batch_images, outputs, records):
            try:
                images.save_image(image, path, monitor.run_record(record, step))
            except OSError as error:
                raise UserError(f"Could not write '{path}' ({error.strerror or error}); the last "
                                "checkpoint, if any, is still valid.") from None

    content_batch, style_batch = arrays_at(config, content_images, style_image, stages[-1].size)
    watcher = monitor.RunMonitor(config, stages, extractor.weights_description, content_batch,
                                 style_batch)
    try:
        result = optimize(stages, begin, save, config.save_every, [watcher, *callbacks],
                          start_step, config.checkpoint_every, config.precision)
    except BaseException:
        watcher.close()
        raise
    watcher.finish(result)
    result.log_dir = watcher.log_dir
    result.outputs = outputs
    return result


def stylize(content: Union[ImageLike, Sequence[ImageLike]], style: ImageLike, *,
            config: Optional[Config] = None, callbacks: Sequence[StepCallback] = (),
            **overrides: Any) -> Union[Image.Image, list[Image.Image]]:
    """Paint `content` in the style of `style` and return the result as a PIL image.

    Images may be paths, 'sample:tubingen'-style names, PIL images or arrays. Settings come
    from `config` (default: the default preset) with `overrides` on top, e.g.
    `stylize('photo.jpg', 'sample:starry_night', steps=100, preset='coursera')`.
    A list of content images is optimised as one batch and gives a list of results.
    """
    batch = isinstance(content, (list, tuple))
    result = run_config(resolve_config(config, **overrides), list(content) if batch else [content],
                 style, callbacks)
    pictures = [images.to_pil(image) for image in result.image]
    return pictures if batch else pictures[0]
