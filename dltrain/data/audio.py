"""`audio`: class folders of `.wav` files, streamed from disk and decoded by TensorFlow (`tf.audio.decode_wav`).

The layout, class order and keys follow `keras.utils.audio_dataset_from_directory` (`sampling_rate`,
`output_sequence_length`); each example is float32 of shape (output_sequence_length, channels), cut or padded
with zeros at its end, as Keras does. The WAV headers are read when the folders are listed (not the samples),
so a file at another sampling rate, another channel count or with a damaged header is named before training.
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dltrain.config import AUDIO_SUFFIXES, DatasetConfig
from dltrain.data.images import class_folders, named
from dltrain.data.types import DatasetInfo, FileSplit, Source
from dltrain.errors import DataError

_READERS = 16
_LAYOUT = "expected one folder per class, e.g. <path>/yes/1.wav, <path>/no/2.wav"
# RIFF header (12 bytes), the smallest PCM fmt chunk (24) and the data chunk's header (8): a file shorter than
# this plus its samples' bytes is cut short.
_MIN_HEADER = 44


@dataclass(frozen=True)
class WavHeader:
    """What a WAV file's header says about its samples; `problem` when it cannot be read as 16-bit PCM."""

    rate: int = 0
    channels: int = 0
    frames: int = 0
    problem: str = ""


def read_header(path: str) -> WavHeader:
    """The header of one WAV file (Python's `wave` reads only the header), checked against its size."""
    try:
        with wave.open(path, "rb") as handle:
            rate, channels, width, frames = (handle.getframerate(), handle.getnchannels(),
                                             handle.getsampwidth(), handle.getnframes())
    except (OSError, EOFError, wave.Error) as error:
        return WavHeader(problem=f"not a WAV file ({error or type(error).__name__})")
    if width != 2:
        # tf.audio.decode_wav reads 16-bit PCM only.
        return WavHeader(problem=f"{8 * width}-bit samples; 16-bit PCM is read")
    if os.path.getsize(path) < _MIN_HEADER + frames * channels * width:
        return WavHeader(problem=f"cut short: its header promises {frames:,} frames")
    return WavHeader(rate, channels, frames)


