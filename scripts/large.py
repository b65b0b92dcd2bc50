"""Does a 3840x2160 picture fit, and how long does each step take? A large run, measured.

    python scripts/large.py [--size=3840x2160] [--scales=5] [--scale_steps=100,60,40,20]
                            [--steps=8] [--output=large.png]

Stylises the bundled Tübingen photo, cropped to the aspect of --size, in the style of The
Starry Night, with the default preset's settings and coarse to fine up to --size (fewer steps
than a real run: the figures are per step). The last scales run in tiles when a whole step
would not fit in the memory this machine has free (tfstyle.tiles). Prints, per scale, its
size, whether it ran in tiles, and its seconds per step; then the whole run's time and the
process's peak memory (VmHWM), against tfstyle's own estimate for the last scale.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfstyle  # noqa: E402
from tfstyle import api, images, schedule  # noqa: E402


def peak_memory_mb() -> float:
    """This process's peak resident memory (Linux)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


class StepTimes:
    """Seconds per step of each scale, the first step of each left out (it compiles)."""

    def __init__(self) -> None:
        self.ends: dict[int, list[float]] = {}
        self.sizes: dict[int, tuple[int, int]] = {}

    def __call__(self, iterate) -> None:
        self.ends.setdefault(iterate.scale, []).append(time.perf_counter())
        self.sizes[iterate.scale] = iterate.size

    def per_step(self, scale: int) -> float:
        ends = self.ends[scale]
        return (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="3840x2160", help="WIDTHxHEIGHT of the result")
    parser.add_argument("--scales", type=int, default=5)
    parser.add_argument("--scale_steps", default="100,60,40,20")
    parser.add_argument("--steps", type=int, default=8, help="steps at the last scale")
    parser.add_argument("--tile_size", type=int, default=0, help="0: tiles only where needed")
    parser.add_argument("--output", default="large.png")
    options = parser.parse_args()
    width, height = (int(side) for side in options.size.split("x"))

    photo = images.load_image("sample:tubingen")
    crop_height = min(photo.height, round(photo.width * height / width))
    crop_width = round(crop_height * width / height)
    content = photo.crop((0, 0, crop_width, crop_height))
    with tempfile.TemporaryDirectory() as folder:
        content_path = os.path.join(folder, "tubingen_cropped.png")
        content.save(content_path)
        config = tfstyle.make_config(content=content_path, style="sample:starry_night",
                                     output=options.output, overwrite=True,
                                     max_size=max(width, height), scales=options.scales,
                                     scale_steps=options.scale_steps, steps=options.steps,
                                     tile_size=options.tile_size, quiet=True)
        final = images.fit_size(content.size, config.max_size)
        tiles = {size: api.tile_for(config, size, 1) for size in
                 [stage.size for stage in schedule.plan(
                     config, content.size, [images.load_image(config.style).size])]}
        estimate = api.memory_needed(config, final, 1, tiles[final])
        times = StepTimes()
        start = time.perf_counter()
        result = tfstyle.run_config(config, callbacks=[times])
        seconds = time.perf_counter() - start
    print(f"\n{final[0]}x{final[1]}, {config.optimizer}, {result.steps} steps over "
          f"{config.scales} scales in {seconds:.0f} s; wrote {options.output}")
    print(f"{'scale':>5} {'size':>11} {'tiles':>12} {'steps':>6} {'s/step':>8}")
    for scale, size in times.sizes.items():
        tile = tiles[size]
        print(f"{scale:5} {size[0]:>5}x{size[1]:<5} {f'{tile} px' if tile else 'none':>12} "
              f"{len(times.ends[scale]):6} {times.per_step(scale):8.2f}")
    peak = peak_memory_mb()
    print(f"peak memory of this process: {peak / 1024:.1f} GiB (tfstyle's estimate for the last "
          f"scale's step, beside TensorFlow's own ~1 GiB: {estimate / 2**30:.1f} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
