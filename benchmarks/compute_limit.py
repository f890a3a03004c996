"""How far the Fashion-MNIST MLP's training is from this CPU's arithmetic limit, at batch 32 and 128.

The limit: float32 matmul throughput measured here with TensorFlow (the op a Dense layer runs), once on a
large square matmul (the CPU's practical peak) and once on the MLP's own shapes at each batch size (what
those small matmuls can reach). The MLP's work per training example is counted from its Dense layers:
forward 2·in·out FLOPs each, the weight gradient as much again, and the input gradient for every layer but
the first. `dltrain train` then trains the shipped config for 2 epochs at each batch size; its second epoch
(no tracing) gives the examples/s.

    python benchmarks/compute_limit.py               # ~2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = [(784, 128), (128, 10)]  # configs/fashion_mnist.yaml's Dense layers (in, out)


def training_flops(layers: list[tuple[int, int]]) -> int:
    """Multiply-add FLOPs of one training example through Dense layers (forward, weight and input gradients)."""
    forward = sum(2 * i * o for i, o in layers)
    input_grads = sum(2 * i * o for i, o in layers[1:])  # the first layer's input needs no gradient
    return 2 * forward + input_grads


def matmul_gflops(m: int, k: int, n: int, seconds: float = 2.0) -> float:
    """Best float32 GFLOP/s of an (m, k) @ (k, n) matmul, repeated inside one tf.function for `seconds`."""
    import tensorflow as tf

    a = tf.random.uniform((m, k))
    b = tf.random.uniform((k, n))
    repeats = max(1, int(2e9 / (2 * m * k * n)))  # about 2 GFLOP a call: timing overhead stays small

    @tf.function
    def run(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        total = tf.zeros((m, n))
        for _ in tf.range(repeats):
            total += tf.matmul(a, b)
        return total

    run(a, b).numpy()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        began = time.perf_counter()
        run(a, b).numpy()
        best = max(best, 2 * m * k * n * repeats / (time.perf_counter() - began) / 1e9)
    return best


def dltrain_examples_per_second(batch_size: int, work: Path) -> float:
    """Training examples/s of `dltrain train configs/fashion_mnist.yaml` in its second epoch."""
    out = work / f"batch-{batch_size}"
    subprocess.run([sys.executable, "-m", "dltrain", "train", str(ROOT / "configs" / "fashion_mnist.yaml"),
                    "--set", f"training.batch_size={batch_size}", "--set", "training.epochs=2", "--no-progress",
                    "--output-dir", str(out)], check=True, capture_output=True, cwd=ROOT)
    (run,) = out.iterdir()
    with (run / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    sizes = json.loads((run / "dataset.json").read_text())["sizes"]
    return sizes["train"] / float(rows[-1]["seconds"])


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="32,128")
    args = parser.parse_args(argv)
    flops = training_flops(LAYERS)
    peak = matmul_gflops(2048, 2048, 2048)
    work = Path(tempfile.mkdtemp(prefix="dltrain-limit-"))
    print(f"MLP training work: {flops:,} FLOPs per example; float32 matmul peak (2048³): {peak:.1f} GFLOP/s\n")
    print("| batch | matmul GFLOP/s at the MLP's shapes | limit examples/s (peak) | limit examples/s (shapes) "
          "| dltrain examples/s | % of peak | % of shape limit |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        # The forward matmul and the weight gradient's, the two largest of a step.
        shaped = min(matmul_gflops(batch, 784, 128), matmul_gflops(784, batch, 128))
        measured = dltrain_examples_per_second(batch, work)
        at_peak, at_shape = peak * 1e9 / flops, shaped * 1e9 / flops
        print(f"| {batch} | {shaped:.1f} | {at_peak:,.0f} | {at_shape:,.0f} | {measured:,.0f} | "
              f"{100 * measured / at_peak:.1f}% | {100 * measured / at_shape:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
