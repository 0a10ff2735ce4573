"""Verify one pair of recordings with an exported model folder.

``python -m speechbrain_moco.verify a.wav b.wav --model DIR [--threshold=T]``

``DIR`` is written by ``python -m speechbrain_moco.export``. The model is loaded with
SpeechBrain's ``foreign_class`` and the folder's ``interface.py``
(:class:`speechbrain_moco.verification.interface.MoCoSpeakerRecognition`, local folder,
no hub access); the pair is scored with its ``verify_files`` (cosine of the two
embeddings) and decided at the folder's threshold unless ``--threshold`` is given.
Prints the score, its calibrated log-likelihood ratio and the decision.
"""

import argparse
import os
import sys

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


def load_model(model_dir, savedir=None, device="cpu"):
    """The exported model of ``model_dir`` as a ``MoCoSpeakerRecognition``.

    ``savedir`` None reads every file in place.
    """
    from speechbrain.inference.interfaces import foreign_class

    for name in ("hyperparams.yaml", "interface.py"):
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise FileNotFoundError(
                f"{model_dir} has no {name}: export a run there first (python -m speechbrain_moco.export)"
            )
    source = os.path.abspath(model_dir)
    return foreign_class(
        source=source,
        pymodule_file="interface.py",
        classname="MoCoSpeakerRecognition",
        savedir=savedir or source,
        run_opts={"device": device},
    )


def check_audio_file(path):
    """Raise a one-line error naming ``path`` unless it is usable audio (readable, finite,
    not empty, not silent: :func:`speechbrain_moco.dataio.bad_audio.audio_problem`)."""
    import soundfile as sf

    from speechbrain_moco.dataio.bad_audio import audio_problem

    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        rate = sf.info(path).samplerate
    except Exception as err:  # soundfile raises several types
        raise ValueError(f"{path} is not an audio file soundfile can read ({err})") from None
    problem = audio_problem(path, rate)
    if problem:
        raise ValueError(f"{path}: {problem}")


def verify_pair(path_a, path_b, model_dir, threshold=None, savedir=None, device="cpu"):
    """``(score, threshold, same_speaker, llr)`` of two audio files."""
    for path in (path_a, path_b):
        check_audio_file(path)
    model = load_model(model_dir, savedir, device)
    threshold = model.threshold if threshold is None else float(threshold)
    score = model.score_files(path_a, path_b)
    return score, threshold, score > threshold, float(model.llr(score))


def main(argv=None):
    """Command line entry point: prints the score, the llr and the decision."""
    parser = argparse.ArgumentParser(description="cosine verification of two recordings")
    parser.add_argument("enrol", help="first recording")
    parser.add_argument("test", help="second recording")
    parser.add_argument("--model", required=True, help="folder written by speechbrain_moco.export")
    parser.add_argument(
        "--threshold", type=float, default=None, help="decision threshold (default: the model's own)"
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from speechbrain_moco.cli import check_device, user_errors

    with user_errors("speechbrain_moco.verify"):
        check_device(args.device)
        score, threshold, same, llr = verify_pair(
            args.enrol, args.test, args.model, args.threshold, device=args.device
        )
    decision = "same speaker" if same else "different speakers"
    print(f"score {score:.6f} | llr {llr:+.3f} | threshold {threshold:.6f} | {decision}")
    return score, threshold, same


if __name__ == "__main__":
    main()
