"""ONNX export of an exported model folder, with its parity proven before it is written.

``embedding_model.onnx`` holds the whole front-end and encoder: 16 kHz waveforms
``wavs (B, T)`` float32 and relative ``lengths (B,)`` -> ``embeddings (B, D)``, with a
dynamic batch and time axis (opset 18, torch's ``dynamo`` exporter): SpeechBrain's Fbank
(its STFT included), the feature normaliser as trained, the encoder. Only one change is made
for the export, and it computes the same values: SpeechBrain's ``length_to_mask`` expands its
mask to ``len(lengths)`` rows, a Python integer that fixes the batch size in the graph; during
the export it broadcasts instead.

Before the file is written, onnxruntime and PyTorch embed a few files of the run's own
data, one at a time and as one padded batch; a largest difference above ``tolerance``
refuses the export (nothing is written) and says where it was found.
"""

import contextlib
import json
import os

import numpy as np
import torch
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.audio import load_audio
from speechbrain_moco.verification.exported import ONNX_NAME, EmbeddingGraph, exported_modules

logger = get_logger(__name__)

OPSET = 18
ONNX_CARD = """
## ONNX (onnxruntime alone)

`embedding_model.onnx` holds the front-end (80 log Mel filterbanks of SpeechBrain's Fbank, the
trained feature normaliser) and the encoder: a 16 kHz mono float32 waveform batch `wavs`
(batch, time) and its relative `lengths` (batch,: 1.0 for an unpadded row) give `embeddings`
(batch, {dim}). Largest difference to the PyTorch model on {n_files} files of the run's data:
{max_diff:.1e}. Scores are cosines of the embeddings; decide at `threshold.json`'s threshold:

```python
import numpy as np, onnxruntime as ort, soundfile as sf

session = ort.InferenceSession("embedding_model.onnx")

def embedding(path):
    wav, rate = sf.read(path, dtype="float32")  # 16 kHz mono
    out = session.run(None, {{"wavs": wav[None], "lengths": np.ones(1, np.float32)}})[0][0]
    return out / np.linalg.norm(out)

score = float(embedding("a.wav") @ embedding("b.wav"))
```
"""


def _broadcast_mask(length, max_len=None, dtype=None, device=None):
    """SpeechBrain's ``length_to_mask`` with a broadcast instead of ``expand(len(length), ...)``."""
    if max_len is None:
        max_len = length.max().long().item()
    mask = torch.arange(max_len, device=length.device, dtype=length.dtype).unsqueeze(0) < length.unsqueeze(1)
    return mask.to(dtype=dtype or length.dtype, device=device or length.device)


@contextlib.contextmanager
def exportable_masks():
    """Within the block, the encoders' masks keep the batch size symbolic."""
    import speechbrain.lobes.models.ECAPA_TDNN as ecapa

    saved = ecapa.length_to_mask
    ecapa.length_to_mask = _broadcast_mask
    try:
        yield
    finally:
        ecapa.length_to_mask = saved


def onnx_embeddings(session, wavs, lengths):
    """Embeddings of a batch through an onnxruntime session (NumPy in, NumPy out)."""
    feed = {"wavs": np.asarray(wavs, dtype=np.float32), "lengths": np.asarray(lengths, dtype=np.float32)}
    return session.run(None, feed)[0]


def parity(graph, session, wavs):
    """Largest absolute difference between PyTorch and onnxruntime embeddings of ``wavs``
    (a list of 1-D tensors): each alone, then all of them as one zero-padded batch.
    Returns ``(largest difference, where)``."""
    worst, where = 0.0, None
    with torch.no_grad():
        for i, wav in enumerate(wavs):
            ref = graph(wav[None], torch.ones(1)).numpy()
            diff = float(np.abs(onnx_embeddings(session, wav[None].numpy(), [1.0]) - ref).max())
            if diff > worst:
                worst, where = diff, f"file {i} alone"
        longest = max(w.numel() for w in wavs)
        batch = torch.zeros(len(wavs), longest)
        for i, wav in enumerate(wavs):
            batch[i, : wav.numel()] = wav
        lengths = torch.tensor([w.numel() / longest for w in wavs])
        ref = graph(batch, lengths).numpy()
        diff = float(np.abs(onnx_embeddings(session, batch.numpy(), lengths.numpy()) - ref).max())
        if diff > worst:
            worst, where = diff, "the padded batch"
    return worst, where


def export_onnx(model_dir, check_paths, tolerance=1e-4, sample_rate=16000):
    """Write ``model_dir/embedding_model.onnx`` when its embeddings of ``check_paths`` equal
    PyTorch's to ``tolerance``; returns the parity record (also ``model_dir/onnx.json``).

    Raises
    ------
    ValueError
        When onnxruntime and PyTorch disagree (nothing is written), or without files.
    """
    import onnxruntime as ort

    if not check_paths:
        raise ValueError("the ONNX parity check needs audio files of the run's data")
    _, feats, norm, encoder = exported_modules(model_dir)
    graph = EmbeddingGraph(feats, norm, encoder).eval()
    wavs = [load_audio(p, sample_rate) for p in check_paths]
    example = 0.1 * torch.randn(2, sample_rate, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=4096)
    time = torch.export.Dim("time", min=sample_rate // 10, max=sample_rate * 3600)
    final, tmp = os.path.join(model_dir, ONNX_NAME), os.path.join(model_dir, ONNX_NAME + ".tmp")
    with exportable_masks(), torch.no_grad():
        torch.onnx.export(
            graph,
            (example, torch.ones(example.shape[0])),
            tmp,
            input_names=["wavs", "lengths"],
            output_names=["embeddings"],
            dynamic_shapes=({0: batch, 1: time}, {0: batch}),
            dynamo=True,
            opset_version=OPSET,
            external_data=False,
        )
    session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
    worst, where = parity(graph, session, wavs)
    if not worst <= tolerance:
        os.remove(tmp)
        raise ValueError(
            f"ONNX and PyTorch embeddings differ by {worst:.2e} on {where} (tolerance {tolerance:g}): "
            f"{ONNX_NAME} not written"
        )
    os.replace(tmp, final)
    record = {
        "file": ONNX_NAME,
        "opset": OPSET,
        "inputs": {"wavs": "float32 (batch, time), 16 kHz", "lengths": "float32 (batch,), relative"},
        "outputs": {"embeddings": f"float32 (batch, {int(graph(wavs[0][None], torch.ones(1)).shape[1])})"},
        "parity_files": [os.path.basename(p) for p in check_paths],
        "max_abs_difference": worst,
        "tolerance": tolerance,
    }
    with open(os.path.join(model_dir, "onnx.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    card = os.path.join(model_dir, "README.md")
    if os.path.isfile(card):
        dim = record["outputs"]["embeddings"].split(", ")[1].rstrip(")")
        with open(card, "a", encoding="utf-8") as f:
            f.write(ONNX_CARD.format(dim=dim, n_files=len(check_paths), max_diff=worst))
    logger.info("%s written: parity %.2e on %d files", final, worst, len(check_paths))
    return record
