"""Verify one pair of recordings with an exported model folder.

``python -m speechbrain_moco.verify a.wav b.wav --model DIR``

``DIR`` is written by ``python -m speechbrain_moco.export``. The model is
loaded with SpeechBrain's ``SpeakerRecognition.from_hparams`` (local folder,
no hub access) and the pair is scored with its ``verify_files`` (cosine of
the two embeddings); the decision uses the threshold in ``DIR/threshold.json``
(accept when ``score > threshold``) unless ``--threshold`` is given.
"""

import argparse
import json
import os
import sys

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


def load_model(model_dir, savedir=None, device="cpu"):
    """``SpeakerRecognition`` from an exported folder, and its threshold.

    ``savedir`` None reads every file in place (nothing is written).
    """
    from speechbrain.inference.speaker import SpeakerRecognition

    if not os.path.isfile(os.path.join(model_dir, "hyperparams.yaml")):
        raise FileNotFoundError(f"{model_dir} has no hyperparams.yaml: export a run first")
    model = SpeakerRecognition.from_hparams(
        source=os.path.abspath(model_dir), savedir=savedir, run_opts={"device": device}
    )
    threshold_path = os.path.join(model_dir, "threshold.json")
    threshold = None
    if os.path.isfile(threshold_path):
        with open(threshold_path, encoding="utf-8") as fin:
            threshold = float(json.load(fin)["threshold"])
    return model, threshold


def verify_pair(path_a, path_b, model_dir, threshold=None, savedir=None, device="cpu"):
    """``(score, threshold, same_speaker)`` of two audio files."""
    model, stored = load_model(model_dir, savedir, device)
    if threshold is None:
        threshold = stored if stored is not None else 0.25
    score, _ = model.verify_files(path_a, path_b)
    score = float(score.reshape(-1)[0])
    return score, float(threshold), score > threshold


def main(argv=None):
    """Command line entry point: prints the score and the decision."""
    parser = argparse.ArgumentParser(description="cosine verification of two recordings")
    parser.add_argument("enrol", help="first recording")
    parser.add_argument("test", help="second recording")
    parser.add_argument("--model", required=True, help="folder written by speechbrain_moco.export")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold (default: the model's threshold.json)",
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    score, threshold, same = verify_pair(
        args.enrol, args.test, args.model, args.threshold, device=args.device
    )
    decision = "same speaker" if same else "different speakers"
    print(f"score {score:.6f} | threshold {threshold:.6f} | {decision}")
    return score, threshold, same


if __name__ == "__main__":
    main()
