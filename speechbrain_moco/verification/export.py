"""Export a training run as a SpeechBrain model folder that decides at a stated operating point.

``python -m speechbrain_moco.export --pretrain_path=OUT --model_dir=DIR
[--operating_point=eer|mindcf0.01|mindcf0.05|far=0.01] [--scores=EVAL/scores.txt]
[--threshold=T] [--onnx]``

``OUT`` is a training ``--output_folder``. ``DIR`` gets, shaped like a SpeechBrain hub
model folder:

- ``hyperparams.yaml``: ``compute_features``, ``mean_var_norm`` and ``embedding_model``
  copied from the training yaml with every reference resolved; ``mean_var_norm_emb``
  (the mean and std of training embeddings, label-free: ``encode_batch(normalize=True)``
  subtracts the mean, as cosine mean subtraction does); ``threshold`` (a cosine: accept
  when the score is above it) and ``calibration`` (``llr = scale * cosine + offset``);
  ``modules`` and a ``pretrainer`` whose loadables are read from the folder itself, so
  it can be moved;
- ``embedding_model.ckpt``, ``mean_var_norm.ckpt``, ``mean_var_norm_emb.ckpt``;
- ``interface.py``: :class:`speechbrain_moco.verification.interface.MoCoSpeakerRecognition`,
  which SpeechBrain's ``foreign_class`` loads (its ``verify_files`` decide at
  ``threshold``; SpeechBrain's own ``SpeakerRecognition`` always decides at 0.25);
- ``threshold.json`` (the operating point, where it was measured, its error rates) and
  ``README.md``, the model card (data, training command, metrics, threshold, loading).

The threshold is the ``--operating_point`` of a labelled scored list (``--scores``,
default the run's own ``eval/scores.txt``) and the calibration a logistic regression on
it; without one both come label-free from the scores of pairs of training utterances
(``far=`` then takes the quantile of those scores, almost all different speakers).
``--threshold`` sets the threshold by hand. ``--onnx`` also writes ``embedding_model.onnx``
(waveforms in, embeddings out: :mod:`speechbrain_moco.verification.onnx_model`) once
onnxruntime's embeddings of a few files of the run's data equal PyTorch's to 1e-4.
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from io import StringIO

import numpy as np
import torch
import torch.nn.functional as F
from speechbrain.utils.logger import get_logger

from speechbrain_moco.run_folder import latest_checkpoint, read_run_info, resolved_yaml_tree
from speechbrain_moco.verification import calibration
from speechbrain_moco.verification.embeddings import load_trained_encoder, training_embeddings
from speechbrain_moco.verification.model_card import write_model_card
from speechbrain_moco.verification.score_files import read_scores

logger = get_logger(__name__)

COPIED_NODES = ("compute_features", "mean_var_norm", "embedding_model")
LOADABLES = ("embedding_model", "mean_var_norm", "mean_var_norm_emb")
INTERFACE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "interface.py")

TAIL = """
# the mean of training embeddings (label-free), subtracted by encode_batch(normalize=True)
mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

audio_normalizer: !new:speechbrain.dataio.preprocess.AudioNormalizer
    sample_rate: !ref <sample_rate>

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>

