"""Augmentation and two-crop pipeline: shapes, values, determinism, short files."""

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_moco.dataio import (
    AddNoiseBank,
    AddReverbFFT,
    AudioError,
    Augmentation,
    RandomAugment,
    RandomEQ,
    RandomGain,
    TwoCrops,
    load_audio,
    synthetic_rirs,
    two_view_dataset,
)
from speechbrain_moco.dataio.augment import rms as _rms


def test_noise_bank_reads_folder_and_hits_requested_snr(tmp_path):
    noise = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    sf.write(tmp_path / "n.wav", noise, 16000)
    aug = AddNoiseBank(folder=str(tmp_path), snr_low=5, snr_high=5)
    x = torch.sin(torch.arange(12000.0) / 3).repeat(3, 1)
    y = aug(x, torch.ones(3))
    assert y.shape == x.shape
    snr = 20 * torch.log10(_rms(x) / _rms(y - x))
    assert torch.allclose(snr, torch.full_like(snr, 5.0), atol=0.05)
    # the noise comes from the file (tiled), not white noise
    residual = (y - x)[0, :4000]
    ref = torch.from_numpy(sf.read(tmp_path / "n.wav", dtype="float32")[0])
    shifts = torch.stack([torch.roll(ref, -j) for j in range(4000)])
    corr = (shifts @ residual) / (shifts.norm(dim=1) * residual.norm())
    assert float(corr.max()) > 0.999


def test_noise_bank_resamples_declared_files(tmp_path):
    sf.write(tmp_path / "n8k.wav", np.ones(800, dtype=np.float32) * 0.1, 8000)
    aug = AddNoiseBank(folder=str(tmp_path))
    aug._load()
    assert aug.bank[0].numel() == 1600  # resampled to 16 kHz


def test_reverb_fft_matches_direct_convolution_on_delta_rir():
    rev = AddReverbFFT(n_synthetic=1, max_rir_seconds=0.05)
    rev._load()
    rev.rirs = torch.zeros_like(rev.rirs)
    rev.rirs[0, 3] = 1.0
    rev.peaks[0] = 3
    x = torch.randn(2, 500)
    assert torch.allclose(rev(x), x, atol=1e-5)  # delta at the peak: identity


def test_reverb_fft_equals_time_domain_convolution():
    torch.manual_seed(0)
    rir = synthetic_rirs(1, 16000, 0.02)[0]
    rev = AddReverbFFT(n_synthetic=1, max_rir_seconds=0.02)
    rev._load()
    rev.rirs, rev.peaks = rir.unsqueeze(0), torch.zeros(1, dtype=torch.long)
    x = torch.randn(1, 400)
    y = rev(x)
    full = torch.nn.functional.conv1d(
        x.view(1, 1, -1), rir.flip(0).view(1, 1, -1), padding=rir.numel() - 1
    ).view(-1)[:400]
    full = full * _rms(x) / _rms(full.view(1, -1))
    assert torch.allclose(y.view(-1), full.view(-1), atol=1e-4)


def test_random_eq_curves_are_bounded_smooth_and_per_row():
    torch.manual_seed(0)
    eq = RandomEQ(max_db=6.0, n_bands=6, sample_rate=16000)
    g = eq.gains_db(64, 32000)
    assert g.shape == (64, 16001)
    assert g.abs().max() <= 6.0 + 1e-4
    peaks = g.abs().amax(dim=1)
    assert peaks.min() < 1.5 and peaks.max() > 5.0  # excursion uniform in [0, max_db]
    assert (g[1:] - g[:-1]).abs().amax(dim=1).median() > 1.0  # each row its own curve
    assert (g[:, 1:] - g[:, :-1]).abs().max() < 0.05  # smooth across neighbouring bins
    # below min_freq the gain is flat
    low = g[:, : int(60 / 0.5)]
    assert torch.allclose(low, low[:, :1].expand_as(low))


def test_random_eq_applies_its_curve_and_keeps_rms():
    torch.manual_seed(1)
    x = torch.randn(4, 16000)
    eq = RandomEQ(max_db=9.0)
    torch.manual_seed(2)
    gains = eq.gains_db(4, 16000)
    torch.manual_seed(2)
    y = eq(x)
    assert torch.allclose(_rms(y), _rms(x), rtol=1e-4)
    ratio_db = 20 * torch.log10(torch.fft.rfft(y).abs() / torch.fft.rfft(x).abs())
    # equal up to the RMS rescaling, a constant per row
    centred = ratio_db - gains
    assert (centred - centred.mean(dim=1, keepdim=True)).abs().max() < 1e-2
    assert torch.allclose(RandomEQ(max_db=0.0)(x), x, atol=1e-5)
    with pytest.raises(ValueError, match="max_db"):
        RandomEQ(max_db=-1.0)


