"""Dataset sources become splits (arrays in memory, or files streamed from disk), and splits become
`tf.data` pipelines. NumPy only at import: TensorFlow is imported where a pipeline is built."""

from dltrain.data.builtins import DATA_ENV, OFFLINE_ENV, read_idx, search_dirs
from dltrain.data.pipeline import (cache_file, check_memory_cache, damaged, examples, in_memory, is_data_error, tensors,
                                   to_dataset)
from dltrain.data.sources import describe, load
from dltrain.data.types import AnySplit, DatasetInfo, FileSplit, Preprocessing, Source, Split, Splits

__all__ = ["DATA_ENV", "OFFLINE_ENV", "AnySplit", "DatasetInfo", "FileSplit", "Preprocessing", "Source", "Split",
           "Splits", "cache_file", "check_memory_cache", "damaged", "describe", "examples", "in_memory", "is_data_error", "load", "read_idx",
           "search_dirs", "tensors", "to_dataset"]