def read_headers(paths: list[str]) -> list[WavHeader]:
    """Every file's header, read by threads (the time is the disk's)."""
    if not paths:
        return []
    with ThreadPool(min(_READERS, max(1, len(paths) // 64))) as pool:
        return pool.map(read_header, paths, chunksize=64)


def _wav_files(root: Path, class_names: list[str]) -> tuple[list[str], list[int]]:
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        found = [os.path.join(d, f) for d, _, files in sorted(os.walk(root / name), key=lambda w: w[0])
                 for f in sorted(files) if f.lower().endswith(AUDIO_SUFFIXES)]
        if not found:
            raise DataError(f"class folder '{name}' has no .wav files", key="dataset.path",
                            hint=f"put the class's .wav files in {root / name}, or move the folder out of {root}")
        paths += found
        labels += [index] * len(found)
    return paths, labels


def _first_header(root: Path, class_names: list[str]) -> tuple[str, WavHeader]:
    for name in class_names:
        for dirpath, _, files in sorted(os.walk(root / name), key=lambda w: w[0]):
            for file in sorted(files):
                if file.lower().endswith(AUDIO_SUFFIXES):
                    path = os.path.join(dirpath, file)
                    return path, read_header(path)
    raise DataError(f"'{root}' has no .wav files in its class folders", key="dataset.path", hint=_LAYOUT)


def describe(config: DatasetConfig) -> DatasetInfo:
    """Classes from the folder names; channels from the first file's header and, without
    output_sequence_length, the length from every header (no samples are read)."""
    root = Path(config.path or "")
    names = class_folders(root, _LAYOUT)
    length = config.output_sequence_length
    if length is None:
        paths, _ = _wav_files(root, names)
        headers = _checked(root, paths, read_headers(paths), config)[1]
        length, channels = max(h.frames for h in headers), headers[0].channels
    else:  # one header: the channels, and a first look at the rate
        path, header = _first_header(root, names)
        if header.problem:
            raise _bad(root, [os.path.relpath(path, root)], header.problem)
        if config.sampling_rate and header.rate != config.sampling_rate:
            raise _other_rate(path, header.rate, f"dataset.sampling_rate is {config.sampling_rate:,}")
        channels = header.channels
    return DatasetInfo(root.name, (int(length), int(channels)), len(names), names)


def _bad(root: Path, files: list[str], problem: str) -> DataError:
    more = f" (and {len(files) - 1:,} more)" if len(files) > 1 else ""
    return DataError(f"cannot read {root / files[0]}{more}: {problem}", key="dataset.path",
                     hint="replace or remove the damaged file, or set dataset.skip_damaged: true to leave such "
                          "files out (they are counted and named)")


def _other_rate(path: str, rate: int, expected: str) -> DataError:
    return DataError(f"{path} is sampled at {rate:,} Hz; {expected}", key="dataset.sampling_rate",
                     hint="resample the file (e.g. sox in.wav -r RATE out.wav), or set sampling_rate to the files' rate")


def _checked(root: Path, paths: list[str], headers: list[WavHeader], config: DatasetConfig
             ) -> tuple[list[int], list[WavHeader], list[str]]:
    """(indices of the files kept, their headers, notes): a damaged file is an error, or left out with
    skip_damaged; a file at another sampling rate or with another channel count is always an error."""
    damaged = [i for i, h in enumerate(headers) if h.problem]
    notes: list[str] = []
    if damaged and not config.skip_damaged:
        first = headers[damaged[0]].problem
        raise _bad(root, [os.path.relpath(paths[i], root) for i in damaged], first)
    if damaged:
        notes.append(f"skipped {len(damaged):,} of {len(paths):,} damaged .wav files: "
                     f"{named([os.path.relpath(paths[i], root) for i in damaged])}")
    kept = [i for i, h in enumerate(headers) if not h.problem]
    if not kept:
        raise DataError(f"none of the {len(paths):,} .wav files in '{root}' can be read", key="dataset.path",
                        hint="check the path and the files; 16-bit PCM WAV files are read")
    rate = config.sampling_rate or headers[kept[0]].rate
    channels = headers[kept[0]].channels
    for i in kept:
        header = headers[i]
        if header.rate != rate:
            raise _other_rate(paths[i], header.rate, f"dataset.sampling_rate is {rate:,}" if config.sampling_rate
                              else f"{os.path.relpath(paths[kept[0]], root)} is at {rate:,} Hz")
        if header.channels != channels:
            raise DataError(f"{paths[i]} has {header.channels} channel(s), {paths[kept[0]]} {channels}",
                            key="dataset.path", hint="give every file the same number of channels")
    return kept, [headers[i] for i in kept], notes


def decoder(length: int, channels: int) -> Callable[[Any], Any]:
    """A TF-ops-only function from a path tensor to float32 samples of shape (length, channels): cut at
    `length`, or padded with zeros after the end (Keras's audio_dataset_from_directory does the same)."""

    def read(path: Any) -> Any:
        import tensorflow as tf

        audio, _ = tf.audio.decode_wav(tf.io.read_file(path), desired_channels=channels)
        audio = audio[:length]
        audio = tf.pad(audio, [[0, length - tf.shape(audio)[0]], [0, 0]])
        return tf.ensure_shape(audio, (length, channels))

    return read


def read(config: DatasetConfig, seed: int) -> Source:
    """The .wav files of every class folder, streamed: paths and class indices in memory, headers checked."""
    root = Path(config.path or "")
    names = class_folders(root, _LAYOUT)
    paths, labels = _wav_files(root, names)
    kept, headers, notes = _checked(root, paths, read_headers(paths), config)
    length = config.output_sequence_length or max(h.frames for h in headers)
    channels = headers[0].channels
    info = DatasetInfo(root.name, (int(length), int(channels)), len(names), names, notes=notes,
                       sampling_rate=headers[0].rate)
    split = FileSplit(np.array([paths[i] for i in kept], dtype=str), np.array([labels[i] for i in kept], np.int32),
                      decoder(length, channels), info.input_shape, "float32")
    return Source(split, None, info)