def test_random_gain_levels_ignore_the_source_level_and_padding():
    torch.manual_seed(0)
    x = torch.randn(400, 2000) * torch.logspace(-3, 0, 400).unsqueeze(1)  # 60 dB of source levels
    x[:200, 1000:] = 0.0  # padding: half of the first rows
    lengths = torch.cat([torch.full((200,), 0.5), torch.ones(200)])
    y = RandomGain(max_db=6.0, level_db=-26.0)(x, lengths)
    level = 20 * torch.log10(_rms(y, lengths).squeeze(1))
    assert level.min() >= -32.0 - 1e-3 and level.max() <= -20.0 + 1e-3
    assert level.max() - level.min() > 10.0  # the gains spread over the range
    # the new level does not follow the old one
    old = 20 * torch.log10(_rms(x, lengths).squeeze(1))
    assert abs(float(torch.corrcoef(torch.stack([old, level]))[0, 1])) < 0.2
    assert torch.equal(y[:200, 1000:], torch.zeros(200, 1000))  # padding stays silent
    # level_db=None: a pure gain of at most max_db on each row's own level
    z = RandomGain(max_db=3.0, level_db=None)(x, lengths)
    change = 20 * torch.log10(_rms(z, lengths) / _rms(x, lengths)).squeeze(1)
    assert change.abs().max() <= 3.0 + 1e-3 and change.std() > 1.0
    assert torch.allclose(RandomGain(max_db=0.0, level_db=None)(x), x)
    with pytest.raises(ValueError, match="max_db"):
        RandomGain(max_db=-1.0)


def test_random_augment_probabilities_and_independence():
    torch.manual_seed(0)
    x = torch.zeros(200, 100)
    aug = RandomAugment([Augmentation(AddNoiseBank(None, snr_low=0, snr_high=0), prob=0.5)])
    y = aug(x + 1.0, torch.ones(200))
    changed = ((y - 1.0).abs().sum(1) > 0).float().mean()
    assert 0.35 < float(changed) < 0.65
    assert torch.equal(RandomAugment([Augmentation(AddNoiseBank(None), 0.0)])(x, torch.ones(200)), x)
    with pytest.raises(ValueError, match="probability"):
        Augmentation(AddNoiseBank(None), 1.5)


def test_two_crops_deterministic_per_epoch_and_in_range(tmp_path):
    wav = np.arange(16000, dtype=np.float32) / 16000
    sf.write(tmp_path / "a.wav", wav, 16000, subtype="FLOAT")
    crops = TwoCrops(0.25, 16000, seed=3)
    v1, v2 = crops(str(tmp_path / "a.wav"), 0, 16000, "a")
    assert v1.shape == v2.shape == (4000,)
    # each crop is a contiguous slice of the file
    for v in (v1, v2):
        start = int(round(float(v[0]) * 16000))
        assert torch.allclose(v, torch.from_numpy(wav[start : start + 4000]))
    again = TwoCrops(0.25, 16000, seed=3)(str(tmp_path / "a.wav"), 0, 16000, "a")
    assert torch.equal(again[0], v1) and torch.equal(again[1], v2)
    crops.set_epoch(1)
    assert crops.offsets("a", 16000) != TwoCrops(0.25, 16000, 3).offsets("a", 16000)


def test_two_crops_wrap_short_utterances(tmp_path):
    wav = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    sf.write(tmp_path / "s.wav", wav, 16000, subtype="FLOAT")
    v1, v2 = TwoCrops(0.25, 16000, seed=0)(str(tmp_path / "s.wav"), 0, 1000, "s")
    assert v1.shape == (4000,) and v2.shape == (4000,)
    # wrapped: every sample is one of the file's samples, in cyclic order
    diffs = torch.diff(v1)
    assert int((diffs < 0).sum()) >= 3  # wrapped at least three times


