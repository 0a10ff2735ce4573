"""--init_from: exact weights, clear errors on another architecture."""

import os

import pytest
import speechbrain as sb
import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_moco.run_folder import embedding_checkpoint
from speechbrain_moco.training.init_from import load_encoder_init, state_dict_mismatches


def ecapa(channels=16, emb=8, n_mels=24):
    return ECAPA_TDNN(
        input_size=n_mels, channels=[channels] * 4 + [channels * 3], attention_channels=8, lin_neurons=emb
    )


def moco_like_run(tmp_path, encoder):
    """A training --output_folder: save/CKPT+*/embedding_model.ckpt (+ a key model)."""
    run = tmp_path / "moco_run"
    key = ecapa()
    ckpt = sb.utils.checkpoints.Checkpointer(
        str(run / "save"), recoverables={"embedding_model": encoder, "key_model": key}
    )
    ckpt.save_checkpoint()
    return run


def test_init_from_loads_exactly_the_query_encoder(tmp_path):
    torch.manual_seed(0)
    source = ecapa()
    with torch.no_grad():  # non-trivial BN statistics too
        for m in source.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
    run = moco_like_run(tmp_path, source)
    torch.manual_seed(1)
    target = ecapa()
    assert not torch.equal(
        target.state_dict()["blocks.0.conv.conv.weight"], source.state_dict()["blocks.0.conv.conv.weight"]
    )
    path = load_encoder_init(target, str(run))
    assert path.endswith("embedding_model.ckpt") and "CKPT+" in path
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name
    # the checkpoint file itself, and an exported folder, are accepted too
    assert embedding_checkpoint(path) == path
    export = tmp_path / "export"
    export.mkdir()
    torch.save(source.state_dict(), export / "embedding_model.ckpt")
    assert embedding_checkpoint(str(export)) == str(export / "embedding_model.ckpt")


def test_init_from_another_architecture_is_a_clear_error(tmp_path):
    run = moco_like_run(tmp_path, ecapa(channels=16))
    wider = ecapa(channels=32)
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(ValueError, match=r"does not fit the embedding_model.*blocks\.0\.conv\.conv\.weight"):
        load_encoder_init(wider, str(run))
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())  # untouched
    with pytest.raises(ValueError, match="does not fit"):
        load_encoder_init(ecapa(emb=12), str(run))


def test_init_from_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        embedding_checkpoint(str(tmp_path / "nope"))
    os.makedirs(tmp_path / "empty" / "save")
    with pytest.raises(FileNotFoundError, match="no embedding_model.ckpt"):
        embedding_checkpoint(str(tmp_path / "empty"))


def test_state_dict_mismatches_lists_every_kind():
    a = {"w": torch.zeros(2, 3), "b": torch.zeros(2)}
    b = {"w": torch.zeros(3, 3), "extra": torch.zeros(1)}
    problems = state_dict_mismatches(a, b)
    assert "missing b (2,)" in problems and "unexpected extra (1,)" in problems
    assert "w: checkpoint (3, 3) vs model (2, 3)" in problems


def _brain(**hparams):
    from speechbrain_moco.training import SpeakerBrain

    modules = {"embedding_model": torch.nn.Linear(4, 3), "classifier": torch.nn.Linear(3, 2)}
    hp = dict(
        {
            "lr": 0.01,
            "final_lr": 0.0,
            "number_of_epochs": 2,
            "warmup_epochs": 0,
            "init_from": None,
            "freeze_epochs": 0,
            "encoder_lr_scale": 1.0,
            "rewarm_epochs": 0,
            "loss_gate": None,
        },
        **hparams,
    )
    brain = SpeakerBrain(
        modules=modules,
        opt_class=lambda p: torch.optim.AdamW(p, lr=hp["lr"]),
        hparams=hp,
        run_opts={"device": "cpu"},
    )
    brain.init_optimizers()
    brain.steps_per_epoch = 10
    return brain


def test_encoder_lr_scale_applies_to_the_initialised_encoder_only():
    brain = _brain(init_from="some_run", encoder_lr_scale=0.25)
    brain.optimizer_step = 5
    brain.on_fit_batch_start(None, True)
    encoder, rest = brain.optimizer.param_groups
    assert {id(p) for p in encoder["params"]} == {id(p) for p in brain.modules.embedding_model.parameters()}
    assert {id(p) for p in rest["params"]} == {id(p) for p in brain.modules.classifier.parameters()}
    assert 0.0 < rest["lr"] < 0.01 and encoder["lr"] == pytest.approx(0.25 * rest["lr"])
    # a scratch run has nothing to preserve: one group, full schedule
    scratch = _brain(encoder_lr_scale=0.25)
    scratch.optimizer_step = 5
    scratch.on_fit_batch_start(None, True)
    (group,) = scratch.optimizer.param_groups
    assert group["lr"] == pytest.approx(rest["lr"]) and len(group["params"]) == 4
    with pytest.raises(ValueError, match="encoder_lr_scale"):
        _brain(init_from="some_run", encoder_lr_scale=0.0)


