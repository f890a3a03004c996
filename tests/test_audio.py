"""Audio folders (`format: audio`) on tiny .wav files written here with Python's `wave` module: a low and a
high sine tone, one class each."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, SYNTHETIC, cli
from dltrain import data
from dltrain.config import DatasetConfig
from dltrain.errors import ConfigError, DataError
from dltrain.load import load_config

RATE = 8000
TONES = {"high": 1500.0, "low": 300.0}


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE, width: int = 2, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


def tone(frequency: float, length: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / RATE
    wave_ = 0.5 * np.sin(2 * np.pi * frequency * (1 + 0.05 * rng.standard_normal()) * t + rng.uniform(0, 6))
    return ((wave_ + 0.05 * rng.standard_normal(length)) * 32767).astype(np.int16)


def make_folder(root: Path, per_class: int = 16, length: int = 800, seed: int = 0) -> Path:
    """root/<low|high>/NNN.wav: per_class tones of each class, 16-bit mono at RATE; every 4th one shorter."""
    rng = np.random.default_rng(seed)
    for name, frequency in TONES.items():
        for i in range(per_class):
            write_wav(root / name / f"{i:03d}.wav", tone(frequency, length - 100 * (i % 4 == 3), rng))
    return root


def dataset(root: Path, **keys) -> DatasetConfig:
    return DatasetConfig(path=str(root), **{"test_split": 0.25, **keys})


def load_error(config: DatasetConfig) -> DataError:
    with pytest.raises(DataError) as info:
        data.load(config, 0)
    return info.value


def test_config_errors(write_config):
    config = write_config(SYNTHETIC.replace("  input_shape: [8]\n", "  input_shape: [8]\n  sampling_rate: 16000\n"))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value) == (f"{config}:6:3: dataset.sampling_rate: 'sampling_rate' does not apply to the synthetic "
                               "dataset (remove it; it applies to: audio, timeseries)")
    config = write_config(SYNTHETIC.replace("  name: synthetic\n  input_shape: [8]\n  num_classes: 3\n",
                                            "  path: sounds\n  format: audio\n  sampling_rate: 0\n"))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value) == f"{config}:6:3: dataset.sampling_rate: expected a number >= 1, got 0"


def test_folder_is_inferred_streamed_cut_and_padded(tmp_path: Path):
    root = make_folder(tmp_path / "speech", per_class=4)
    config = dataset(root, output_sequence_length=700, validation_split=0.0)
    assert config.kind == "audio"
    info = data.describe(config)
    assert (info.input_shape, info.num_classes, info.class_names) == ((700, 1), 2, ["high", "low"])
    source = data.load(config, 0)
    assert source.info.sampling_rate == RATE and isinstance(source.train, data.FileSplit)
    train = data.in_memory(source.train)
    assert train.x.shape == (6, 700, 1) and train.x.dtype == np.float32
    # decode_wav's scale (int16 / 32768), cut at 700 samples; the 700-sample file is padded with zeros.
    with wave.open(str(source.train.paths[0])) as handle:
        raw = np.frombuffer(handle.readframes(handle.getnframes()), np.int16)
    np.testing.assert_array_equal(train.x[0, :, 0], raw[:700] / 32768)
    # Without output_sequence_length, the longest file's length (from the headers).
    assert data.describe(dataset(root)).input_shape == (800, 1)


def test_other_rate_damaged_and_skipped_files_are_named(tmp_path: Path):
    root = make_folder(tmp_path / "speech", per_class=4)
    other = write_wav(root / "low" / "016k.wav", np.zeros(800, np.int16), rate=16000)
    error = load_error(dataset(root, sampling_rate=RATE))
    assert (error.key, error.message) == ("dataset.sampling_rate", f"{other} is sampled at 16,000 Hz; "
                                                                  "dataset.sampling_rate is 8,000")
    with pytest.raises(DataError) as info:  # `dltrain check` reads one header: the first file's rate
        data.describe(dataset(root, sampling_rate=16000, output_sequence_length=800))
    assert info.value.message == f"{root / 'high' / '000.wav'} is sampled at 8,000 Hz; dataset.sampling_rate is 16,000"
    error = load_error(dataset(root))  # no sampling_rate: the files must agree with the first
    assert error.message == f"{other} is sampled at 16,000 Hz; high/000.wav is at 8,000 Hz"
    other.unlink()
    cut = root / "high" / "001.wav"
    cut.write_bytes(cut.read_bytes()[:900])
    (root / "low" / "junk.wav").write_bytes(b"not a sound at all, just bytes")
    write_wav(root / "low" / "eight.wav", np.zeros(800, np.uint8), width=1)
    error = load_error(dataset(root))
    assert error.message == f"cannot read {cut} (and 2 more): cut short: its header promises 800 frames"
    assert error.hint.endswith("or set dataset.skip_damaged: true to leave such files out (they are counted and named)")
    splits = data.load(dataset(root, skip_damaged=True, validation_split=0.0), 0)
    assert splits.info.notes[0] == ("skipped 3 of 10 damaged .wav files: high/001.wav, low/eight.wav, low/junk.wav")
    assert sum(splits.info.sizes.values()) == 7


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shipped 1-D conv config trained on the tones (once for the tests below): (data root, run folder)."""
    tmp = tmp_path_factory.mktemp("audio")
    root = make_folder(tmp / "speech", per_class=16)
    result = cli("train", CONFIGS / "audio_conv1d.yaml", "--output-dir", tmp / "out", "--no-progress",
                 "--set", f"dataset.path={root}", "--set", f"dataset.sampling_rate={RATE}",
                 "--set", "dataset.output_sequence_length=800", "--set", "training.epochs=4",
                 "--set", "training.batch_size=8", "--set", "optimizer.Adam.learning_rate=0.01",
                 "--set", "training.tensorboard=false")
    assert result.exit_code == 0, result.output
    return root, Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))


def test_conv1d_tells_the_tones_apart_and_evaluates(trained: tuple[Path, Path]):
    _, run = trained
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test["accuracy"] >= 0.875, test  # two classes: chance is 0.5
    described = json.loads((run / "dataset.json").read_text())
    assert (described["sampling_rate"], described["input_shape"]) == (RATE, [800, 1])
    evaluated = cli("evaluate", run, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout) == pytest.approx(test, abs=1e-5)


def test_predict_takes_wav_files(trained: tuple[Path, Path], tmp_path: Path):
    root, run = trained
    rng = np.random.default_rng(9)
    files = [write_wav(tmp_path / f"{name}.wav", tone(frequency, 800, rng)) for name, frequency in TONES.items()]
    result = cli("predict", run, *files, "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in rows[1:]] == [["high.wav", "high"], ["low.wav", "low"]]
    fast = write_wav(tmp_path / "fast.wav", np.zeros(800, np.int16), rate=16000)
    refused = cli("predict", run, fast)
    assert refused.exit_code == 1
    assert refused.stderr == (f"error: {fast} is sampled at 16,000 Hz; the model was trained on 8,000 Hz (resample "
                              "it to 8,000 Hz (e.g. sox in.wav -r 8000 out.wav))\n")