# no `paths`: every loadable is read as <source>/<name>.ckpt
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm: !ref <mean_var_norm>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
"""


def _check_resolved(node, key):
    """Raise if a copied node still holds a reference tag."""
    tag = getattr(getattr(node, "tag", None), "value", None) or ""
    if tag in ("!ref", "!copy", "!PLACEHOLDER") or tag.startswith("!applyref"):
        raise ValueError(f"{key}: unresolved {tag} in the training yaml")
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        _check_resolved(child, key)


def inference_yaml(train_yaml_path, decision):
    """Text of the exported ``hyperparams.yaml`` (see the module docstring).

    ``decision``: ``{"threshold": float, "calibration": {"scale", "offset"}}``.
    """
    rt_yaml, tree = resolved_yaml_tree(train_yaml_path)
    missing = [k for k in COPIED_NODES if k not in tree]
    if missing:
        raise KeyError(f"{train_yaml_path} has no {', '.join(missing)}")
    out = {"sample_rate": int(tree.get("sample_rate", 16000))}
    for key in COPIED_NODES:
        _check_resolved(tree[key], key)
        out[key] = tree[key]
    stream = StringIO()
    stream.write("# A speaker-embedding model exported by python -m speechbrain_moco.export (README.md)\n\n")
    rt_yaml.dump(out, stream)
    cal = decision["calibration"]
    stream.write(
        "\n# accept (same speaker) when cosine > threshold; llr = scale * cosine + offset\n"
        f"threshold: {decision['threshold']!r}\n"
        f"calibration:\n    scale: {cal['scale']!r}\n    offset: {cal['offset']!r}\n"
    )
    stream.write(TAIL)
    return stream.getvalue()


def pair_scores(emb, max_pairs=200000, seed=0):
    """Cosine scores of (up to ``max_pairs`` random) distinct pairs of embeddings."""
    emb = F.normalize(torch.as_tensor(emb, dtype=torch.float64), dim=1)
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(emb.shape[0], k=1)
    if i.size > max_pairs:
        keep = rng.choice(i.size, max_pairs, replace=False)
        i, j = i[keep], j[keep]
    return (emb[i] * emb[j]).sum(dim=1).numpy()


def choose_decision(point, scores_path, train_emb, threshold=None):
    """The threshold and calibration of the export, and where they come from.

    A labelled ``scores_path`` (``enrol test score label``) gives the threshold of
    ``point`` and a logistic-regression calibration; without one both are label-free
    (pairs of training embeddings). ``threshold`` overrides the threshold.
    """
    if scores_path is not None and os.path.isfile(scores_path):
        _, _, scores, labels = read_scores(scores_path)
        value = calibration.operating_point(scores, labels, point)
        scale, offset = calibration.fit_calibration(scores, labels)
        far, miss = calibration.error_rates(scores, labels, threshold if threshold is not None else value)
        source = {
            "scores": os.path.abspath(scores_path),
            "n_trials": int(scores.size),
            "false_accept_rate": far,
            "miss_rate": miss,
        }
    else:
        scores = pair_scores(train_emb)
        scale, offset = calibration.fit_calibration_unlabelled(scores)
        if point.startswith("far="):
            value = float(np.quantile(scores, 1.0 - float(point[4:])))
        else:
            prior = 0.5 if point == "eer" else float(point[len("mindcf") :])
            value = (math.log((1 - prior) / prior) - offset) / scale
        source = {"scores": None, "label_free": "pairs of training utterances", "n_pairs": int(scores.size)}
    if threshold is not None:
        value, source["operating_point_given"] = float(threshold), "command line"
    return {
        "threshold": float(value),
        "operating_point": point,
        "calibration": {"scale": scale, "offset": offset},
        "measured_on": source,
    }


def export_model(
    pretrain_path, model_dir, operating_point="eer", scores=None, threshold=None, device="cpu", batch_size=8
):
    """Write the model folder ``model_dir`` (see the module docstring); returns ``threshold.json``."""
    train_yaml = os.path.join(pretrain_path, "hyperparams.yaml")
    if not os.path.isfile(train_yaml):
        raise FileNotFoundError(f"{train_yaml} not found: is {pretrain_path} a training --output_folder?")
    ckpt = latest_checkpoint(pretrain_path)
    embed_fn, _ = load_trained_encoder(pretrain_path, device)
    with tempfile.TemporaryDirectory() as tmp:
        train_emb = training_embeddings(
            pretrain_path, embed_fn, os.path.join(tmp, "e.pt"), device, batch_size
        )
    scores = scores or os.path.join(pretrain_path, "eval", "scores.txt")
    decision = choose_decision(operating_point, scores, train_emb, threshold)
    os.makedirs(model_dir, exist_ok=True)
    for name in ("embedding_model", "mean_var_norm"):
        shutil.copyfile(ckpt.paramfiles[name], os.path.join(model_dir, f"{name}.ckpt"))
    torch.save(
        {
            "count": int(train_emb.shape[0]),
            "glob_mean": train_emb.mean(dim=0),
            "glob_std": train_emb.std(dim=0),
        },
        os.path.join(model_dir, "mean_var_norm_emb.ckpt"),
    )
    with open(os.path.join(model_dir, "hyperparams.yaml"), "w", encoding="utf-8") as fout:
        fout.write(inference_yaml(train_yaml, decision))
    shutil.copyfile(INTERFACE, os.path.join(model_dir, "interface.py"))
    info = dict(
        decision,
        score="cosine",
        decision="same speaker when score > threshold",
        checkpoint=str(ckpt.path),
        n_training_embeddings=int(train_emb.shape[0]),
    )
    with open(os.path.join(model_dir, "threshold.json"), "w", encoding="utf-8") as fout:
        json.dump(info, fout, indent=2)
        fout.write("\n")
    metrics_path = os.path.join(pretrain_path, "eval", "metrics.json")
    metrics = json.load(open(metrics_path, encoding="utf-8")) if os.path.isfile(metrics_path) else None
    write_model_card(model_dir, pretrain_path, read_run_info(pretrain_path), metrics, info)
    logger.info(
        "Exported %s (%s) to %s, threshold %.4f (%s)",
        pretrain_path,
        ckpt.path.name,
        model_dir,
        decision["threshold"],
        operating_point,
    )
    return info


def parity_files(pretrain_path, n=5):
    """Up to ``n`` usable audio files of a run's own data (its validation, else training
    manifest) for the ONNX parity check."""
    from speechbrain_moco.dataio.bad_audio import usable_rows
    from speechbrain_moco.dataio.manifest import read_manifest

    info = read_run_info(pretrain_path)
    for key in ("valid_annotation", "train_annotation"):
        path = info.get(key)
        if path and os.path.isfile(path):
            rows = [r for r in read_manifest(path) if int(r["start"]) == 0][: 4 * n]
            with tempfile.TemporaryDirectory() as tmp:
                rows, _ = usable_rows(rows, info["data_folder"], 16000, os.path.join(tmp, "s.txt"))
            paths = [r["wav"].replace("$data_root", info["data_folder"]) for r in rows[:n]]
            if paths:
                return paths
    raise FileNotFoundError(f"{pretrain_path}: no manifest of its data to check the ONNX export on")


def main(argv=None):
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain_path", required=True, help="training --output_folder")
    parser.add_argument("--model_dir", required=True, help="folder to write the model to")
    parser.add_argument(
        "--operating_point",
        default="eer",
        help="eer (default), mindcf0.01, mindcf0.05 or far=RATE (a false-accept rate)",
    )
    parser.add_argument(
        "--scores", default=None, help="labelled scores.txt to set it on (default: OUT/eval/scores.txt)"
    )
    parser.add_argument("--threshold", type=float, default=None, help="a cosine threshold by hand")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--onnx", action="store_true", help="also write embedding_model.onnx (its parity checked first)"
    )
    parser.add_argument(
        "--onnx_tolerance",
        type=float,
        default=1e-4,
        help="largest difference of the length-normalised ONNX and PyTorch embeddings",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    info = export_model(
        args.pretrain_path, args.model_dir, args.operating_point, args.scores, args.threshold, args.device
    )
    if args.onnx:
        from speechbrain_moco.verification.onnx_model import export_onnx

        info["onnx"] = export_onnx(args.model_dir, parity_files(args.pretrain_path), args.onnx_tolerance)
    print(
        f"model written to {os.path.abspath(args.model_dir)} (threshold {info['threshold']:.4f} at "
        f"{info['operating_point']}; load it as its README.md says)"
    )
    return info
