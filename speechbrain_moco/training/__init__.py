"""Training: the Brains (``MoCoBrain`` without labels and its SSPS variant ``SSPSBrain``,
``SpeakerBrain`` with labels or
pseudo-labels, both on ``EmbeddingBrain``'s loop), atomic checkpoints, the learning-rate
schedule, the optimiser step, start-up checks and ``init_from``. What a run folder holds is
:mod:`speechbrain_moco.run_folder`."""

from speechbrain_moco.training.checkpoint import AtomicCheckpointer, RNGState
from speechbrain_moco.training.checks import check_batch, check_crops, check_encoder, check_queue
from speechbrain_moco.training.embedding_brain import EmbeddingBrain
from speechbrain_moco.training.init_from import check_init_features, load_encoder_init
from speechbrain_moco.training.moco_brain import MoCoBrain
from speechbrain_moco.training.schedule import warmup_cosine
from speechbrain_moco.training.speaker_brain import SpeakerBrain, init_schedule
from speechbrain_moco.training.ssps_brain import SSPSBrain
from speechbrain_moco.training.steps import SafeStepMixin

__all__ = [
    "AtomicCheckpointer",
    "EmbeddingBrain",
    "MoCoBrain",
    "RNGState",
    "SafeStepMixin",
    "SpeakerBrain",
    "SSPSBrain",
    "check_batch",
    "check_crops",
    "check_encoder",
    "check_init_features",
    "check_queue",
    "init_schedule",
    "load_encoder_init",
    "warmup_cosine",
]
