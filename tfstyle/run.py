"""Paint a content image in the style of another (Gatys et al., Coursera formulation).

Usage: python -m tfstyle.run --content=photo.jpg --style=painting.jpg --output=out.png [flags]

Images may be files or the bundled samples sample:tubingen and sample:starry_night.
--preset=coursera reproduces the Coursera notebook; flags given explicitly override the
preset. --flagfile=FILE reads flags from a file, one per line. --from_image=out.png re-runs
with the settings recorded in a PNG that tfstyle wrote. --logdir=DIR logs to TensorBoard.
"""
# One flag per field of tfstyle.config.Config, generated from it: the dataclass is the only
# place where settings and defaults are written down.
from __future__ import annotations

import dataclasses
import os
import signal
import sys
from typing import Sequence

from absl import app, flags, logging


def _import_tensorflow_quietly() -> None:
    """TF's C++ runtime prints GPU-probing lines on stderr at import and device set-up, before
    any log level applies; a user should see only tfstyle's own messages there."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf
            tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_import_tensorflow_quietly()

from tfstyle import api, monitor  # noqa: E402  (after the quiet import)
from tfstyle.config import PRESETS, Config, make_config, upgrade_settings  # noqa: E402
from tfstyle.errors import UserError  # noqa: E402

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    defaults = Config()
    texts = defaults.to_dict()  # list-valued settings in their text form
    for field in dataclasses.fields(Config):
        default = getattr(defaults, field.name)
        help_text = field.metadata["help"]
        if field.name == "preset":
            coursera = ", ".join(f"{k}={v}" for k, v in PRESETS["coursera"].items()
                                 if not isinstance(v, tuple))
            help_text += f" The coursera preset sets {coursera}."
        if isinstance(default, tuple):
            flags.DEFINE_string(field.name, texts[field.name], help_text,
                                flag_values=flag_values)
        elif isinstance(default, bool):
            flags.DEFINE_boolean(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(field.name, default, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(field.name, default, help_text, flag_values=flag_values)
    # Not a Config field: like --flagfile it says where the settings come from rather than being
    # one (recorded, it would point every re-run at the image before).
    flags.DEFINE_string("from_image", "", "Re-run with the settings recorded in a PNG that tfstyle "
                        "wrote, input paths included; flags given explicitly override them.",
                        flag_values=flag_values)
    # The form of one content layer before there could be several, kept for old flagfiles.
    flags.DEFINE_string("content_layer", None, "The older form of --content_layers=LAYER=1.",
                        flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> Config:
    """The preset named by --preset (or the settings recorded in --from_image), with every flag
    given on the command line on top."""
    explicit = {field.name: flag_values[field.name].value for field in dataclasses.fields(Config)
                if flag_values[field.name].present and field.name != "preset"}
    if flag_values["content_layer"].present:
        explicit = upgrade_settings({**explicit, "content_layer": flag_values.content_layer})
    preset = flag_values.preset
    if flag_values.from_image:
        recorded = monitor.recorded_settings(flag_values.from_image)
        if flag_values["preset"].present:  # an explicit preset's settings beat the recorded ones
            recorded = {name: value for name, value in recorded.items()
                        if name not in PRESETS.get(preset, {})}
        else:
            preset = recorded.get("preset", preset)
        recorded.pop("preset", None)
        explicit = {**recorded, **explicit}
    return make_config(preset, **explicit)


def fail(message: str) -> int:
    """The user sees one line; the details a traceback would give are theirs to fix, not ours."""
    print(f"tfstyle: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        return fail(f"Unexpected argument(s) {' '.join(argv[1:])}; every setting is a --flag.")
    try:
        config = config_from_flags()
        if not config.output:
            raise UserError("Say where to write the result with --output=FILE.png.")
        result = api.run_config(config)
    except UserError as error:
        return fail(str(error))
    final = result.history[-1] if result.history else {}
    logging.info("Wrote %s after %d steps in %.1f s, %.2f steps/s (total %.4g, content %.4g, "
                 "style %.4g)%s.", ", ".join(result.outputs), result.steps, result.seconds,
                 len(result.history) / max(result.seconds, 1e-9), final.get("total", float("nan")),
                 final.get("content", float("nan")), final.get("style", float("nan")),
                 f"; TensorBoard logs in {result.log_dir}" if result.log_dir else "")
    if not result.interrupted:
        return 0
    print(f"tfstyle: stopped by {result.stopped_by} after step {result.steps} of "
          f"{config.total_steps}; "
          f"wrote {', '.join(result.outputs)} and a checkpoint. To continue, run the same command "
          "with --resume.", file=sys.stderr)
    return 128 + int(getattr(signal, result.stopped_by, signal.SIGINT))


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's parser, but a bad flag is one line and exit status 2 like every other bad input."""
    try:
        return FLAGS(list(argv))
    except flags.Error as error:
        sys.exit(fail(f"{error}."))


def cli(argv: Sequence[str]) -> int:
    """What `python -m tfstyle.run ARGS` does, callable in-process (tests, scripts)."""
    FLAGS.unparse_flags()
    try:
        remaining = parse_flags(argv)
    except SystemExit as exit:
        return int(exit.code)
    return main(remaining)


define_flags()


def entry_point() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    entry_point()
