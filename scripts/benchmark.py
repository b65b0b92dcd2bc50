"""How fast is the style transfer step, and how close to this machine's limit does it run?

    python scripts/benchmark.py [--sizes=256,512] [--memory_budget_mb=4096] [--json=out.json]

In one process it
1. measures the machine's conv2d and matmul peak with TF (GFLOP/s), at the start and again
   at the end, keeping the best,
2. counts the step's FLOPs from the layer shapes: the forward convolutions up to the deepest
   layer used, the input-gradient convolutions of the backward pass, and the Gram matmuls
   (forward and backward),
3. at each size times, in turns so that machine drift hits all alike (median of --repeats
   after --warmup): tfstyle's step, the network alone (forward, and forward + input gradient,
   to show where the step's time goes), the step's convolutions each run alone (what TF's
   kernels manage on that work), the step without XLA, a batch of --batch images, and
   a baseline written the way the Coursera notebook does it (tf.function without XLA, a
   multi-output model to block5_conv4, costs summed in Python, one call per step),
4. measures the peak memory of a fresh process running each size, and
5. estimates the largest size that fits --memory_budget_mb from the measured points, checks
   the estimate by running it, and estimates again from that point when it does not fit,
and prints the tables last. GPU users measure the mixed precisions with --precision.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tfstyle import coursera  # noqa: E402
from tfstyle.api import extractor_for, stage_run  # noqa: E402
from tfstyle.config import make_config  # noqa: E402
from tfstyle.features import FeatureExtractor, step_memory_bytes  # noqa: E402
from tfstyle.optimizers import Adam  # noqa: E402
from tfstyle.schedule import initial_image  # noqa: E402
from tfstyle.style import Style  # noqa: E402
from tfstyle.weights import load_vgg19  # noqa: E402

flags.DEFINE_list("sizes", ["256", "512"], "Square image sizes to time.")
flags.DEFINE_integer("repeats", 7, "Timed steps per size (the median is reported).")
flags.DEFINE_integer("warmup", 2, "Untimed steps per size (compilation happens here).")
flags.DEFINE_integer("memory_budget_mb", 4096, "Memory budget for the largest-size estimate "
                     "(0 to skip that part).")
flags.DEFINE_integer("memory_of", 0, "Internal: print the peak memory of two steps at this "
                     "size and exit (run in a fresh process by the benchmark).")
flags.DEFINE_string("json", "", "Also write the numbers to this JSON file.")
flags.DEFINE_bool("baseline", True, "Also time the Coursera-style baseline.")
flags.DEFINE_bool("compare_jit", True, "Also time tfstyle's step without XLA (--nojit).")
flags.DEFINE_integer("batch", 4, "Also time a batch of this many images against as many single "
                     "steps at each size (0 or 1 to skip).")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"],
                  "tfstyle's --precision for the timed steps (the mixed ones pay on GPUs).")
FLAGS = flags.FLAGS


# --- the machine's peak -----------------------------------------------------------------

def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_medians(steps: dict, repeats: int, warmup: int) -> dict:
    """Median seconds of each step, timed in turns (a, b, c, a, b, c, ...) so that the speed
    drift of a shared machine affects every contender alike and their ratios stay fair."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(seconds(step))
    return {name: statistics.median(values) for name, values in times.items()}


def fastest_seconds(fn, repeats: int = 10) -> float:
    """A peak is the best the machine does, so the fastest of several runs (not the median)."""
    fn()
    return min(seconds(fn) for _ in range(repeats))


def conv2d_peak_gflops() -> float:
    """Best of a few VGG-like 3×3 convolutions (the step's workload), forward only, each with
    and without XLA (they use different CPU kernels), so the peak is the best TF can do here."""
    best = 0.0
    for size, channels in ((112, 128), (56, 256), (28, 512)):
        x = tf.random.normal([1, size, size, channels])
        kernel = tf.random.normal([3, 3, channels, channels])
        flops = 2 * size * size * 9 * channels * channels
        for jit in (True, False):
            conv = tf.function(lambda: tf.nn.conv2d(x, kernel, 1, "SAME"), jit_compile=jit)
            best = max(best, flops / fastest_seconds(lambda: conv().numpy()) / 1e9)
    return best


def matmul_peak_gflops(n: int = 2048) -> float:
    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    matmul = tf.function(lambda: tf.matmul(a, b), jit_compile=True)
    return 2 * n ** 3 / fastest_seconds(lambda: matmul().numpy()) / 1e9


# --- the step's work ----------------------------------------------------------------------

