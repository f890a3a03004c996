"""Dataset sources become splits (arrays in memory, or files streamed from disk), and splits become
`tf.data` pipelines. NumPy only at import: TensorFlow is imported where a pipeline is built."""

from dltrain import lazy_face
from dltrain.data.audio import decoder as audio_decoder, read_header as read_wav_header
from dltrain.data.builtins import DATA_ENV, OFFLINE_ENV, read_idx, search_dirs
from dltrain.data.columns import input_name, named_columns
from dltrain.data.folds import assign_folds
from dltrain.data.pipeline import (cache_file, check_memory_cache, damaged, decoded_labels, examples, in_memory,
                                   is_data_error, tensors, to_dataset)
from dltrain.data.sources import describe, load, raw_splits, same_test_split
from dltrain.data.timeseries import file_windows
from dltrain.data.types import (AnySplit, ArrowSplit, DatasetInfo, FileSplit, Preprocessing, RecordSplit, Source,
                                Split, Splits, Streamed)

# feed and epochs import TensorFlow: they load on first use.
__getattr__ = lazy_face(__name__, {
    "FitData": "feed", "MAX_SCORING_BATCH": "feed", "augment_batch": "feed", "augment_masks": "feed", "evaluation_dataset": "feed",
    "fit_datasets": "feed", "scoring_batch_size": "feed", "targets": "feed", "EpochRandomness": "epochs",
})

__all__ = ["AnySplit", "ArrowSplit", "DATA_ENV", "DatasetInfo", "EpochRandomness", "FileSplit", "FitData",
           "MAX_SCORING_BATCH", "OFFLINE_ENV", "Preprocessing", "RecordSplit", "Source", "Split", "Splits",
           "Streamed", "assign_folds", "audio_decoder", "augment_batch", "augment_masks", "cache_file",
           "check_memory_cache", "damaged", "decoded_labels", "describe", "evaluation_dataset", "examples",
           "file_windows", "fit_datasets", "in_memory", "input_name", "is_data_error", "load", "named_columns",
           "raw_splits", "read_idx", "read_wav_header", "same_test_split", "scoring_batch_size", "search_dirs",
           "targets", "tensors", "to_dataset"]
