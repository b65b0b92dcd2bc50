"""Paint a content image in the style of another (Gatys et al., Coursera formulation).

Usage: python -m tfstyle.run --content=photo.jpg --style=painting.jpg --output=out.png [flags]
       python -m tfstyle.run --content=photos/ --style=painting.jpg --output=out/ [--engine=ray]

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
import tempfile
import traceback
from typing import Callable, Sequence

from absl import app, flags, logging

from tfstyle.config import PRESETS, Config, make_config, upgrade_settings
from tfstyle.errors import UserError, stop_on_sigterm, stopped_before_start


def _import_tensorflow_quietly() -> None:
    """TF's C++ runtime prints GPU-probing lines on stderr at import and device set-up, before
    any log level applies; a user should see only tfstyle's own messages there.

    Also imports the modules that need TF, as this module's `api` and `monitor`. Imported as a
    library, this module does it at once; run as `python -m tfstyle.run`, entry_point does it,
    where a Ctrl-C during those seconds is one line instead of a traceback."""
    global api, jobs, monitor, video
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
    from tfstyle import api, jobs, monitor, video


if __name__ != "__main__":
    _import_tensorflow_quietly()

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


def internal_error(error: Exception) -> int:
    """One line for the user, the traceback in a file for the bug report; exit status 1, as
    the fault is not in what the user asked for."""
    try:
        fd, report = tempfile.mkstemp(prefix="tfstyle-error-", suffix=".txt")
        with os.fdopen(fd, "w") as file:
            traceback.print_exception(error, file=file)
        where = f"the details are in {report}"
    except OSError:
        where = "no report could be written"
    summary = " ".join(f"{type(error).__name__}: {error}".split())
    print(f"tfstyle: internal error: {summary[:200]} ({where}; please report it).",
          file=sys.stderr)
    return 1


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        return fail(f"Unexpected argument(s) {' '.join(argv[1:])}; every setting is a --flag.")
    try:
        config = config_from_flags()
        if video.is_clip_run(config):
            return report_clip(config, video.run_video(config))
        if jobs.is_folder_run(config.content):
            summary = jobs.run_many(config)
            jobs.report(summary)
            return jobs.exit_status(summary)
        if config.engine == "ray":
            raise UserError("--engine=ray stylises a folder: give --content a directory or a "
                            "glob such as 'photos/*.jpg', and --output a directory.")
        if not config.output:
            raise UserError("Say where to write the result with --output=FILE.png.")
        result = api.run_config(config)
    except UserError as error:
        return fail(str(error))
    except Exception as error:  # a bug of ours, or a fault nothing above foresaw
        return internal_error(error)
    if config.model:
        logging.info("Wrote %s through the network %s in %.1f s.", ", ".join(result.outputs),
                     config.model, result.seconds)
        return 0
    final = result.history[-1] if result.history else {}
    costs = (" (" + ", ".join(f"{name} {final[name]:.4g}" for name in monitor.SHOWN_COSTS
                              if name in final) + ")" if final else " (no step was left to run)")
    logging.info("Wrote %s after %d steps in %.1f s, %.2f steps/s%s%s.", ", ".join(result.outputs),
                 result.steps, result.seconds, len(result.history) / max(result.seconds, 1e-9),
                 costs, f"; TensorBoard logs in {result.log_dir}" if result.log_dir else "")
    if not result.interrupted:
        return 0
    print(f"tfstyle: stopped by {result.stopped_by} after step {result.steps} of "
          f"{config.total_steps}; "
          f"wrote {', '.join(result.outputs)} and a checkpoint. To continue, run the same command "
          "with --resume.", file=sys.stderr)
    return 128 + int(getattr(signal, result.stopped_by, signal.SIGINT))


def report_clip(config: Config, summary: "video.ClipSummary") -> int:
    """A clip's last line and exit status: 0 when every frame is done (and the video written),
    1 when a shot failed, 128 + the signal when stopped."""
    what = (f"{summary.done} frame(s) stylised, {summary.skipped} done before, of "
            f"{summary.frames}, in {monitor.duration(summary.seconds)}")
    if summary.stopped_by or summary.failed:
        why = (f"stopped by {summary.stopped_by}" if summary.stopped_by
               else f"not finished: {summary.failed}")
        print(f"tfstyle: {why}; {what}, kept in '{video.frames_folder(config)}'. To continue, "
              "run the same command with --resume.", file=sys.stderr)
        return 128 + int(getattr(signal, summary.stopped_by)) if summary.stopped_by else 1
    logging.info("Wrote %s: %s.", config.output, what)
    return 0


HELP_FLAGS = ("-?", "--help", "-help", "--helpshort", "--helpfull", "--helpxml")
# absl reads a flagfile whole, and nested ones too: a device such as /dev/zero would be read
# until memory runs out. Flags for one run fit in far less.
MAX_FLAGFILE_BYTES = 1 << 20


def flagfile_paths(args: Sequence[str]) -> list[str]:
    """The files named by --flagfile=PATH or --flagfile PATH in `args`."""
    paths = []
    for position, arg in enumerate(args):
        name, equals, value = arg.lstrip("-").partition("=")
        if name == "flagfile" and arg.startswith("-"):
            if equals:
                paths.append(value)
            elif position + 1 < len(args):
                paths.append(args[position + 1])
    return paths


def check_flagfiles(args: Sequence[str], seen: frozenset = frozenset()) -> None:
    """Refuse a flagfile (or one it names) that is not a small readable regular file."""
    for path in flagfile_paths(args):
        if path in seen:  # absl would warn and go on without it
            raise UserError(f"--flagfile '{path}' includes itself.")
        if not os.path.isfile(path):
            what = "does not exist" if not os.path.exists(path) else "is not a regular file"
            raise UserError(f"--flagfile '{path}' {what}.")
        if os.path.getsize(path) > MAX_FLAGFILE_BYTES:
            raise UserError(f"--flagfile '{path}' is larger than {MAX_FLAGFILE_BYTES >> 20} MiB; "
                            "a flagfile holds one flag per line.")
        try:
            with open(path, encoding="utf-8") as file:
                lines = [line.strip() for line in file.read(MAX_FLAGFILE_BYTES).splitlines()]
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"--flagfile '{path}' cannot be read ({error}).") from None
        check_flagfiles(lines, seen | {path})


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's parser, but a bad flag is one line and exit status 2 like every other bad input,
    and asking for help is a success."""
    try:
        check_flagfiles(argv[1:])
        return FLAGS(list(argv))
    except (flags.Error, UserError) as error:
        sys.exit(fail(f"{str(error).rstrip('.')}."))
    except SystemExit as exit:  # absl exits 1 after printing the help it was asked for
        if exit.code == 1 and any(arg.split("=")[0] in HELP_FLAGS for arg in argv[1:]):
            sys.exit(0)
        raise


def call_cli(argv: Sequence[str], flag_values: flags.FlagValues,
             parse: Callable[[Sequence[str]], list[str]],
             run: Callable[[Sequence[str]], int]) -> int:
    """A command's `run` on the arguments `parse` leaves, in-process: its exit status."""
    flag_values.unparse_flags()
    try:
        remaining = parse(argv)
    except SystemExit as exit:
        return int(exit.code)
    try:
        return run(remaining)
    except KeyboardInterrupt:
        return stopped_before_start()


def cli(argv: Sequence[str]) -> int:
    """What `python -m tfstyle.run ARGS` does, callable in-process (tests, scripts)."""
    return call_cli(argv, FLAGS, parse_flags, main)


define_flags()
app.define_help_flags()  # also for cli(), which does not go through app.run


def entry_point() -> None:
    stop_on_sigterm()
    try:
        if "api" not in globals():  # run as __main__; imported as a library it already did
            _import_tensorflow_quietly()
        app.run(main, flags_parser=parse_flags)
    except KeyboardInterrupt as interrupt:
        sys.exit(stopped_before_start(interrupt))


if __name__ == "__main__":
    entry_point()