def conv_shapes(extractor: FeatureExtractor, height: int, width: int):
    """(layer name, height, width, kernel height, kernel width, channels in, channels out) of each
    convolution of the extractor at this input size."""
    for layer in extractor.model.layers:
        if isinstance(layer, (tf.keras.layers.MaxPooling2D, tf.keras.layers.AveragePooling2D)):
            height, width = height // 2, width // 2
        elif isinstance(layer, tf.keras.layers.Conv2D):
            yield (layer.name, height, width, *layer.kernel.shape)


def step_gflop(extractor: FeatureExtractor, style_layers, height: int, width: int) -> dict:
    """FLOPs of one step from the layer shapes (multiply-adds count as 2)."""
    forward = backward = gram = 0.0
    for name, h, w, k_h, k_w, c_in, c_out in conv_shapes(extractor, height, width):
        conv = 2.0 * h * w * k_h * k_w * c_in * c_out
        forward += conv
        backward += conv  # the gradient w.r.t. the layer's input costs the same
        if name in style_layers:
            gram += 3 * 2.0 * h * w * c_out * c_out  # G = FᵀF, and dJ/dF = 2F·dG
    return {"forward": forward / 1e9, "backward": backward / 1e9, "gram": gram / 1e9,
            "total": (forward + backward + gram) / 1e9}


def convolutions_alone(extractor: FeatureExtractor, size: int, jit: bool):
    """The step's convolutions, forward and input-gradient shapes, each compiled and run alone
    on random data: how fast TF's own kernels do the step's convolution work, a ceiling for a
    step that spends nearly all its FLOPs there."""
    convs = []
    for _, h, w, k_h, k_w, c_in, c_out in conv_shapes(extractor, size, size):
        for inputs, outputs in ((c_in, c_out), (c_out, c_in)):
            x = tf.random.normal([1, h, w, inputs])
            kernel = tf.random.normal([k_h, k_w, inputs, outputs])
            convs.append(tf.function(lambda x=x, kernel=kernel: tf.nn.conv2d(x, kernel, 1, "SAME"),
                                     jit_compile=jit))
    return lambda: [conv().numpy() for conv in convs]


# --- memory -------------------------------------------------------------------------------

def peak_rss_mb(size: int) -> float:
    """Peak resident memory of a fresh process that builds the step at `size` and runs two
    steps: a clean figure per size (in this process, the allocator keeps what earlier sizes
    used, so its peak only grows)."""
    child = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--memory_of={size}",
         f"--precision={FLAGS.precision}"], capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"The memory probe at {size} px failed:\n{child.stderr[-2000:]}")
    return float(child.stdout.split()[-1])


def run_memory_probe(size: int) -> None:
    _, step = tfstyle_step(size)
    step()
    step()
    # VmHWM, not getrusage's ru_maxrss: that survives exec, so it would start at the size of
    # the benchmark process that forked this one.
    with open("/proc/self/status") as status:
        print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024)


def tfstyle_estimate_mb(size: int) -> float:
    """What tfstyle's pre-run memory check (features.step_memory_bytes) expects for the step."""
    config = make_config(preset="coursera", image_size=size)
    return step_memory_bytes(size, size, config.layers) / 2 ** 20


# --- the two steps ------------------------------------------------------------------------

def images(size: int, batch: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 1, [batch, size, size, 3]).astype(np.float32),
            rng.uniform(0, 1, [1, size, size, 3]).astype(np.float32))


def tfstyle_step(size: int, batch: int = 1, jit: bool = True) -> tuple[Adam, Callable]:
    """The coursera preset's objective (the same work as the baseline) through tfstyle's Adam
    step."""
    config = make_config(preset="coursera", image_size=size, jit=jit, precision=FLAGS.precision)
    content, style = images(size, batch)
    adam = stage_run(config, extractor_for(config), content, [Style(style)],
                     initial_image(config.init, content, config.seed)).optimizer
    return adam, lambda: adam.step()["total"].numpy()


def coursera_step(size: int, extractor_model: tf.keras.Model):
    """The notebook's train_step, as written there (no XLA, costs summed in Python)."""
    content, style = images(size)
    a_C = extractor_model(content)
    a_S = extractor_model(style)
    generated = tf.Variable(content)
    optimizer = tf.keras.optimizers.Adam(learning_rate=0.01)

    @tf.function()
    def train_step(generated_image):
        with tf.GradientTape() as tape:
            a_G = extractor_model(generated_image)
            J_style = coursera.compute_style_cost(a_S, a_G)
            J_content = coursera.compute_content_cost(a_C, a_G)
            J = coursera.total_cost(J_content, J_style, alpha=10, beta=40)
        grad = tape.gradient(J, generated_image)
        optimizer.apply_gradients([(grad, generated_image)])
        generated_image.assign(tf.clip_by_value(generated_image, 0.0, 1.0))
        return J

    return lambda: train_step(generated).numpy()


