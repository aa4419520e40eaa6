"""ESPnet's streaming data loader, with transcripts that may be empty.

A target-absent example (the enrolled voice is not in the mixture) has an empty
transcript: its ``text`` line is the key alone.  ESPnet's map-style ``text`` reader
(``read_2columns_text``) accepts such a line, but its streaming dataset, which
``--collect_stats`` and decoding use, splits every line into key and value and stops
at one without a value.  Here the ``text`` files are read whole by the map-style
dataset, as the streaming dataset already does for the types it cannot stream; the
other files stream as before.
"""

from typing import Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import DataLoader

from espnet2.train.dataset import ESPnetDataset
from espnet2.train.iterable_dataset import DATA_TYPES as STREAMED_TYPES
from espnet2.train.iterable_dataset import IterableESPnetDataset


class IterableDatasetWithEmptyTranscripts(IterableESPnetDataset):
    """``IterableESPnetDataset`` that reads its ``text`` entries through ``ESPnetDataset``."""

    def __init__(self, path_name_type_list: Sequence[Tuple[str, str, str]], **kwargs):
        super().__init__(path_name_type_list, **kwargs)
        whole = [e for e in path_name_type_list if e[2] == "text" or e[2] not in STREAMED_TYPES]
        self.path_name_type_list = [e for e in self.path_name_type_list if e[2] != "text"]
        if whole:
            # The text is tokenised here; the preprocessor leaves an array as it is
            # when it runs again on the merged example.
            self.non_iterable_dataset = ESPnetDataset(path_name_type_list=whole, preprocess=self.preprocess,
                                                      float_dtype=self.float_dtype, int_dtype=self.int_dtype)


def build_streaming_iterator(task, data_path_and_name_and_type, preprocess_fn, collate_fn,
                             key_file: Optional[str] = None, batch_size: int = 1, dtype=np.float32,
                             num_workers: int = 1, allow_variable_data_keys: bool = False, ngpu: int = 0,
                             inference: bool = False) -> DataLoader:
    """What ``AbsTask.build_streaming_iterator`` builds, over the dataset above."""
    dataset = IterableDatasetWithEmptyTranscripts(data_path_and_name_and_type, float_dtype=dtype,
                                                  preprocess=preprocess_fn, key_file=key_file)
    task.check_task_requirements(dataset, allow_variable_data_keys, train=False, inference=inference)
    kwargs = dict(collate_fn=collate_fn) if collate_fn is not None else {}
    return DataLoader(dataset=dataset, batch_size=1 if dataset.apply_utt2category else batch_size,
                      pin_memory=ngpu > 0, num_workers=num_workers, **kwargs)
