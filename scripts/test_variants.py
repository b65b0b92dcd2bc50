"""Run the test suite under each CPU code path TensorFlow can take here, and report.

    python scripts/test_variants.py [--variants=onednn_off,avx2] [-- PYTEST ARGS]

The same maths rounds differently on different CPUs: oneDNN picks AVX-512 or AVX2 kernels by
the CPU it finds (or is turned off), and XLA generates code for the CPU's vector width. The
tests' tolerances follow the arithmetic (tests/tolerances.py) so that the suite passes on each
of these paths; this script proves it on one machine by forcing each path in turn (on the
files whose outcome arithmetic can change, see arithmetic_test_files):

  as_is             nothing set: what this machine does by default
  onednn_on         TF_ENABLE_ONEDNN_OPTS=1 (TensorFlow's default on Linux x86, so the main
                    run of the suite there already is this variant; CI leaves it out)
  onednn_off        TF_ENABLE_ONEDNN_OPTS=0 (Eigen's kernels)
  avx2              oneDNN and XLA held to AVX2 (ONEDNN_MAX_CPU_ISA, --xla_cpu_max_isa), as on
                    a CPU of this machine kind without AVX-512. Without the 16-bit tests of
                    each format the CPU itself has in AVX-512 (BF16, FP16): TF then sends
                    those convolutions to oneDNN, and oneDNN held to AVX2 has no kernel for
                    them; on a real AVX2 CPU TF uses Eigen's, which onednn_off runs.
  onednn_off_avx2   Eigen's kernels and XLA held to AVX2
  avx2_16bit        the same, on the 16-bit tests alone ("float16" in their names): what
                    a CPU without AVX-512 runs for the tests the avx2 variant leaves out

(XLA's --xla_cpu_use_thunk_runtime=false, the other generic path, is no longer honoured by
TensorFlow 2.21's XLA, which warns and ignores it.) Prints one line per variant and a table;
exits 1 if any variant failed.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

VARIANTS = {
    "as_is": {},
    "onednn_on": {"TF_ENABLE_ONEDNN_OPTS": "1"},
    "onednn_off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "avx2": {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"},
    "onednn_off_avx2": {"TF_ENABLE_ONEDNN_OPTS": "0", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"},
    "avx2_16bit": {"TF_ENABLE_ONEDNN_OPTS": "0", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"},
}
# pytest arguments of a variant (see the docstring for why).
def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return {flag for line in cpuinfo if line.startswith("flags")
                    for flag in line.split(":", 1)[1].split()}
    except OSError:  # not Linux: no variant below needs excluding
        return set()


def _avx2_selection() -> list[str]:
    flags = _cpu_flags()
    # "float16" also names the bfloat16 tests, so FP16 hardware excludes both.
    excluded = ("float16" if "avx512_fp16" in flags else
                "bfloat16" if "avx512_bf16" in flags else "")
    return ["-k", f"not {excluded}"] if excluded else []


SELECTION = {"avx2": _avx2_selection(), "avx2_16bit": ["-k", "float16"]}
# The variants run the test files whose assertions depend on how TensorFlow rounds: those
# that take their margins from tests/tolerances.py. The rest (refusals, settings, file
# formats, optical flow (OpenCV's), folder runs, the CLI and notebooks end to end, logged
# values against returned ones) come out the same on every code path, and the main run covers
# them. The benchmark's test is among the importers only for a float64 sum on the host.
HOST_ONLY = ("tests/test_benchmark.py",)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def arithmetic_test_files() -> list[str]:
    """tests/test_*.py that import tests/tolerances.py, less HOST_ONLY, relative to ROOT."""
    tests = os.path.join(ROOT, "tests")
    found = []
    for name in sorted(os.listdir(tests)):
        path = f"tests/{name}"
        if name.startswith("test_") and name.endswith(".py") and path not in HOST_ONLY:
            with open(os.path.join(tests, name), encoding="utf-8") as source:
                if re.search(r"^\s*(from|import) tolerances\b", source.read(), re.MULTILINE):
                    found.append(path)
    return found


# What a variant overrides is removed from the inherited environment first, so that a
# variant means the same thing whatever the calling shell has set.
CONTROLLED = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "XLA_FLAGS")


def summary(output: str) -> str:
    """pytest's last line, e.g. '252 passed, 170 warnings in 139.45s'."""
    lines = [line.strip("= ") for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    return lines[-1] if lines else "no pytest summary (see the output above)"


def run(name: str, pytest_args: list[str]) -> tuple[bool, str, float]:
    env = {key: value for key, value in os.environ.items() if key not in CONTROLLED}
    env.update(VARIANTS[name])
    selection = SELECTION.get(name, [])
    # Tests named on the command line replace the arithmetic files.
    files = [] if any(arg.startswith("tests") for arg in pytest_args) else arithmetic_test_files()
    setting = " ".join(f"{key}={value}" for key, value in VARIANTS[name].items()) or "(nothing set)"
    print(f"--- {name}: {setting} {' '.join(selection)}", flush=True)
    start = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              *selection, *pytest_args, *files], cwd=ROOT, env=env,
                             capture_output=True, text=True)
    seconds = time.perf_counter() - start
    passed = process.returncode == 0
    if not passed:  # the failures are what a reader needs; a passing run's dots are not
        print(process.stdout[-20000:], process.stderr[-5000:], sep="\n")
    line = summary(process.stdout)
    print(f"    {'ok' if passed else 'FAILED'}: {line}", flush=True)
    return passed, line, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    options = parser.parse_args()
    names = [name for name in options.variants.split(",") if name]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    results = {name: run(name, options.pytest_args) for name in names}
    print(f"\n{'variant':18} {'result':7} {'time':>7}  pytest")
    for name, (passed, line, seconds) in results.items():
        print(f"{name:18} {'ok' if passed else 'FAILED':7} {seconds:6.0f}s  {line}")
    return 0 if all(passed for passed, _, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
