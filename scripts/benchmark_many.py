"""What a folder run costs on each engine: the same images through `local` and through `ray`.

    python scripts/benchmark_many.py [--images=8] [--max_size=128] [--photos=DIR] [--json=F]

Stylises --images photos (the first of ../shared/photos, else crops of the bundled sample)
with the default preset (two scales) at --max_size, in this order, each into a directory of its own:
1. engine local, in this process (VGG19 loaded on the first image, as a real run does);
2. engine ray, one task at a time claiming every core, so that it does the local run's work
   with the same threads: the difference is Ray's per-image overhead (the tasks' transfers,
   scheduling, and each worker's start: importing TensorFlow and loading VGG19 once);
3. engine ray with one core per task, as many tasks at once as there are cores.
Ray's own start (ray.init) is timed apart: a cluster pays it once, not per folder. Prints
the seconds per image, the overhead in percent, images per hour and the bytes each image
sends and receives; --json also writes them.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from PIL import Image  # noqa: E402

import ray  # noqa: E402
import tfstyle  # noqa: E402
from tfstyle import images, jobs  # noqa: E402
from tfstyle.config import make_config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_integer("images", 8, "How many photos to stylise.")
flags.DEFINE_integer("max_size", 128, "Longest side of each picture.")
flags.DEFINE_string("photos", os.path.join(ROOT, "..", "shared", "photos"),
                    "Where the photos come from (a directory); crops of the bundled sample when "
                    "it does not exist.")
# At 128 px a third scale would start under the 32 pixels VGG19 needs.
flags.DEFINE_string("settings", "scales=2,scale_steps=300", "Settings on top of the default "
                    "preset, as name=value,... with JSON values.")
flags.DEFINE_string("json", "", "Also write the figures to this JSON file.")
FLAGS = flags.FLAGS
CORES = len(os.sched_getaffinity(0))


def gather_photos(directory: str) -> list[str]:
    """--images photos copied into `directory`: the first of --photos, or crops of the sample."""
    os.makedirs(directory)
    sources = ([path for path in jobs.find_inputs(FLAGS.photos) if "contact_sheet" not in path]
               [:FLAGS.images] if os.path.isdir(FLAGS.photos) else [])
    sample = images.load_image("sample:tubingen")
    paths = []
    for index in range(FLAGS.images):
        path = os.path.join(directory, f"photo{index:02d}.jpg")
        if index < len(sources):
            shutil.copy(sources[index], path)
        else:  # different shapes, as a real folder has
            width, height = sample.size
            sample.crop((index * 20, 0, width - index * 10, height - index * 15)).save(path)
        paths.append(path)
    return paths


def timed_run(config, photos: list[str], output: str) -> dict:
    start = time.perf_counter()
    summary = tfstyle.run_many(config.replace(output=output), photos)
    seconds = time.perf_counter() - start
    if summary.count("done") != len(photos):
        failed = [f"{result.input}: {result.reason}" for result in summary.results
                  if result.status != "done"]
        sys.exit(f"benchmark_many: not every image was done: {failed}")
    return {"seconds": seconds, "per_image": seconds / len(photos),
            "images_per_hour": len(photos) * 3600 / seconds,
            "optimising_per_image": sum(result.seconds for result in summary.results)
            / len(photos)}


def transfer_sizes(photos: list[str], output: str, style: str) -> dict:
    """Bytes over the network per image: its file there, its float32 picture back; the style
    goes once per folder."""
    pixels = [Image.open(os.path.join(output, f"{os.path.splitext(os.path.basename(path))[0]}"
                                      ".png")).size for path in photos]
    return {"to_worker_per_image": sum(os.path.getsize(path) for path in photos) / len(photos),
            "back_per_image": sum(12 * width * height for width, height in pixels) / len(pixels),
            "style_once": os.path.getsize(images.sample_path(style.removeprefix("sample:")))}


def main(argv) -> None:
    extra = {name: json.loads(value) for name, value in
             (item.split("=", 1) for item in FLAGS.settings.split(",") if item)}
    style = "sample:starry_night"
    base = make_config(style=style, max_size=FLAGS.max_size, quiet=True, **extra)
    work = tempfile.mkdtemp(prefix="tfstyle-many-")
    photos = gather_photos(os.path.join(work, "photos"))
    figures = {"images": len(photos), "max_size": FLAGS.max_size, "cores": CORES,
               "settings": extra}
    figures["local"] = timed_run(base, photos, os.path.join(work, "local"))
    start = time.perf_counter()
    ray.init(num_cpus=CORES, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    figures["ray_start_seconds"] = time.perf_counter() - start
    try:
        figures["ray_1_worker"] = timed_run(base.replace(engine="ray", cpus_per_image=CORES),
                                            photos, os.path.join(work, "ray1"))
        figures[f"ray_{CORES}_workers"] = timed_run(
            base.replace(engine="ray", cpus_per_image=1), photos, os.path.join(work, "rayn"))
    finally:
        ray.shutdown()
    local, one = figures["local"], figures["ray_1_worker"]
    figures["ray_overhead_percent"] = 100 * (one["per_image"] / local["per_image"] - 1)
    figures["transfer_bytes"] = transfer_sizes(photos, os.path.join(work, "local"), style)
    shutil.rmtree(work)

    print(f"{len(photos)} images at {FLAGS.max_size} px, default preset with "
          f"{FLAGS.settings or 'nothing'} on top, {CORES} cores")
    print(f"{'engine':<26}{'s/image':>9}{'optimising':>12}{'images/h':>10}")
    for name in ("local", "ray_1_worker", f"ray_{CORES}_workers"):
        row = figures[name]
        print(f"{name:<26}{row['per_image']:>9.2f}{row['optimising_per_image']:>12.2f}"
              f"{row['images_per_hour']:>10.0f}")
    sizes = figures["transfer_bytes"]
    print(f"Ray's start (once per cluster): {figures['ray_start_seconds']:.1f} s")
    print(f"per image over the network: {sizes['to_worker_per_image'] / 1e3:.0f} kB there, "
          f"{sizes['back_per_image'] / 1e3:.0f} kB back; the style {sizes['style_once'] / 1e3:.0f}"
          " kB once")
    print(f"Ray's per-image overhead: {figures['ray_overhead_percent']:.1f}% (target at most 10%)")
    if FLAGS.json:
        with open(FLAGS.json, "w") as file:
            json.dump(figures, file, indent=2)


if __name__ == "__main__":
    app.run(main)
