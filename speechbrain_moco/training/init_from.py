"""``--init_from``: load a trained encoder (MoCo or supervised) into a new run, strictly.

The source may be a training ``--output_folder``, an exported model folder, a
``CKPT+*`` folder or an ``embedding_model.ckpt`` file. Every tensor must exist with
the same shape, and the source's feature normalisation must be the new run's
(with ``global``, its statistics are loaded too).
"""

import os

import torch
from speechbrain.utils.logger import get_logger

from speechbrain_moco.run_folder import embedding_checkpoint, resolved_yaml_tree

logger = get_logger(__name__)


def state_dict_mismatches(expected, found):
    """Human-readable differences between two state dicts (keys and shapes)."""
    problems = [f"missing {k} {tuple(v.shape)}" for k, v in expected.items() if k not in found]
    problems += [f"unexpected {k} {tuple(v.shape)}" for k, v in found.items() if k not in expected]
    problems += [
        f"{k}: checkpoint {tuple(found[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    return problems


def load_encoder_init(encoder, init_from):
    """Load the (MoCo query) encoder weights ``init_from`` names into ``encoder``.

    Strict: every parameter and buffer must exist with the same shape, else a
    ``ValueError`` lists the differences. Returns the checkpoint file loaded.
    """
    path = embedding_checkpoint(init_from)
    state = torch.load(path, map_location="cpu", weights_only=True)
    problems = state_dict_mismatches(encoder.state_dict(), state)
    if problems:
        shown = "; ".join(problems[:6]) + (f"; ... ({len(problems)} in all)" if len(problems) > 6 else "")
        raise ValueError(
            f"--init_from={init_from}: {path} does not fit the embedding_model this yaml "
            f"builds (same architecture, channels, emb_dim and n_mels needed): {shown}"
        )
    encoder.load_state_dict(state, strict=True)
    logger.info("embedding_model initialised from %s", path)
    return path


def trained_feature_norm(init_from, ckpt_path):
    """``(norm_type, std_norm, yaml)`` of the run or model folder ``init_from`` came from.

    Read from its ``hyperparams.yaml`` (the training run's, or an exported
    model's); ``None`` when there is none (a bare ``.ckpt`` file) or it
    builds no ``mean_var_norm``.
    """
    run = os.path.dirname(os.path.dirname(os.path.dirname(ckpt_path)))  # <run>/save/CKPT+x/file
    for folder in (init_from, os.path.dirname(ckpt_path), run):
        path = os.path.join(folder, "hyperparams.yaml")
        if os.path.isdir(folder) and os.path.isfile(path):
            node = resolved_yaml_tree(path)[1].get("mean_var_norm")
            if not isinstance(node, dict):
                return None
            # InputNormalization's own defaults where the yaml leaves them out
            return node.get("norm_type", "global"), bool(node.get("std_norm", True)), path
    return None


def check_init_features(norm, init_from, ckpt_path):
    """Refuse an init whose encoder was trained on differently normalised features.

    With ``feature_norm: global`` the init run's corpus statistics
    (``mean_var_norm.ckpt`` beside the weights) are loaded too, so the encoder
    starts on exactly the features it learned from. Returns what was loaded.
    """
    found = trained_feature_norm(init_from, ckpt_path)
    if found is None:
        logger.warning(
            "--init_from=%s: no hyperparams.yaml found; cannot check that it was trained "
            "with feature_norm=%s",
            init_from,
            norm.norm_type,
        )
    elif (found[0], found[1]) != (norm.norm_type, bool(norm.std_norm)):
        raise ValueError(
            f"--init_from={init_from} was trained with feature_norm={found[0]}, feature_std_norm="
            f"{found[1]} ({found[2]}); this run uses feature_norm={norm.norm_type}, feature_std_norm="
            f"{bool(norm.std_norm)}: the encoder would see other features. Pass "
            f"--feature_norm={found[0]} --feature_std_norm={found[1]}"
        )
    stats = os.path.join(os.path.dirname(ckpt_path), "mean_var_norm.ckpt")
    if norm.norm_type == "global" and os.path.isfile(stats):
        norm._load(stats)
        logger.info("mean_var_norm statistics initialised from %s", stats)
        return stats
    return None
