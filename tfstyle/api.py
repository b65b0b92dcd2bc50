"""The Python API: `stylize` for a picture, `run_config` for a whole configured run."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from tfstyle import checkpoints, colors, features, images, monitor, schedule, tiles
from tfstyle.checkpoints import Checkpoints
from tfstyle.config import INITS, Config, make_config, split_paths
from tfstyle.errors import UserError
from tfstyle.features import FeatureExtractor
from tfstyle.images import ImageLike
from tfstyle.loop import Result, StageRun, StepCallback, optimize
from tfstyle.objective import Objective, Temporal
from tfstyle.optimizers import make_optimizer, optimizer_memory_bytes
from tfstyle.style import Style, blend_weights


# A batch shares one size, so every content image is resized to the first one's: refused when
# that would stretch an image by more than this, rather than stretched (the distortion would
# be painted in), cropped (silently losing part of the picture) or padded (the padding would
# be painted too and would shift the style statistics).
ASPECT_TOLERANCE = 0.05


@dataclasses.dataclass
class Inputs:
    """A run's pictures, loaded and checked, at their own sizes."""
    content: list[Image.Image]  # empty for texture synthesis
    styles: list[Image.Image]
    weights: list[float]  # each style's share of the style cost; they sum to 1
    masks: list[Optional[Image.Image]]  # each style's region, greyscale (None: everywhere)
    init: Optional[Image.Image] = None  # what --init=style or --init=FILE starts from

    @property
    def shape(self) -> tuple[int, int]:
        """(width, height) whose aspect the output takes: the first content image's, or the
        first style image's for a texture."""
        return (self.content or self.styles)[0].size

    @property
    def batch(self) -> int:
        return max(1, len(self.content))


