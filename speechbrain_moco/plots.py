"""``python -m speechbrain_moco.plots --det OUT.png EVAL [EVAL ...]``: one DET plot of several
evaluation folders (implemented in :mod:`speechbrain_moco.verification.plots`)."""

from speechbrain_moco.verification.plots import main

if __name__ == "__main__":
    main()
