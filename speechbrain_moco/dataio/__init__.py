"""Data: audio files, manifests and trial lists, crops and datasets, several sources, bad
audio, the memory-mapped audio cache, and the per-row augmentation of the views.

Manifest contract (``ID,duration,wav,start,stop,spk_id``): :mod:`.manifest`.
"""

from speechbrain_moco.dataio.audio import (
    AUDIO_EXTENSIONS,
    AudioError,
    audio_frames,
    find_audio_files,
    load_audio,
)
from speechbrain_moco.dataio.audio_cache import AudioCache, attach_audio_cache
from speechbrain_moco.dataio.augment import Augmentation, RandomAugment
from speechbrain_moco.dataio.corruption import AddNoiseBank, AddReverbFFT, synthetic_rirs
from speechbrain_moco.dataio.crops import TwoCrops
from speechbrain_moco.dataio.datasets import (
    drop_short,
    labelled_crop_dataset,
    manifest_durations,
    stack_views,
    two_view_dataset,
    utterance_dataset,
    validation_manifest,
)
from speechbrain_moco.dataio.manifest import (
    MANIFEST_FIELDS,
    manifest_row,
    options_match,
    read_csv,
    read_manifest,
    save_options,
    utterance_id,
    write_csv,
    write_manifest,
)
from speechbrain_moco.dataio.preparation import run_preparation
from speechbrain_moco.dataio.sources import SkippingDataset, count_skipped, multi_source_dataset
from speechbrain_moco.dataio.spectral import RandomEQ, RandomGain, SpeedPerturbRows
from speechbrain_moco.dataio.trials import (
    balanced_trials,
    iter_trials,
    parse_trial_line,
    read_trial_ids,
    read_trials,
    trial_ids,
    trial_list_path,
    trial_manifest,
    write_trials,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "AddNoiseBank",
    "AddReverbFFT",
    "AudioCache",
    "AudioError",
    "Augmentation",
    "MANIFEST_FIELDS",
    "RandomAugment",
    "RandomEQ",
    "RandomGain",
    "SkippingDataset",
    "SpeedPerturbRows",
    "TwoCrops",
    "attach_audio_cache",
    "audio_frames",
    "balanced_trials",
    "count_skipped",
    "drop_short",
    "find_audio_files",
    "iter_trials",
    "labelled_crop_dataset",
    "load_audio",
    "manifest_durations",
    "manifest_row",
    "multi_source_dataset",
    "options_match",
    "parse_trial_line",
    "read_csv",
    "read_manifest",
    "read_trial_ids",
    "read_trials",
    "run_preparation",
    "save_options",
    "stack_views",
    "synthetic_rirs",
    "trial_ids",
    "trial_list_path",
    "trial_manifest",
    "two_view_dataset",
    "validation_manifest",
    "utterance_dataset",
    "utterance_id",
    "write_csv",
    "write_manifest",
    "write_trials",
]
