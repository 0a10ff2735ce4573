"""ONNX export of an exported model folder, with its parity proven before it is written.

``embedding_model.onnx`` holds the whole front-end and encoder: 16 kHz waveforms
``wavs (B, T)`` float32 and relative ``lengths (B,)`` -> ``embeddings (B, D)``, with a
dynamic batch and time axis (opset 18, torch's ``dynamo`` exporter): SpeechBrain's Fbank
(its STFT included), the feature normaliser as trained, the encoder. Two changes are made
for the export, and both compute the same values: SpeechBrain's ``length_to_mask`` expands its
mask to ``len(lengths)`` rows, a Python integer that fixes the batch size in the graph, so
during the export it broadcasts instead; and the STFT is written as a strided convolution
with a windowed DFT basis (:class:`ConvSTFT`), because onnxruntime's own STFT operator is
about 15x slower than torch's. The parity check below compares the written graph with the
unchanged PyTorch model.

Before the file is written, onnxruntime and PyTorch embed a few files of the run's own
data, one at a time and as one padded batch; a largest difference of the length-normalised
embeddings (what a cosine score sees) above ``tolerance`` refuses the export (nothing is
written) and says where it was found.
"""

import contextlib
import json
import os

import numpy as np
import torch
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.audio import load_audio
from speechbrain_moco.verification.embeddings import zero_padded
from speechbrain_moco.verification.exported import ONNX_NAME, EmbeddingGraph, exported_modules

logger = get_logger(__name__)

OPSET = 18
ONNX_CARD = """
## ONNX (onnxruntime alone)

`embedding_model.onnx` holds the front-end (80 log Mel filterbanks of SpeechBrain's Fbank, the
trained feature normaliser) and the encoder: a 16 kHz mono float32 waveform batch `wavs`
(batch, time) and its relative `lengths` (batch,: 1.0 for an unpadded row) give `embeddings`
(batch, {dim}). Largest difference to the PyTorch model's length-normalised embeddings on
{n_files} files of the run's data: {max_diff:.1e}. Scores are cosines of the embeddings;
decide at `threshold.json`'s threshold:

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


class ConvSTFT(torch.nn.Module):
    """SpeechBrain's :class:`~speechbrain.processing.features.STFT` as a strided convolution
    with a windowed DFT basis: the same values (to float32 rounding), in the layout SpeechBrain
    returns, ``(batch, frames, n_fft // 2 + 1, 2)``.

    Why: torch's exporter writes ``torch.stft`` as ONNX's ``STFT`` operator, which onnxruntime
    runs about 15x slower than torch (measured: 0.70 s against 0.046 s for the features of 40
    files, 64 % of the whole graph's time), so the ONNX model was slower than PyTorch although
    its encoder ran faster. A convolution is among onnxruntime's fastest operators.

    Example
    -------
    >>> from speechbrain.processing.features import STFT
    >>> stft = STFT(sample_rate=16000)
    >>> x = torch.randn(2, 8000)
    >>> bool(torch.allclose(ConvSTFT(stft)(x), stft(x), atol=1e-3))
    True
    """

    def __init__(self, stft):
        super().__init__()
        if not stft.onesided:
            raise ValueError("ConvSTFT: only a one-sided STFT is exported")
        n_fft, win = stft.n_fft, stft.win_length
        window = torch.zeros(n_fft, dtype=torch.float64)
        left = (n_fft - win) // 2  # torch.stft centres a shorter window in the n_fft frame
        window[left : left + win] = stft.window.to(torch.float64)
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * torch.pi * k * n / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
        if stft.normalized_stft:
            basis = basis / n_fft**0.5
        self.register_buffer("basis", basis.float()[:, None, :])
        self.n_fft, self.hop, self.center, self.pad_mode = n_fft, stft.hop_length, stft.center, stft.pad_mode

    def forward(self, x):
        """``x (batch, time)`` -> ``(batch, frames, freq, 2)``."""
        x = x[:, None, :]
        if self.center:
            pad = self.n_fft // 2
            x = torch.nn.functional.pad(x, (pad, pad), mode=self.pad_mode)
        out = torch.nn.functional.conv1d(x, self.basis, stride=self.hop)  # (B, 2F, frames)
        out = out.reshape(out.shape[0], 2, self.basis.shape[0] // 2, out.shape[-1])
        return out.permute(0, 3, 2, 1)


def exportable_copy(graph):
    """A copy of ``graph`` for the exporter, every SpeechBrain STFT replaced by a ConvSTFT."""
    import copy

    from speechbrain.processing.features import STFT

    graph = copy.deepcopy(graph)
    for parent in list(graph.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, STFT):
                setattr(parent, name, ConvSTFT(child))
    return graph


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


def unit(emb):
    """Rows scaled to length 1 (what a cosine score sees)."""
    emb = np.asarray(emb, dtype=np.float64)
    return emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)


def parity(graph, session, wavs):
    """How far onnxruntime's embeddings of ``wavs`` (a list of 1-D tensors) are from PyTorch's:
    each file alone, then all of them as one zero-padded batch.

    The criterion is the largest absolute difference of the length-normalised embeddings,
    which bounds what a cosine score can see and does not grow with the embedding's scale (a
    trained ECAPA's embeddings have norms of 60-100, where float32 rounding of the STFT and the
    log-Mel alone moves single raw coordinates by about 4e-4 while the cosine moves by 1e-7).
    Returns ``{"max_abs_difference": that largest difference, "where": the file or batch,
    "max_abs_difference_raw": the same on the raw embeddings, "median_norm": the raw norm}``.
    """
    worst, where, raw, norms = 0.0, None, 0.0, []

    def compare(ref, out, label):
        nonlocal worst, where, raw
        diff = float(np.abs(unit(out) - unit(ref)).max())
        raw = max(raw, float(np.abs(out - ref).max()))
        norms.extend(np.linalg.norm(ref, axis=-1).tolist())
        if diff > worst or where is None:
            worst, where = diff, label

    with torch.no_grad():
        for i, wav in enumerate(wavs):
            ref = graph(wav[None], torch.ones(1)).numpy()
            compare(ref, onnx_embeddings(session, wav[None].numpy(), [1.0]), f"file {i} alone")
        batch, lengths = zero_padded(wavs)
        ref = graph(batch, lengths).numpy()
        compare(ref, onnx_embeddings(session, batch.numpy(), lengths.numpy()), "the padded batch")
    return {
        "max_abs_difference": worst,
        "where": where,
        "max_abs_difference_raw": raw,
        "median_norm": float(np.median(norms)),
    }


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
            exportable_copy(graph),
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
    check = parity(graph, session, wavs)
    worst = check["max_abs_difference"]
    if not worst <= tolerance:
        os.remove(tmp)
        raise ValueError(
            f"ONNX and PyTorch length-normalised embeddings differ by {worst:.2e} on {check['where']} "
            f"(tolerance {tolerance:g}): {ONNX_NAME} not written"
        )
    os.replace(tmp, final)
    record = {
        "file": ONNX_NAME,
        "opset": OPSET,
        "inputs": {"wavs": "float32 (batch, time), 16 kHz", "lengths": "float32 (batch,), relative"},
        "outputs": {"embeddings": f"float32 (batch, {int(graph(wavs[0][None], torch.ones(1)).shape[1])})"},
        "parity_files": [os.path.basename(p) for p in check_paths],
        "max_abs_difference": worst,
        "compared": "length-normalised embeddings (each file alone, and all as one padded batch)",
        "max_abs_difference_raw": check["max_abs_difference_raw"],
        "median_embedding_norm": check["median_norm"],
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
