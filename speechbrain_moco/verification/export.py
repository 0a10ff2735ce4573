"""Export a training run as a SpeechBrain ``SpeakerRecognition`` model folder.

``python -m speechbrain_moco.export --pretrain_path=OUT --model_dir=DIR``

``OUT`` is a training ``--output_folder`` (``hyperparams.yaml`` written by the
training job, checkpoints in ``save/CKPT+*``). ``DIR`` gets:

- ``hyperparams.yaml``: ``sample_rate``, ``compute_features``,
  ``mean_var_norm`` and ``embedding_model`` copied from the training yaml with
  every reference and override already resolved (same classes, same
  constructor arguments), an ``audio_normalizer`` at the training sample rate,
  ``modules`` and a ``pretrainer`` whose loadables have no ``paths``: they are
  read from the ``source`` folder itself, so ``DIR`` can be moved or copied;
- ``embedding_model.ckpt``: the query encoder of the latest checkpoint (the
  one ``verification.embeddings.load_trained_encoder`` loads), plus ``mean_var_norm.ckpt``
  when the checkpoint has one (a global normaliser);
- ``threshold.json``: the cosine decision threshold (accept when
  ``score > threshold``): ``--threshold`` if given, else ``EER_threshold`` of
  ``OUT/eval/metrics.json`` if it exists, else SpeechBrain's
  ``verify_batch`` default 0.25; ``source`` says which.

Load it without any hub access::

    from speechbrain.inference.speaker import SpeakerRecognition
    model = SpeakerRecognition.from_hparams(source=DIR, savedir=TMP)
    score, decision = model.verify_files("a.wav", "b.wav")

``encode_batch(normalize=True)`` is not available: no ``mean_var_norm_emb``
is exported (MoCo training has no embedding statistics to store).
"""

import argparse
import json
import os
import shutil
import sys
from io import StringIO

from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.logger import get_logger

from speechbrain_moco.run_folder import latest_checkpoint, resolved_yaml_tree

logger = get_logger(__name__)

DEFAULT_THRESHOLD = 0.25  # SpeakerRecognition.verify_batch's default
COPIED_NODES = ("compute_features", "mean_var_norm", "embedding_model")

TAIL = """
audio_normalizer: !new:speechbrain.dataio.preprocess.AudioNormalizer
    sample_rate: !ref <sample_rate>

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>

# no `paths`: every loadable is read as <source>/<name>.ckpt
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
"""


def _check_resolved(node, key):
    """Raise if a copied node still holds a reference tag."""
    tag = getattr(getattr(node, "tag", None), "value", None) or ""
    if tag in ("!ref", "!copy", "!PLACEHOLDER") or tag.startswith("!applyref"):
        raise ValueError(f"{key}: unresolved {tag} in the training yaml")
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        _check_resolved(child, key)


def inference_yaml(train_yaml_path, loadables):
    """Text of the inference ``hyperparams.yaml`` built from a training yaml.

    Arguments
    ---------
    train_yaml_path : str
        ``hyperparams.yaml`` of a training run (any HyperPyYAML file).
    loadables : list of str
        Module names the pretrainer loads (``<name>.ckpt`` in the model folder).

    Returns
    -------
    str
        The yaml text.
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
    stream.write(
        f"# Exported from {os.path.abspath(train_yaml_path)}\n"
        "# by python -m speechbrain_moco.export (SpeakerRecognition inference)\n\n"
    )
    rt_yaml.dump(out, stream)
    stream.write(TAIL)
    for name in loadables:
        stream.write(f"        {name}: !ref <{name}>\n")
    return stream.getvalue()


def choose_threshold(pretrain_path, threshold=None):
    """``(threshold, source)``: explicit value, else the run's EER threshold,
    else ``DEFAULT_THRESHOLD``.

    Example
    -------
    >>> choose_threshold("/nonexistent")
    (0.25, 'default (SpeechBrain verify_batch)')
    >>> choose_threshold("/nonexistent", 0.4)
    (0.4, 'command line')
    """
    if threshold is not None:
        return float(threshold), "command line"
    metrics_path = os.path.join(pretrain_path, "eval", "metrics.json")
    if os.path.isfile(metrics_path):
        with open(metrics_path, encoding="utf-8") as fin:
            metrics = json.load(fin)
        if "EER_threshold" in metrics:
            return float(metrics["EER_threshold"]), f"EER_threshold of {os.path.abspath(metrics_path)}"
    return DEFAULT_THRESHOLD, "default (SpeechBrain verify_batch)"


def export_model(pretrain_path, model_dir, threshold=None):
    """Write the SpeechBrain model folder ``model_dir`` (see module docstring).

    Returns
    -------
    dict
        The content of ``threshold.json`` (with the files written).
    """
    train_yaml = os.path.join(pretrain_path, "hyperparams.yaml")
    if not os.path.isfile(train_yaml):
        raise FileNotFoundError(f"{train_yaml} not found: is {pretrain_path} a training --output_folder?")
    ckpt = latest_checkpoint(pretrain_path)
    loadables = [n for n in ("embedding_model", "mean_var_norm") if n in ckpt.paramfiles]
    text = inference_yaml(train_yaml, loadables)
    os.makedirs(model_dir, exist_ok=True)
    for name in loadables:
        shutil.copyfile(ckpt.paramfiles[name], os.path.join(model_dir, f"{name}.ckpt"))
    with open(os.path.join(model_dir, "hyperparams.yaml"), "w", encoding="utf-8") as fout:
        fout.write(text)
    _check_loads(model_dir)
    value, source = choose_threshold(pretrain_path, threshold)
    info = {
        "threshold": value,
        "source": source,
        "score": "cosine",
        "decision": "same speaker when score > threshold",
        "checkpoint": str(ckpt.path),
        "files": ["hyperparams.yaml"] + [f"{n}.ckpt" for n in loadables] + ["threshold.json"],
    }
    with open(os.path.join(model_dir, "threshold.json"), "w", encoding="utf-8") as fout:
        json.dump(info, fout, indent=2)
        fout.write("\n")
    logger.info(
        "Exported %s (%s) to %s, threshold %.4f (%s)", pretrain_path, ckpt.path.name, model_dir, value, source
    )
    return info


def _check_loads(model_dir):
    """Fail now, not at inference time, if the checkpoint does not fit the yaml."""
    import torch

    with open(os.path.join(model_dir, "hyperparams.yaml"), encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin)
    state = torch.load(os.path.join(model_dir, "embedding_model.ckpt"), map_location="cpu")
    hparams["embedding_model"].load_state_dict(state, strict=True)


def main(argv=None):
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain_path", required=True, help="training --output_folder")
    parser.add_argument("--model_dir", required=True, help="folder to write the model to")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="cosine decision threshold (default: the run's EER threshold)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    info = export_model(args.pretrain_path, args.model_dir, args.threshold)
    print(
        f"model written to {os.path.abspath(args.model_dir)} "
        f"(threshold {info['threshold']:.4f}: {info['source']})"
    )
    return info


if __name__ == "__main__":
    main()
