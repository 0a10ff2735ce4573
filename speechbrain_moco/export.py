"""``python -m speechbrain_moco.export --pretrain_path=OUT --model_dir=DIR``: export a training
run as a SpeechBrain model folder (implemented in :mod:`speechbrain_moco.verification.export`)."""

from speechbrain_moco.cli import user_errors
from speechbrain_moco.verification.export import export_model, main

__all__ = ["export_model", "main"]

if __name__ == "__main__":
    with user_errors("speechbrain_moco.export"):  # a user's mistake: one line (SBMOCO_TRACEBACK=1: the trace)
        main()
