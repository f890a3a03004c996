"""Dataset sources become splits (arrays in memory, or files streamed from disk), and splits become
`tf.data` pipelines. NumPy only at import: TensorFlow is imported where a pipeline is built."""

from dltrain import lazy_face
from dltrain.data.builtins import DATA_ENV, OFFLINE_ENV, read_idx, search_dirs
from dltrain.data.pipeline import (cache_file, check_memory_cache, damaged, examples, in_memory, is_data_error, tensors,
                                   to_dataset)
from dltrain.data.sources import describe, load, raw_splits, same_test_split
from dltrain.data.tabular import named_columns
from dltrain.data.types import AnySplit, DatasetInfo, FileSplit, Preprocessing, Source, Split, Splits

# feed and epochs import TensorFlow: they load on first use.
__getattr__ = lazy_face(__name__, {
    "FitData": "feed", "MAX_SCORING_BATCH": "feed", "augment_batch": "feed", "evaluation_dataset": "feed",
    "fit_datasets": "feed", "scoring_batch_size": "feed", "targets": "feed", "EpochRandomness": "epochs",
})

__all__ = ["EpochRandomness", "FitData", "MAX_SCORING_BATCH", "augment_batch", "evaluation_dataset", "fit_datasets",
           "named_columns", "raw_splits", "same_test_split", "scoring_batch_size", "targets",
           "DATA_ENV", "OFFLINE_ENV", "AnySplit", "DatasetInfo", "FileSplit", "Preprocessing", "Source", "Split",
           "Splits", "cache_file", "check_memory_cache", "damaged", "describe", "examples", "in_memory", "is_data_error", "load", "read_idx",
           "search_dirs", "tensors", "to_dataset"]
