"""Start-up checks that turn misconfigurations into clear errors before training."""

import torch
from speechbrain.utils.logger import get_logger

from speechbrain_moco.encoder import check_embedding

logger = get_logger(__name__)


@torch.no_grad()
def check_encoder(features, encoder, queue_dim, sample_rate, device):
    """Run the encoder on 1 s of silence; check its output contract and size."""
    was_training = encoder.training
    encoder.eval()
    wavs = torch.zeros(2, sample_rate, device=device)
    lens = torch.ones(2, device=device)
    out = encoder(features(wavs, lens), lens)
    encoder.train(was_training)
    dim = check_embedding(out, 2).shape[1]
    if dim != queue_dim:
        raise ValueError(
            f"the encoder gives {dim}-d embeddings but the queue holds "
            f"{queue_dim}-d keys: set emb_dim consistently"
        )


def check_crops(durations, crop_seconds):
    """Refuse a crop longer than every utterance of the manifest."""
    if not durations:
        raise ValueError("the training manifest has no utterance")
    longest = max(durations)
    if longest < crop_seconds:
        raise ValueError(
            f"crop_seconds={crop_seconds} is longer than every training utterance "
            f"(longest {longest:.2f} s): lower --crop_seconds"
        )


def check_batch(n_utts, batch_size, world):
    """Refuse a training set smaller than one global batch (the loader drops the last one)."""
    if n_utts < batch_size * world:
        raise ValueError(
            f"the training set has {n_utts} utterances, fewer than one global "
            f"batch ({batch_size} x {world} processes): lower --batch_size"
        )


def check_queue(queue_size, batch_size, world, n_utts):
    """Refuse a queue smaller than the global batch; warn when it holds more keys than
    there are training utterances.

    Returns the warning text (``None`` when there is none).
    """
    if queue_size < batch_size * world:
        raise ValueError(
            f"queue_size={queue_size} is smaller than the global batch "
            f"({batch_size} x {world}): every step would overwrite the whole queue"
        )
    if queue_size >= n_utts:
        text = (
            f"queue_size={queue_size} >= {n_utts} training utterances: every query meets a key "
            "of its own utterance (from an earlier epoch) among its negatives; a queue well "
            "below the number of utterances avoids it (e.g. --queue_size="
            + f"{max(batch_size * world, n_utts // 4)})"
        )
        logger.warning(text)
        return text
    return None


def is_architecture_mismatch(err):
    """True for the errors ``load_state_dict`` raises on another architecture."""
    text = str(err)
    return any(k in text for k in ("size mismatch", "Missing key", "Unexpected key"))
