"""The model card (``README.md``) of an exported model folder, like a SpeechBrain hub model's."""

import os

CARD = """# Speaker embeddings: {encoder}

Exported by `python -m speechbrain_moco.export` from the training run `{run}`.

## Training

- Command: `{command}`
- Data: `{data_folder}`; training manifest `{train}` ({n_train} utterances){labels}.
- Encoder: `{encoder}` ({emb_dim}-d embeddings), SpeechBrain Fbank front-end with its
  feature normalisation (`mean_var_norm.ckpt`).

## Metrics

{metrics}

## Decisions

Accept (same speaker) when the cosine of the two embeddings is above **{threshold:.4f}**:
the `{point}` operating point, {where}. `llr = {scale:.4f} * cosine {sign} {magnitude:.4f}` is the
calibrated log-likelihood ratio (accept when it exceeds `log((1 - p) / p)` for a target prior
`p`). Embeddings are computed from whole files, never padded, so a trial gets the same score
whatever it is batched with.

## Load it (SpeechBrain only, no hub access)

```python
from speechbrain.inference.interfaces import foreign_class

model = foreign_class(source="{folder}", pymodule_file="interface.py",
                      classname="MoCoSpeakerRecognition", savedir="{folder}")
score, same = model.verify_files("a.wav", "b.wav")  # decides at the threshold above
llr = model.llr(score)
emb = model.encode_batch(wavs, normalize=True)      # minus the mean training embedding
```

SpeechBrain's own `SpeakerRecognition.from_hparams(source=...)` loads the folder too and
gives the same embeddings and scores, but decides at its fixed cosine 0.25 (pass your own
threshold to `verify_batch`). From the command line:
`python -m speechbrain_moco.verify a.wav b.wav --model {folder}`.

Files: `hyperparams.yaml`, `embedding_model.ckpt`, `mean_var_norm.ckpt`,
`mean_var_norm_emb.ckpt`, `interface.py`, `threshold.json`, this README.
"""


def write_model_card(model_dir, run_folder, run_info, metrics, info):
    """Write ``<model_dir>/README.md`` from the run's ``run_info.json``, its evaluation
    ``metrics`` (None: no trial list was scored) and the export's ``threshold.json``."""
    import ruamel.yaml

    with open(os.path.join(model_dir, "hyperparams.yaml"), encoding="utf-8") as f:
        text = f.read()
    encoder = text.split("embedding_model: !new:", 1)[1].split("\n", 1)[0].strip()
    tree = ruamel.yaml.YAML(typ="rt").load(text.split("\n# accept", 1)[0])
    emb_dim = tree["embedding_model"].get("lin_neurons", "?")
    n_train = _rows(run_info["train_annotation"])
    if metrics:
        line = (
            f"On `{metrics['trials']}` ({metrics['n_trials']} trials), cosine: EER "
            f"{metrics['EER']:.2f} %, minDCF(0.01) {metrics['minDCF_p0.01']:.4f}, "
            f"minDCF(0.05) {metrics['minDCF_p0.05']:.4f}."
        )
    else:
        line = "No trial list was scored at the end of training."
    src = info["measured_on"]
    if src.get("scores"):
        where = (
            f"set on `{src['scores']}` ({src['n_trials']} trials: false accepts "
            f"{100 * src['false_accept_rate']:.2f} %, misses {100 * src['miss_rate']:.2f} % there)"
        )
    else:
        where = f"set without labels from {src['n_pairs']} pairs of training utterances"
    labels = (
        f" with speaker labels (`init_from` {run_info['init_from']})"
        if "n_speakers" in run_info and run_info.get("init_from")
        else " with speaker labels"
        if "n_speakers" in run_info
        else ", no speaker label used"
    )
    card = CARD.format(
        encoder=encoder,
        run=os.path.abspath(run_folder),
        command=run_info.get("command", "?"),
        data_folder=run_info["data_folder"],
        train=run_info["train_annotation"],
        n_train=n_train,
        labels=labels,
        emb_dim=emb_dim,
        metrics=line,
        threshold=info["threshold"],
        point=info["operating_point"],
        where=where,
        scale=info["calibration"]["scale"],
        sign="-" if info["calibration"]["offset"] < 0 else "+",
        magnitude=abs(info["calibration"]["offset"]),
        folder=os.path.abspath(model_dir),
    )
    with open(os.path.join(model_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)


def _rows(csv_path):
    with open(csv_path, encoding="utf-8") as f:
        return max(sum(1 for line in f if line.strip()) - 1, 0)