def coursera_model() -> tf.keras.Model:
    """The notebook's multi-output model over Keras' own VGG19 layers (not tfstyle's
    FrozenConv2D and TiledMaxPooling2D)."""
    vgg, _ = load_vgg19()
    layers = [name for name, _ in coursera.STYLE_LAYERS] + [coursera.content_layer[0][0]]
    return tf.keras.Model(vgg.input, [vgg.get_layer(name).output for name in layers])


def network_steps(adam: Adam) -> dict:
    """The network alone, compiled like the step: forward only, and forward plus the
    input-gradient pass; what the step takes beyond these goes to the costs and Adam."""
    image = tf.constant(adam.image.numpy())
    model = adam.objective.extractor.model

    def summed():  # every output used, so no layer is pruned away
        return tf.add_n([tf.reduce_sum(output) for output in model(image)])

    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(image)
            total = summed()
        return tape.gradient(total, image)

    forward = tf.function(summed, jit_compile=adam.step.jit)
    both = tf.function(forward_backward, jit_compile=adam.step.jit)
    return {"forward_s": lambda: forward().numpy(), "forward_backward_s": lambda: both().numpy()}


# --- the run ------------------------------------------------------------------------------

def measure_size(size: int, baseline_model) -> dict:
    adam, step = tfstyle_step(size)
    extractor = adam.objective.extractor
    contenders = {"step_s": step, **network_steps(adam),
                  "convolutions_s": convolutions_alone(extractor, size, adam.step.jit)}
    if FLAGS.compare_jit:
        contenders["nojit_step_s"] = tfstyle_step(size, jit=False)[1]
    if FLAGS.batch > 1:
        contenders["batch_step_s"] = tfstyle_step(size, FLAGS.batch)[1]
    if baseline_model is not None:
        contenders["baseline_step_s"] = coursera_step(size, baseline_model)
    row = {"size": size, **interleaved_medians(contenders, FLAGS.repeats, FLAGS.warmup)}
    del contenders
    seconds = row["step_s"]
    work = step_gflop(extractor, set(adam.objective.config.layer_names), size, size)
    row.update(steps_per_s=1 / seconds, gflop=work["total"], gflops=work["total"] / seconds,
               peak_rss_mb=peak_rss_mb(size), tfstyle_estimate_mb=tfstyle_estimate_mb(size))
    row.update(convolutions_gflops=(work["forward"] + work["backward"]) / row["convolutions_s"],
               forward_gflops=work["forward"] / row["forward_s"],
               forward_backward_gflops=(work["forward"] + work["backward"])
               / row["forward_backward_s"])
    if FLAGS.batch > 1:
        row["batch_ratio"] = row["batch_step_s"] / (FLAGS.batch * seconds)
    if baseline_model is not None:
        row["speedup"] = row["baseline_step_s"] / seconds
    return row


def largest_size_within(budget_mb: float, rows: list[dict]) -> Optional[int]:
    """Memory grows about linearly with the pixel count: the line rss = a + b·pixels through the
    two largest sizes measured (a is TensorFlow and the model, b the activations kept for the
    backward pass), solved for the budget."""
    rows = sorted(rows, key=lambda row: row["size"])[-2:]
    pixels = np.array([row["size"] ** 2 for row in rows], np.float64)
    rss = np.array([row["peak_rss_mb"] for row in rows])
    slope, intercept = np.polyfit(pixels, rss, 1) if len(rows) > 1 else (rss[0] / pixels[0], 0.0)
    if slope <= 0 or budget_mb <= intercept:
        return None  # the measurements do not grow with size: too small or too noisy
    return int(((budget_mb - intercept) / slope) ** 0.5) // 16 * 16


def fit_budget(budget_mb: float, rows: list[dict], attempts: int = 3) -> dict:
    """Estimate the largest size within the budget from the measured sizes, check it by running
    it in a fresh process, and when it does not fit, add that measurement and estimate again."""
    points = [{"size": row["size"], "peak_rss_mb": row["peak_rss_mb"]} for row in rows]
    checks = []
    for _ in range(attempts):
        size = largest_size_within(budget_mb, points)
        if size is None:
            break
        if any(size == checked for checked, _ in checks):
            size -= 16  # the same estimate again: step below the size that did not fit
        peak = peak_rss_mb(size)
        checks.append((size, peak))
        if peak <= budget_mb:
            break
        points.append({"size": size, "peak_rss_mb": peak})
    fitting = [size for size, peak in checks if peak <= budget_mb]
    return {"budget_mb": budget_mb, "checks": checks,
            "largest_checked_size": max(fitting) if fitting else None}


