"""dltrain against a plain KerasHub script (keras.io's way) fine-tuning the same BERT preset on the same texts.

The peer is written as keras.io's KerasHub guides write it: `keras.utils.text_dataset_from_directory` (a
batched tf.data of strings), `TextClassifier.from_preset(preset, num_classes=2)`, the preprocessor's
sequence length set, `fit(train, epochs=...)`, then `evaluate(test)`. dltrain trains the same preset on the
same folders (no validation split; `test:` is the same test folder) with the same batch and epochs. Each
repetition runs both in fresh subprocesses, alternating which goes first.

    python benchmarks/hub.py                 # tiny BERT (2 layers, hidden 16) and BERT 4x256, 2 reps
    python benchmarks/hub.py --models tiny --reps 1 --examples 512

Columns: whole process (spawn to exit, imports and the test evaluation included); examples/s = training
examples / median epoch seconds (on_epoch_begin to on_epoch_end of a callback both get); × peer.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MODELS = {"tiny": {"layers": 2, "hidden": 16, "heads": 2}, "bert4x256": {"layers": 4, "hidden": 256, "heads": 4}}


def _epoch_timer(record: dict):
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            record.setdefault("epoch_seconds", []).append(time.perf_counter() - self.began)

    return EpochTimer()


def child_peer(result: str, preset: str, train: str, test: str, epochs: int, batch: int, length: int) -> None:
    """The keras.io way: a batched tf.data of strings from the folders, from_preset, fit, evaluate."""
    record: dict = {}
    import keras
    import keras_hub

    train_ds = keras.utils.text_dataset_from_directory(train, batch_size=batch, seed=1)
    test_ds = keras.utils.text_dataset_from_directory(test, batch_size=batch, shuffle=False)
    classifier = keras_hub.models.TextClassifier.from_preset(preset, num_classes=2)
    classifier.preprocessor.sequence_length = length
    classifier.fit(train_ds, epochs=epochs, callbacks=[_epoch_timer(record)])
    record["test"] = classifier.evaluate(test_ds, return_dict=True)
    Path(result).write_text(json.dumps(record))


def child_dltrain(result: str, args: list[str]) -> None:
    """`dltrain ARGS` with an epoch timer added to Keras's fit (dltrain's code untouched)."""
    record: dict = {}
    import keras

    fit = keras.Model.fit

    def timed_fit(self, *a, **k):
        k["callbacks"] = [*(k.get("callbacks") or []), _epoch_timer(record)]
        return fit(self, *a, **k)

    keras.Model.fit = timed_fit
    from dltrain.cli import app

    try:
        app(args, standalone_mode=False)
    finally:
        Path(result).write_text(json.dumps(record))


def make_data(folder: Path, examples: int, words: list[str]) -> None:
    """An aclImdb-style folder: train/{neg,pos} and test/{neg,pos} of short reviews of random words."""
    rng = random.Random(0)
    for split, count in (("train", examples), ("test", examples // 4)):
        for i in range(count):
            label = ("neg", "pos")[i % 2]
            text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 60)))
            (folder / split / label).mkdir(parents=True, exist_ok=True)
            (folder / split / label / f"{i}.txt").write_text(("good " if label == "pos" else "bad ") + text)


def config(folder: Path, preset: Path, epochs: int, batch: int, length: int) -> Path:
    path = folder / "bench.yaml"
    path.write_text(f"""name: hub-bench
seed: 1
dataset: {{path: {folder / 'data' / 'train'}, validation_split: 0.0, test: {{path: {folder / 'data' / 'test'}}}}}
model:
  task:
    TextClassifier: {{preset: {preset}, num_classes: 2, sequence_length: {length}}}
training: {{epochs: {epochs}, batch_size: {batch}, tensorboard: false}}
""")
    return path


def timed(command: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=argparse.REMAINDER)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args()
    if args.child:
        kind, result, *rest = args.child
        if kind == "peer":
            preset, train, test, epochs, batch, length = rest
            child_peer(result, preset, train, test, int(epochs), int(batch), int(length))
        else:
            child_dltrain(result, rest)
        return
    import hub_presets

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_data(work / "data", args.examples, hub_presets.WORDS)
        for name in args.models:
            preset = work / name
            subprocess.run([sys.executable, "-c", "import sys; sys.path[:0] = sys.argv[1:3]; import hub_presets; "
                            f"hub_presets.bert_classifier(__import__('pathlib').Path(sys.argv[3]), hidden={MODELS[name]['hidden']}, "
                            f"layers={MODELS[name]['layers']}, heads={MODELS[name]['heads']}, max_length=512)",
                            str(ROOT), str(ROOT / "tests"), str(preset)], check=True, capture_output=True)
            cfg = config(work, preset, args.epochs, args.batch, args.length)
            found: dict[str, list] = {"peer": [], "dltrain": []}
            for rep in range(args.reps):
                order = ["peer", "dltrain"] if rep % 2 == 0 else ["dltrain", "peer"]
                for tool in order:
                    result = work / f"{tool}.json"
                    if tool == "peer":
                        command = [sys.executable, __file__, "--child", "peer", str(result), str(preset),
                                   str(work / "data" / "train"), str(work / "data" / "test"), str(args.epochs),
                                   str(args.batch), str(args.length)]
                    else:
                        command = [sys.executable, __file__, "--child", "dltrain", str(result), "train", str(cfg),
                                   "--no-progress", "--output-dir", str(work / "outputs")]
                    wall = timed(command, work)
                    record = json.loads(result.read_text())
                    found[tool].append((wall, statistics.median(record["epoch_seconds"])))
            for tool in ("peer", "dltrain"):
                wall = statistics.median(w for w, _ in found[tool])
                epoch = statistics.median(e for _, e in found[tool])
                rows.append((name, tool, wall, args.examples / epoch))
    print("| model | tool | whole process s | examples/s | × peer |")
    print("|---|---|---|---|---|")
    peers = {name: speed for name, tool, _, speed in rows if tool == "peer"}
    for name, tool, wall, speed in rows:
        print(f"| {name} | {tool} | {wall:.1f} | {speed:,.0f} | {speed / peers[name]:.2f} |")


if __name__ == "__main__":
    main()
