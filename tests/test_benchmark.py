"""scripts/benchmark.py runs end to end and its numbers hang together (tiny sizes: the figures
themselves are for a quiet machine, not for a test)."""
import json
import os
import subprocess
import sys
from pathlib import Path


from tolerances import assert_within_rounding

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


def test_benchmark_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    process = subprocess.run(
        [sys.executable, str(SCRIPT), "--sizes=48,64", "--repeats=1", "--warmup=1", "--batch=2",
         "--memory_budget_mb=1", f"--json={out}"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert process.returncode == 0, process.stderr[-3000:]
    table = process.stdout
    for heading in ("% of conv peak", "its convolutions alone", "speed-up", "no XLA (s)",
                    "peak RSS of a fresh process", "batch of 2 at 64 px", "largest square size within 1 MB: cannot be estimated"):
        assert heading in table, heading
    numbers = json.loads(out.read_text())
    rows = {row["size"]: row for row in numbers["sizes"]}
    assert sorted(rows) == [48, 64]
    assert numbers["conv2d_peak_gflops"] > 0 and numbers["matmul_peak_gflops"] > 0
    for row in rows.values():
        assert row["gflops"] == row["gflop"] / row["step_s"]
        assert row["fraction_of_conv_peak"] == row["gflops"] / numbers["conv2d_peak_gflops"]
        assert row["speedup"] == row["baseline_step_s"] / row["step_s"]
        assert row["batch_ratio"] == row["batch_step_s"] / (2 * row["step_s"])
        assert row["convolutions_gflops"] > 0 and row["convolutions_s"] > 0
        # TensorFlow alone takes hundreds of MB; the probe measured a real process.
        assert 300 < row["peak_rss_mb"] < 20000
    # Convolutions and Grams both scale with the pixel count (48 and 64 halve evenly 4 times).
    # FLOP counts summed in float64 over the layers (under 64 products and sums each), divided.
    assert_within_rounding(rows[64]["gflop"] / rows[48]["gflop"], 64 ** 2 / 48 ** 2, terms=64,
                           computations=2, dtype="float64")
    assert numbers["memory_budget"]["checks"] == []