def test_the_encoder_learning_rate_is_rewarmed_after_the_freeze():
    """Issue 18, defect 5: the thawed encoder starts from 0, not at the scheduled peak."""
    brain = _brain(init_from="some_run", freeze_epochs=1, rewarm_epochs=2, number_of_epochs=6)
    rates = []
    for step in (10, 19, 29, 40):  # 10 steps an epoch: the freeze ends at step 10
        brain.optimizer_step = step
        brain.on_fit_batch_start(None, True)
        encoder, rest = brain.optimizer.param_groups
        rates.append(encoder["lr"] / rest["lr"])
    assert rates == pytest.approx([1 / 20, 10 / 20, 1.0, 1.0])
    # rewarm_epochs: 0 keeps the old behaviour: the scheduled rate at once
    plain = _brain(init_from="some_run", freeze_epochs=1, number_of_epochs=6)
    plain.optimizer_step = 10
    plain.on_fit_batch_start(None, True)
    encoder, rest = plain.optimizer.param_groups
    assert encoder["lr"] == pytest.approx(rest["lr"])


def test_gradient_clipping_covers_every_parameter_group():
    """Issue 18, defect 6: SpeechBrain clips param_groups[0] only (the encoder here)."""
    brain = _brain(init_from="some_run", encoder_lr_scale=0.5)  # two groups, before and after
    brain.max_grad_norm = 1.0
    for p in brain.modules.embedding_model.parameters():
        p.grad = torch.full_like(p, 0.01)
    for p in brain.modules.classifier.parameters():
        p.grad = torch.full_like(p, 100.0)
    norms = []

    def record(*args, **kwargs):
        grads = [p.grad for g in brain.optimizer.param_groups for p in g["params"]]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    brain.optimizer.step = record
    brain.optimizers_step()
    assert norms == [pytest.approx(1.0, rel=1e-4)] and brain.optimizer_step == 1


def test_init_schedule_is_for_initialised_runs_and_validated():
    from speechbrain_moco.training import init_schedule

    assert init_schedule(None, 3, 0.5) == (0, 1.0)  # scratch
    assert init_schedule("run", 3, 0.5) == (3, 0.5)
    assert init_schedule("run", 0, 1.0) == (0, 1.0)
    for freeze, scale, what in (
        (-1, 1.0, "freeze_epochs"),
        (1.5, 1.0, "freeze_epochs"),
        (True, 1.0, "freeze_epochs"),
        (3, 1.5, "encoder_lr_scale"),
    ):
        with pytest.raises(ValueError, match=what):
            init_schedule("run", freeze, scale)


def test_bad_init_schedule_fails_before_data_preparation(tmp_path):
    import subprocess
    import sys

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    recipe = os.path.join(root, "recipes", "Folder", "SpeakerRec")
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(recipe, "train_speaker_embeddings.py"),
            os.path.join(recipe, "hparams", "train_ecapa.yaml"),
            f"--output_folder={out}",
            f"--data_folder={tmp_path / 'no_corpus'}",
            f"--init_from={tmp_path}",
            "--encoder_lr_scale=2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "encoder_lr_scale must be in (0, 1]" in proc.stderr
    assert not (out / "manifests").exists()


def norm_run(tmp_path, norm_type, std_norm, encoder):
    """A run folder whose hyperparams.yaml and checkpoint carry a mean_var_norm."""
    from speechbrain.processing.features import InputNormalization

    run = tmp_path / f"run_{norm_type}"
    norm = InputNormalization(norm_type=norm_type, std_norm=std_norm)
    if norm_type == "global":
        norm(torch.randn(4, 50, 24) * 3 + 5, torch.ones(4))  # statistics of "its" corpus
    sb.utils.checkpoints.Checkpointer(
        str(run / "save"), recoverables={"embedding_model": encoder, "mean_var_norm": norm}
    ).save_checkpoint()
    (run / "hyperparams.yaml").write_text(
        f"feature_norm: {norm_type}\nfeature_std_norm: {std_norm}\n"
        "mean_var_norm: !new:speechbrain.processing.features.InputNormalization\n"
        "    norm_type: !ref <feature_norm>\n    std_norm: !ref <feature_std_norm>\n"
    )
    return run, norm


def test_init_from_brings_its_feature_normalisation(tmp_path):
    from speechbrain.processing.features import InputNormalization

    from speechbrain_moco.training import check_init_features

    run, source_norm = norm_run(tmp_path, "global", True, ecapa())
    path = load_encoder_init(ecapa(), str(run))
    target = InputNormalization(norm_type="global", std_norm=True)
    stats = check_init_features(target, str(run), path)
    assert stats.endswith("mean_var_norm.ckpt")
    assert target.count == source_norm.count > 0
    assert torch.equal(target.glob_mean, source_norm.glob_mean)
    assert torch.equal(target.glob_std, source_norm.glob_std)
    # a run trained on other features is refused, naming both settings
    for norm_type, std in (("sentence", False), ("global", False)):
        with pytest.raises(
            ValueError,
            match=r"trained with feature_norm=global, feature_std_norm=True.*"
            rf"this run uses feature_norm={norm_type}",
        ):
            check_init_features(InputNormalization(norm_type=norm_type, std_norm=std), str(run), path)
    # sentence-normalised runs: checked, nothing to load
    run_s, _ = norm_run(tmp_path, "sentence", False, ecapa())
    path_s = load_encoder_init(ecapa(), str(run_s))
    assert (
        check_init_features(InputNormalization(norm_type="sentence", std_norm=False), str(run_s), path_s)
        is None
    )
    with pytest.raises(ValueError, match="feature_norm=sentence, feature_std_norm=False"):
        check_init_features(InputNormalization(norm_type="global"), str(run_s), path_s)