def main(argv):
    if FLAGS.memory_of:
        return run_memory_probe(FLAGS.memory_of)
    sizes = [int(size) for size in FLAGS.sizes]
    # Each size builds a new step, which TF reports as "excessive retracing"; expected here.
    tf.get_logger().setLevel("ERROR")
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, GPUs: "
          f"{len(tf.config.list_physical_devices('GPU'))}", flush=True)
    peak_conv, peak_matmul = conv2d_peak_gflops(), matmul_peak_gflops()
    print(f"measured peak: conv2d {peak_conv:.1f} GFLOP/s, matmul {peak_matmul:.1f} GFLOP/s",
          flush=True)
    baseline_model = coursera_model() if FLAGS.baseline else None
    rows = []
    for size in sorted(sizes):
        rows.append(measure_size(size, baseline_model))
        print(f"measured {size} px", flush=True)
    budget = None
    if FLAGS.memory_budget_mb:
        budget = fit_budget(FLAGS.memory_budget_mb, rows)

    # The machine's speed drifts (a shared VM): measure the peak again and keep the best, so
    # the fractions below are not flattered by a slow first measurement.
    peak_conv = max(peak_conv, conv2d_peak_gflops())
    for row in rows:
        row["fraction_of_conv_peak"] = row["gflops"] / peak_conv

    print(f"\ntfstyle step (coursera objective, precision {FLAGS.precision}, XLA on), median of "
          f"{FLAGS.repeats} after {FLAGS.warmup} warm-up steps:")
    print("size  step (s)  steps/s  GFLOP/step  GFLOP/s  % of conv peak"
          + ("  no XLA (s)" if FLAGS.compare_jit else "")
          + ("  baseline (s)  speed-up" if FLAGS.baseline else ""))
    for row in rows:
        line = (f"{row['size']:>4}  {row['step_s']:>8.3f}  {row['steps_per_s']:>7.2f}  "
                f"{row['gflop']:>10.1f}  {row['gflops']:>7.1f}  "
                f"{100 * row['fraction_of_conv_peak']:>14.0f}")
        if FLAGS.compare_jit:
            line += f"  {row['nojit_step_s']:>10.3f}"
        if FLAGS.baseline:
            line += f"  {row['baseline_step_s']:>12.3f}  {row['speedup']:>7.2f}x"
        print(line)
    print("\nsize  GFLOP/s: its convolutions alone  network forward  forward + input gradient  "
          f"whole step  (conv peak {peak_conv:.0f})")
    for row in rows:
        print(f"{row['size']:>4}  {row['convolutions_gflops']:>29.1f}  {row['forward_gflops']:>15.1f}"
              f"  {row['forward_backward_gflops']:>24.1f}  {row['gflops']:>10.1f}")
    print("\nsize  peak RSS of a fresh process (MB)  tfstyle's pre-run estimate for the step (MB)")
    for row in rows:
        print(f"{row['size']:>4}  {row['peak_rss_mb']:>32.0f}  {row['tfstyle_estimate_mb']:>44.0f}")
    print(f"conv2d peak {peak_conv:.1f} GFLOP/s, matmul peak {peak_matmul:.1f} GFLOP/s "
          "(best of two measurements in this run)")
    for row in rows if FLAGS.batch > 1 else ():
        print(f"batch of {FLAGS.batch} at {row['size']} px: {row['batch_step_s']:.3f} s per step "
              f"vs {FLAGS.batch * row['step_s']:.3f} s for {FLAGS.batch} single steps: "
              f"{row['batch_ratio']:.2f}x (target <= 0.9x)")
    if budget and not budget["checks"]:
        print(f"largest square size within {budget['budget_mb']} MB: cannot be estimated, memory "
              "did not grow with the sizes measured; measure larger ones.")
    elif budget:
        print(f"largest square size within {budget['budget_mb']} MB: " + "; ".join(
            f"estimated {size} px, measured {peak:.0f} MB -> "
            f"{'fits' if peak <= budget['budget_mb'] else 'does NOT fit'}"
            for size, peak in budget["checks"]))
    if FLAGS.json:
        with open(FLAGS.json, "w") as file:
            json.dump({"tensorflow": tf.__version__, "cpus": os.cpu_count(),
                       "conv2d_peak_gflops": peak_conv, "matmul_peak_gflops": peak_matmul,
                       "precision": FLAGS.precision, "batch": FLAGS.batch, "sizes": rows,
                       "memory_budget": budget}, file, indent=2)
    return 0


if __name__ == "__main__":
    app.run(main)
