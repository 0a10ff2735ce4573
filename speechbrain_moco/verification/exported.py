"""An exported model folder (``python -m speechbrain_moco.export``) as an embedding function,
in PyTorch or in onnxruntime.

Both take 16 kHz waveforms ``(B, T)`` with relative lengths ``(B,)`` and return ``(B, D)``
embeddings of the whole of each row: the same Fbank, feature normaliser and encoder as the
training run's scoring (``verify.py``), so an exported model scores a trial list as the
recipe did. The functions carry ``sample_rate``, ``threshold``, ``calibration`` and a
``checkpoint`` key (what an embedding cache is keyed on).
"""

import json
import os

import numpy as np
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_moco.encoder import embed
from speechbrain_moco.verification import inert_padding

ONNX_NAME = "embedding_model.onnx"


def read_decision(model_dir):
    """``threshold`` and ``calibration`` of an exported folder (``threshold.json``)."""
    path = os.path.join(model_dir, "threshold.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir} has no threshold.json: export a run there first")
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    return float(info["threshold"]), info["calibration"]


def exported_modules(model_dir):
    """``(hparams, compute_features, mean_var_norm, embedding_model)`` of an exported folder,
    its checkpoints loaded, in eval mode."""
    path = os.path.join(model_dir, "hyperparams.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir} has no hyperparams.yaml: export a run there first")
    with open(path, encoding="utf-8") as f:
        hp = load_hyperpyyaml(f)
    feats, norm, encoder = hp["compute_features"], hp["mean_var_norm"], hp["embedding_model"]
    encoder.load_state_dict(torch.load(os.path.join(model_dir, "embedding_model.ckpt"), map_location="cpu"))
    norm._load(os.path.join(model_dir, "mean_var_norm.ckpt"))
    return hp, feats.eval(), norm.eval(), encoder.eval()


class EmbeddingGraph(torch.nn.Module):
    """Fbank -> feature normaliser -> encoder: ``(wavs (B, T), lengths (B,)) -> (B, D)``."""

    def __init__(self, compute_features, mean_var_norm, embedding_model):
        super().__init__()
        self.compute_features = compute_features
        self.mean_var_norm = mean_var_norm
        self.embedding_model = embedding_model

    def forward(self, wavs, lengths):
        feats = self.mean_var_norm(self.compute_features(wavs), lengths)
        return embed(self.embedding_model, feats, lengths)


def onnx_process_threads():
    """For a process that runs an exported model in onnxruntime (the ``embed`` and ``verify``
    commands with ``--runtime onnx``): torch on one thread, so that its idle threads do not
    take the cores from onnxruntime's (see :func:`load_exported`)."""
    torch.set_num_threads(1)


def load_exported(model_dir, runtime="torch", device="cpu", threads=None):
    """The embedding function of an exported folder in ``runtime`` (``torch`` or ``onnx``)."""
    if runtime not in ("torch", "onnx"):
        raise ValueError(f"--runtime={runtime}: torch or onnx")
    threshold, calibration = read_decision(model_dir)
    hp_path = os.path.join(model_dir, "hyperparams.yaml")
    if runtime == "torch":
        hp, feats, norm, encoder = exported_modules(model_dir)
        graph = EmbeddingGraph(feats, norm, encoder).to(device).eval()

        @torch.no_grad()
        def fn(wavs, lengths):
            return graph(wavs.to(device), lengths.to(device)).float().cpu()

        if inert_padding.supports(encoder):

            def embed_list(wavs):
                """Embeddings of 1-D waveforms of any lengths, in one batch, each equal to its own."""
                wavs = [w.to(device) for w in wavs]
                return inert_padding.embed_waveforms(feats, norm, encoder, wavs).float().cpu()

            fn.embed_list = embed_list

        sample_rate = int(hp.get("sample_rate", 16000))
    else:
        path = os.path.join(model_dir, ONNX_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{model_dir} has no {ONNX_NAME}: export with python -m speechbrain_moco.export ... --onnx, "
                "or use --runtime torch"
            )
        import onnxruntime as ort

        # A process that runs the model here should give torch one thread
        # (onnx_process_threads): torch only pads arrays beside onnxruntime, and its idle
        # OpenMP threads spin after each small parallel op and take the cores from
        # onnxruntime's (measured on 2 cores: 59 files/s with 2 torch threads, 130 with 1). Not
        # set here: a library call must not change the process's torch settings.
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        def fn(wavs, lengths):
            wavs = np.ascontiguousarray(np.asarray(wavs, dtype=np.float32))
            lengths = np.asarray(lengths, dtype=np.float32)
            return torch.from_numpy(session.run(None, {"wavs": wavs, "lengths": lengths})[0])

        with open(hp_path, encoding="utf-8") as f:
            rate = [line.split(":", 1)[1] for line in f if line.startswith("sample_rate:")]
        sample_rate = int(rate[0]) if rate else 16000
    fn.sample_rate = sample_rate
    fn.threshold, fn.calibration = threshold, calibration
    stamp = os.path.getmtime(
        os.path.join(model_dir, ONNX_NAME if runtime == "onnx" else "embedding_model.ckpt")
    )
    fn.checkpoint = f"{os.path.abspath(model_dir)}|{runtime}|{stamp}"
    return fn