def names(value: Union[str, ImageLike, Sequence[ImageLike]]) -> list[ImageLike]:
    """A comma-separated list of paths, or a list of images, as a list."""
    if isinstance(value, str):
        return split_paths(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def load_inputs(config: Config, content: Sequence[ImageLike],
                styles: Sequence[ImageLike]) -> Inputs:
    """The content images (none: a texture), the style images, their blend weights and
    regions, and the --init picture, loaded and checked."""
    content_images = [images.load_image(item) for item in content]
    if content_images and not config.image_size:  # the course squashes every image anyway
        check_aspect_ratios(content, content_images, "content image")
    if not styles:
        raise UserError("A style image is needed (--style).")
    if config.style_weights and len(config.style_weights) != len(styles):
        raise UserError(f"--style_weights has {len(config.style_weights)} weight(s) for "
                        f"{len(styles)} style image(s); give one per style image.")
    mask_paths = names(config.style_masks)
    if mask_paths and len(mask_paths) != len(styles):
        raise UserError(f"--style_masks has {len(mask_paths)} mask(s) for {len(styles)} style "
                        "image(s); give one per style image.")
    if (mask_paths or config.preserve_colors) and not content_images:
        raise UserError("--style_masks and --preserve_colors need a content image (--content).")
    masks = [images.load_image(path).convert("L") for path in mask_paths]
    if masks:
        check_aspect_ratios([content[0], *mask_paths], [content_images[0], *masks], "mask")
    style_images = [images.load_image(item) for item in styles]
    return Inputs(content_images, style_images, blend_weights(config.style_weights, len(styles)),
                  masks or [None] * len(styles), load_init_picture(config, style_images[0]))


def load_init_picture(config: Config, style_image: Image.Image) -> Optional[Image.Image]:
    """The picture --init=style or --init=FILE starts from; None for the other inits."""
    if config.init == "style":
        return style_image
    if config.init in INITS:
        return None
    try:
        return images.load_image(config.init)
    except UserError as error:
        raise UserError(f"--init '{config.init}' is none of {', '.join(INITS)}, so it must be an "
                        f"image: {error}") from None


def arrays_at(config: Config, inputs: Inputs, size: tuple[int, int]
              ) -> tuple[Optional[np.ndarray], list[Style]]:
    """The content batch [B, H, W, 3] at `size` (width, height; None for a texture) and the
    styles: each style image [1, h, w, 3] at schedule.style_size_at (with
    --preserve_colors=histogram, [B, h, w, 3], the style in each content image's colours), its
    weight and its mask at `size`; RGB and masks in [0, 1]."""
    batch = (np.stack([images.to_array(image, size) for image in inputs.content])
             if inputs.content else None)
    styles = []
    for image, weight, mask in zip(inputs.styles, inputs.weights, inputs.masks):
        style = images.to_array(image, schedule.style_size_at(config, image.size, size))
        if config.preserve_colors == "histogram":  # one style per content image, in its colours
            pixels = np.stack([colors.match_histogram(style, content) for content in batch])
        else:
            pixels = style[None]
        region = None if mask is None else (
            np.asarray(mask.resize(size, Image.BILINEAR), np.float32) / 255.0)
        styles.append(Style(pixels, weight, region))
    return batch, styles


def prepare_images(config: Config, content: Sequence[ImageLike], style: ImageLike
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Content batch [B, H, W, 3] and the (first) style image [1, h, w, 3] at the configured
    size. Refuses sizes this machine's memory cannot hold before allocating anything large."""
    inputs = load_inputs(config, content, names(style))
    size = images.fit_size(inputs.shape, config.max_size, config.image_size)
    check_memory(config, size, inputs.batch)
    batch, styles = arrays_at(config, inputs, size)
    return batch, styles[0].image


def check_aspect_ratios(sources: Sequence[ImageLike], loaded: Sequence[Image.Image],
                        what: str) -> None:
    """Refuse an image (a content image of a batch, a mask) that resizing to the first content
    image's size would visibly stretch."""
    def aspect(image: Image.Image) -> float:
        return image.width / image.height

    first = aspect(loaded[0])
    for position, (source, image) in enumerate(zip(sources, loaded)):
        if max(aspect(image) / first, first / aspect(image)) > 1 + ASPECT_TOLERANCE:
            name = (f"'{source}'" if isinstance(source, (str, os.PathLike))
                    else f"{what.capitalize()} {position + 1}")
            why = ("a batch shares one size" if what == "content image" else
                   "a mask covers the generated image")
            raise UserError(f"{name} ({image.width}x{image.height}) is not the shape of the first "
                            f"content image ({loaded[0].width}x{loaded[0].height}) and {why}, "
                            f"which would stretch it by more than {ASPECT_TOLERANCE:.0%}; "
                            + ("stylise it in a separate run." if what == "content image" else
                               "give it the content image's aspect."))


def memory_needed(config: Config, size: tuple[int, int], batch: int, tile: int = 0) -> int:
    """Bytes one step at `size` (width, height) needs, with the optimiser's state; in tiles of
    `tile` pixels a side, the step of one tile and its margins, beside the whole image's
    buffers (the image, its gradient and the content target, float32)."""
    width, height = size
    layers = config.layers
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


def extractor_for(config: Config) -> FeatureExtractor:
    """VGG19 as the config sets it up, returning the activations its costs use."""
    return FeatureExtractor(config.layers, config.weights,
                            config.preprocess, config.precision, config.pooling)


def stage_run(config: Config, extractor: FeatureExtractor, content: Optional[np.ndarray],
              styles: Sequence[Style], start: np.ndarray, tile: int = 0,
              temporal: Optional[Temporal] = None) -> StageRun:
    """One scale's objective (in tiles of `tile` pixels if > 0; with a video frame's
    `temporal` target), image variable (from `start`, whose size is the scale's), optimiser
    and average."""
    image = tf.Variable(start, name="image")
    size = (start.shape[2], start.shape[1])
    objective = (tiles.TiledObjective(config, extractor, content, styles, size, tile, temporal)
                 if tile else Objective.of_images(config, extractor, content, styles, size,
                                                  temporal))
    optimizer = make_optimizer(config, objective, image)
    average = schedule.Average(image, config.average_decay) if config.average_decay else None
    return StageRun(optimizer, average)


class Reuse:
    """What consecutive runs can share instead of building and compiling it again (a video's
    frames): the feature extractor, and, between runs of one config and the same styles that
    differ only in their content images, start and temporal target, the last stage's
    objective, image and optimiser, compiled, given the new run's targets and start."""

    def __init__(self) -> None:
        self._extractor: Optional[tuple[tuple, FeatureExtractor]] = None
        self._run: Optional[tuple[tuple, StageRun]] = None

    def extractor(self, config: Config) -> FeatureExtractor:
        key = (config.layers, config.weights, config.preprocess, config.precision,
               config.pooling)
        if self._extractor is None or self._extractor[0] != key:
            self._extractor = key, extractor_for(config)
        return self._extractor[1]

    def stage_run(self, config: Config, extractor: FeatureExtractor,
                  content: Optional[np.ndarray], styles: Sequence[Style], start: np.ndarray,
                  tile: int = 0, temporal: Optional[Temporal] = None) -> StageRun:
        """stage_run(), or the last one restarted when it is of the same config and shape."""
        key = (config, start.shape, id(extractor))
        if not tile and self._run and self._run[0] == key:
            run = self._run[1]
            if run.optimizer.objective.retarget(content, temporal):
                run.restart(start)
                return run
        run = stage_run(config, extractor, content, styles, start, tile, temporal)
        self._run = None if tile else (key, run)
        return run


def resolve_config(config: Optional[Config] = None, **overrides: Any) -> Config:
    """`config` (default: make_config()) with `overrides` on top."""
    if config is None:
        return make_config(**overrides)
    if "preset" in overrides:
        # Replacing the name alone would label the run with a preset whose values it lacks.
        raise UserError("A preset chooses the starting settings: pass preset= without config=, "
                        "or build the config with tfstyle.make_config(preset, ...).")
    return config.replace(**overrides) if overrides else config


def write_output(image: np.ndarray, path: str, record: Config, step: int,
                 overwrite: bool) -> Optional[str]:
    """Write the picture of `step` to `path` with `record` as its run record; on failure, why
    (in one sentence), the picture then kept elsewhere when it can be (see save_elsewhere)."""
    text = monitor.run_record(record, step)
    try:
        images.save_image(image, path, text, overwrite=overwrite)
    except OSError as error:  # a full disk, a directory made read-only meanwhile
        kept = images.save_elsewhere(image, path, text)
        return (f"Could not write '{path}' ({error.strerror or error}); "
                + (f"the picture of step {step} was saved as '{kept}' instead." if kept
                   else "nor could it be saved elsewhere."))
    except UserError as error:
        return str(error)
    return None


def run_config(config: Config, content: Optional[Sequence[ImageLike]] = None,
               style: Optional[Union[ImageLike, Sequence[ImageLike]]] = None,
               callbacks: Sequence[StepCallback] = (), init_picture: Optional[np.ndarray] = None,
               temporal: Optional[Temporal] = None, reuse: Optional[Reuse] = None) -> Result:
    """Stylise with `config`; images default to the config's paths (several styles: a list, or
    comma-separated paths). `init_picture` [H, W, 3] replaces --init, and `temporal` adds a
    video frame's temporal cost (see video.py); `reuse` shares what it can with the runs
    before (see Reuse). When config.output is set, the result is written there (every
    save_every steps, at the end, and on Ctrl-C); with several content images, each to
    OUTPUT-<content name>.<ext> (see batch_output_paths). With no content image, it
    synthesises the style's texture (Gatys et al. 2015): no content cost, a start from noise,
    the size from --max_size and the style's aspect (or --image_size)."""
    content = names(config.content) if content is None else list(content)
    styles = names(config.style if style is None else style)
    if not styles and not config.model:
        raise UserError("A style image is needed (--style); add a content image (--content) to "
                        "paint it in that style, or none for a texture.")
    named = all(isinstance(item, (str, os.PathLike)) for item in (*content, *styles))
    if named:
        # Name the inputs actually used in the run record and the logs (arrays have no name).
        config = config.replace(content=",".join(map(str, content)),
                                style=",".join(map(str, styles)))
    outputs = (images.batch_output_paths(config.output, [images.image_name(item, position)
                                                         for position, item in enumerate(content)]
                                         or ["texture"])
               if config.output else [])
    for path in outputs:
        images.check_output_path(path, overwrite=config.overwrite or config.resume)
    if not config.output and (config.resume or config.checkpoint_every):
        raise UserError("Checkpoints live beside the output: --resume and --checkpoint_every "
                        "need --output.")
    if config.output:  # Ctrl-C writes a checkpoint too
        checkpoints.check_directory(config.output)
    # Each output's record describes a run of its content image alone: the images of a batch
    # are independent, so that run reproduces it, and --from_image re-runs just that picture.
    records = [config.replace(output=path, content=str(item) if named else config.content)
               for item, path in zip(content or [""], outputs)]
    if config.model:
        return run_model(config, content, styles, outputs, records)
    if config.logdir:
        monitor.prepare_logdir(config.logdir)
    inputs = load_inputs(config, content, styles)
    if init_picture is not None:
        inputs.init = images.to_pil(init_picture)
    stages = schedule.plan(config, inputs.shape, [image.size for image in inputs.styles],
                           [str(item) if isinstance(item, (str, os.PathLike)) else ""
                            for item in (content[:1] or styles[:1]) + styles])
    tile_sizes = {stage.scale: tile_for(config, stage.size, inputs.batch) for stage in stages}
    if config.resume or config.checkpoint_every:
        # A resumed run must end exactly where the uninterrupted one would have.
        tf.config.experimental.enable_op_determinism()
    start_step = checkpoints.latest_step(config.output) if config.resume else 0
    if start_step > config.total_steps:
        raise UserError(f"The checkpoint of '{config.output}' is at step {start_step}, past this "
                        f"run's last step {config.total_steps}; resume with the steps it was "
                        "started with, or more.")
    extractor = reuse.extractor(config) if reuse else extractor_for(config)
    # A texture has no content to start from: it starts from noise unless --init names a picture.
    init = ("picture" if init_picture is not None else
            "noise" if not inputs.content and config.init in ("content", "content_noise")
            else config.init)

    def begin(stage: schedule.Stage, picture: Optional[np.ndarray]) -> StageRun:
        content_batch, stage_styles = arrays_at(config, inputs, stage.size)
        if picture is None:
            width, height = stage.size
            shape = (content_batch if content_batch is not None
                     else np.zeros((1, height, width, 3), np.float32))
            start = schedule.initial_image(
                init, shape, config.seed, config.init_noise,
                None if inputs.init is None else images.to_array(inputs.init, stage.size))
        else:
            start = schedule.upsample(picture, stage.size)
        run = (reuse.stage_run if reuse else stage_run)(
            config, extractor, content_batch, stage_styles, start, tile_sizes[stage.scale],
            temporal)
        saver = Checkpoints(config, run.state()) if config.output else None
        if saver and config.resume and picture is None:
            saver.restore()
        width, height = stage.size
        tile = tile_sizes[stage.scale]
        what = ("a texture" if not inputs.content else "1 image" if inputs.batch == 1
                else f"{inputs.batch} images")
        logging.info("Scale %d of %d: %s of %dx%d pixels, steps %d to %d (preset %s, %s, %s%s).",
                     stage.scale, len(stages), what, width, height,
                     max(stage.first_step, start_step) + 1, stage.last_step, config.preset,
                     config.optimizer, config.precision,
                     f", in tiles of {tile} pixels" if tile else "")
        run.checkpoint = saver.save if saver else None
        return run

    # The outputs this run has written: only those may it replace without --overwrite (a
    # resumed run owns its outputs already), so another run's file is never lost.
    written: set[str] = set()

    def save(batch_images: np.ndarray, step: int) -> None:
        problems: list[str] = []  # said after writing the rest of the batch
        for image, path, record in zip(batch_images, outputs, records):
            problem = write_output(image, path, record, step,
                                   overwrite=config.overwrite or config.resume or path in written)
            if problem:
                problems.append(problem)
            else:
                written.add(path)
        if problems:
            raise UserError(problems[0])

    content_batch, final_styles = arrays_at(config, inputs, stages[-1].size)
    watcher = monitor.RunMonitor(config, stages, extractor.weights_description, content_batch,
                                 [style.image for style in final_styles])
    try:
        result = optimize(stages, begin, save, config.save_every, [watcher, *callbacks],
                          start_step, config.checkpoint_every, config.precision,
                          colors.finisher(config.preserve_colors, inputs.content))
    except BaseException:
        watcher.close()
        raise
    watcher.finish(result)
    result.log_dir = watcher.log_dir
    result.outputs = outputs
    return result


def run_model(config: Config, content: Sequence[ImageLike], styles: Sequence[ImageLike],
              outputs: Sequence[str], records: Sequence[Config]) -> Result:
    """run_config with --model: the content images (resized as a batch is) through the trained
    network in one pass (an AdaIN network's in `styles`, at the strength --alpha), or a texture
    network's texture (--image_size, else --max_size a side, from the noise of --seed), each
    written to its output."""
    from tfstyle import fast
    start = time.perf_counter()
    model = fast.load_model(config.model)
    model.check_run(config, len(styles))
    if model.levels:
        if content:
            raise UserError(f"'{config.model}' is a texture network: it takes no --content.")
        size = (config.image_size or config.max_size,) * 2
        check_memory(config.replace(optimizer="adam"), size, 1)
        result = images.to_array(model.texture(size, config.seed), size)[None]
    else:
        if not content:
            raise UserError("--model stylises content images: give one with --content.")
        inputs = (load_inputs(config, content, styles) if model.arbitrary else
                  Inputs([images.load_image(item) for item in content], [], [], []))
        pictures = inputs.content
        if not config.image_size and not model.arbitrary:  # (load_inputs checks its own)
            check_aspect_ratios(content, pictures, "content image")
        size = images.fit_size(pictures[0].size, config.max_size, config.image_size)
        check_memory(config.replace(optimizer="adam"), size, len(pictures))
        batch, painted = arrays_at(config, inputs, size)
        result = colors.finisher(config.preserve_colors, pictures)(
            model.paint(batch, painted, config.alpha, config) if model.arbitrary
            else model.stylise(batch, config.style_weights))
    for image, path, record in zip(result, outputs, records):
        problem = write_output(image, path, record, 0, config.overwrite)
        if problem:
            raise UserError(problem)
    return Result(result, [], 0, time.perf_counter() - start, outputs=list(outputs))


def stylize(content: Union[None, ImageLike, Sequence[ImageLike]],
            style: Union[ImageLike, Sequence[ImageLike]], *, config: Optional[Config] = None,
            callbacks: Sequence[StepCallback] = (),
            **overrides: Any) -> Union[Image.Image, list[Image.Image]]:
    """Paint `content` in the style of `style` and return the result as a PIL image.

    Images may be paths, 'sample:tubingen'-style names, PIL images or arrays. Settings come
    from `config` (default: the default preset) with `overrides` on top, e.g.
    `stylize('photo.jpg', 'sample:starry_night', steps=100, preset='coursera')`.
    A list of content images is optimised as one batch and gives a list of results; a list of
    styles is blended (style_weights=...); content=None synthesises the style's texture.
    """
    batch = isinstance(content, (list, tuple))
    items = list(content) if batch else [] if content is None else [content]
    result = run_config(resolve_config(config, **overrides), items,
                        list(style) if isinstance(style, (list, tuple)) else [style], callbacks)
    pictures = [images.to_pil(image) for image in result.image]
    return pictures if batch else pictures[0]