def test_two_crops_max_overlap_bounds_the_shared_audio():
    crop = 16000
    for max_overlap in (0.0, 0.25, 0.5):
        crops = TwoCrops(1.0, 16000, seed=5, max_overlap=max_overlap)
        gaps = []
        for i in range(500):
            a, b = crops.offsets(f"u{i}", 5 * crop)
            assert 0 <= a <= 4 * crop and 0 <= b <= 4 * crop
            gaps.append(abs(a - b))
            assert crop - abs(a - b) <= max_overlap * crop  # shared samples
        # pairs are spread over the allowed gaps, both orders occur
        assert min(gaps) < (1.0 - max_overlap) * crop + 0.3 * crop and max(gaps) > 3.5 * crop
    orders = [crops.offsets(f"u{i}", 5 * crop) for i in range(200)]
    assert any(a < b for a, b in orders) and any(a > b for a, b in orders)
    # the mean gap matches uniform sampling over the valid pairs: E[gap] = high - 2/3 (high - min_gap)
    crops = TwoCrops(1.0, 16000, seed=0, max_overlap=0.0)
    mean = np.mean([abs(a - b) for a, b in (crops.offsets(f"v{i}", 5 * crop) for i in range(4000))])
    assert abs(mean - (4 * crop - 2 / 3 * 3 * crop)) < 0.03 * crop


def test_two_crops_max_overlap_short_utterance_takes_the_ends():
    crops = TwoCrops(1.0, 16000, seed=1, max_overlap=0.0)
    for i in range(50):  # 1.5 s: crops cannot be disjoint, so they sit at both ends
        assert sorted(crops.offsets(f"u{i}", 24000)) == [0, 8000]
    # shorter than a crop: wrapped as before, no separation possible or attempted
    assert len(crops.offsets("w", 8000)) == 2
    # one view (supervised pipeline) ignores the bound
    assert len(TwoCrops(1.0, 16000, n_views=1, max_overlap=0.0).offsets("u", 48000)) == 1
    with pytest.raises(ValueError, match="max_overlap"):
        TwoCrops(1.0, 16000, max_overlap=1.5)


def test_two_crops_default_is_unchanged_by_the_overlap_option():
    a = TwoCrops(0.5, 16000, seed=2)
    b = TwoCrops(0.5, 16000, seed=2, max_overlap=1.0)
    assert [a.offsets(f"u{i}", 40000) for i in range(20)] == [b.offsets(f"u{i}", 40000) for i in range(20)]


def test_two_view_dataset_rows_align(tmp_path):
    for i in range(2):
        sf.write(tmp_path / f"u{i}.wav", np.full(8000, i + 1, dtype=np.float32) / 4, 16000)
    csv = tmp_path / "m.csv"
    csv.write_text(
        "ID,duration,wav,start,stop,spk_id\n"
        "u0,0.5,$data_root/u0.wav,0,8000,s0\nu1,0.5,$data_root/u1.wav,0,8000,s1\n"
    )
    data = two_view_dataset(str(csv), str(tmp_path), TwoCrops(0.1, 16000))
    for i in range(2):
        item = data[i]
        assert item["id"] == f"u{i}"
        assert torch.allclose(item["view1"], torch.full((1600,), (i + 1) / 4))
        assert torch.allclose(item["view2"], torch.full((1600,), (i + 1) / 4))


def test_load_audio_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(AudioError, match="bad.wav"):
        load_audio(str(bad), 16000)
    sf.write(tmp_path / "r8.wav", np.zeros(80, dtype=np.float32), 8000)
    with pytest.raises(AudioError, match="8000 Hz"):
        load_audio(str(tmp_path / "r8.wav"), 16000)


def test_noise_manifest_segments_load_only_their_samples(tmp_path):
    sig = np.concatenate([np.full(1000, 0.1), np.full(1000, 0.4)]).astype(np.float32)
    sf.write(tmp_path / "n.wav", sig, 16000, subtype="FLOAT")
    csv = tmp_path / "noise.csv"
    csv.write_text(
        "ID,duration,wav,start,stop\n"
        f"a,0.06,{tmp_path / 'n.wav'},0,1000\nb,0.06,{tmp_path / 'n.wav'},1000,2000\n"
    )
    aug = AddNoiseBank(csv_file=str(csv))
    aug._load()
    assert [w.numel() for w in aug.bank] == [1000, 1000]
    assert torch.allclose(aug.bank[1], torch.full((1000,), 0.4))


def test_multichannel_rir_uses_the_first_channel(tmp_path):
    rir = np.zeros((800, 2), dtype=np.float32)
    rir[0, 0], rir[10, 1] = 1.0, 1.0
    sf.write(tmp_path / "r.wav", rir, 16000, subtype="FLOAT")
    rev = AddReverbFFT(folder=str(tmp_path))
    rev._load()
    assert int(rev.peaks[0]) == 0 and float(rev.rirs[0, 10]) == 0.0


def test_a_missing_audio_file_is_named_as_not_found(tmp_path):
    from speechbrain_moco.dataio import audio_frames

    for read in (lambda p: load_audio(p, 16000), audio_frames):
        with pytest.raises(AudioError, match="audio file not found: .*nope.wav"):
            read(str(tmp_path / "nope.wav"))
