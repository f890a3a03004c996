"""Each worker of a multi-worker job reads its own files of a streamed training split (tf.data's
AutoShardPolicy.FILE, done here so that the (seed, epoch) order holds within each worker's part).

Every worker must take the same number of steps (each step's all-reduce waits for all of them), so each
trains on as many examples an epoch as the smallest part holds; the others leave out their last records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dltrain.data.types import AnySplit, FileSplit, RecordSplit


@dataclass
class WorkerPart:
    """This worker's part of the training split; `by_file` False: every worker reads it all (by data)."""

    split: AnySplit
    by_file: bool
    note: str | None = None


def _balanced(counts: np.ndarray, workers: int) -> list[list[int]]:
    """Shards dealt to workers, largest first to the one holding the fewest examples (ties: lowest index)."""
    parts: list[list[int]] = [[] for _ in range(workers)]
    held = np.zeros(workers, dtype=np.int64)
    for shard in sorted(range(len(counts)), key=lambda i: (-int(counts[i]), i)):
        worker = int(np.argmin(held))
        parts[worker].append(shard)
        held[worker] += int(counts[shard])
    return [sorted(p) for p in parts]


def worker_part(split: AnySplit, rank: int, workers: int) -> WorkerPart:
    """The training examples worker `rank` of `workers` reads: whole shards or image files, when there are at
    least as many files as workers; else all of them, each worker keeping its part of every batch."""
    if isinstance(split, RecordSplit):
        files = len(split.files)
        if files < workers:
            return WorkerPart(split, False, f"{files} shard{'s' if files > 1 else ''} for {workers} workers: sharded "
                                            "by data (every worker reads every shard and keeps its part of each "
                                            "batch); give at least one shard per worker to shard by file")
        parts = [split.shards(p) for p in _balanced(split.counts, workers)]
        equal = min(len(p) for p in parts)
        mine = parts[rank].take(slice(0, equal))
        left_out = len(split) - equal * workers
        return WorkerPart(mine, True,
                          f"sharded by file: {files} shards over {workers} workers, {len(mine.files)} read here; "
                          f"each worker trains on {equal:,} examples an epoch"
                          + (f" ({left_out:,} left out to keep the workers in step)" if left_out else ""))
    if isinstance(split, FileSplit):
        equal = len(split) // workers
        if equal == 0:
            return WorkerPart(split, False, None)
        left_out = len(split) - equal * workers
        return WorkerPart(split.take(np.arange(rank, len(split), workers)[:equal]), True,
                          f"sharded by file: {len(split):,} image files over {workers} workers, {equal:,} read here"
                          + (f" ({left_out:,} left out to keep the workers in step)" if left_out else ""))
    return WorkerPart(split, False, None)
