"""Source-filter "speech" synthesiser behind :mod:`data_prep.synthetic_corpus`.

Speakers are parameter sets (:func:`draw_speaker`: f0 and intonation, jitter, shimmer,
vocal-tract length, bandwidths, tilt, breathiness, rate, extra resonances, personal
vowels). :func:`synthesise` renders a random phone sequence with smooth formant
transitions and an f0 contour with declination and accents: harmonics are summed
vectorised (harmonics x samples), noise is shaped in the STFT domain and overlap-added.
:func:`apply_channel` adds a random recording channel (EQ, band limits, noise, level).

Example
-------
>>> rng = np.random.default_rng(0)
>>> x = apply_channel(synthesise(draw_speaker(rng), 0.5, 16000, rng), 16000, rng)
>>> x.shape, bool(0.29 < np.abs(x).max() <= 0.5)
((8000,), True)
"""

import numpy as np
import soundfile

N_FFT, HOP = 512, 128
# (F1, F2, F3) targets in Hz for an average adult vocal tract.
VOWELS = np.array(
    [[730, 1090, 2440], [570, 840, 2410], [300, 870, 2240], [440, 1020, 2240],
     [640, 1190, 2390], [520, 1190, 2390], [490, 1350, 1690], [660, 1720, 2410],
     [530, 1840, 2480], [390, 1990, 2550], [270, 2290, 3010]], dtype=float,
)  # fmt: skip
# Fricatives: (centre Hz, bandwidth Hz).
FRICATIVES = np.array([[5500, 2500], [3200, 1400], [6500, 3000], [1800, 1500]], float)
F4, F5 = 3500.0, 4500.0
PHONE_PROBS = (0.76, 0.2, 0.04)  # vowel, fricative, pause (as in VAD-trimmed speech)
# Ranges of the per-utterance recording channel (see ``apply_channel``).
CHANNEL = {
    "tilt_db_per_oct": 1.5,  # EQ tilt drawn in +-this
    "n_bumps": 2,  # peaking filters ...
    "bump_db": 3.0,  # ... of gain drawn in +-this
    "low_cut": (60.0, 300.0),  # Hz
    "high_cut": (6000.0, None),  # Hz, up to Nyquist
    "snr_db": (20.0, 40.0),  # background noise
}


def draw_speaker(rng):
    """Draw one speaker's parameters (JSON-serialisable dict)."""
    return {
        "f0": float(np.exp(rng.uniform(np.log(85), np.log(260)))),
        "f0_depth": float(rng.uniform(1.5, 5.0)),  # semitones of intonation
        "jitter": float(rng.uniform(0.003, 0.02)),
        "shimmer": float(rng.uniform(0.02, 0.15)),
        "vtl": float(rng.uniform(0.82, 1.2)),  # formant frequency scale
        "bw_scale": float(rng.uniform(0.7, 1.6)),
        "tilt": float(rng.uniform(-12.0, -2.0)),  # dB / octave of the glottal source
        "breath": float(rng.uniform(0.03, 0.4)),  # aspiration / voiced RMS
        "rate": float(rng.uniform(7.0, 13.0)),  # phones per second
        "fric_level": float(np.exp(rng.uniform(-2.5, -0.7))),  # / voiced RMS
        "res_freq": float(rng.uniform(2300, 4200)),
        "res_gain": float(rng.uniform(0.0, 15.0)),  # dB
        "nasal": float(rng.uniform(0.0, 12.0)),  # dB at ~250 Hz
        "vowel_shift": rng.normal(0.0, 0.06, size=VOWELS.shape).round(4).tolist(),
    }


def _phones(rng, spk, n_frames, fps):
    """Per-frame tracks: formants (F, 3), voicing, fricative type/gain, loudness."""
    kinds, durs = [], [0.0]
    while sum(durs) < n_frames / fps:
        kinds.append(np.searchsorted(np.cumsum(PHONE_PROBS), rng.random()))
        durs.append(max(rng.gamma(4.0, 0.25) / spk["rate"], 0.03))
    bounds = np.round(np.cumsum(durs) * fps).astype(int)
    formants, fric = np.empty((n_frames, 3)), np.zeros((n_frames, 2))
    voiced, fric_gain, loud = np.zeros((3, n_frames))
    vowel_f = VOWELS * (1.0 + np.asarray(spk["vowel_shift"])) * spk["vtl"]
    prev = vowel_f[rng.integers(len(VOWELS))]
    for kind, a, b in zip(kinds, bounds[:-1], bounds[1:]):
        a, b = min(a, n_frames), min(b, n_frames)
        if kind == 0:
            target = vowel_f[rng.integers(len(VOWELS))] * rng.normal(1.0, 0.03, 3)
            voiced[a:b] = 1.0
            loud[a:b] = rng.uniform(0.6, 1.0)
        else:
            target = prev
            if kind == 1:
                fric[a:b] = FRICATIVES[rng.integers(len(FRICATIVES))] * spk["vtl"]
                fric_gain[a:b] = spk["fric_level"] * rng.uniform(0.8, 1.25)
        formants[a:b] = target
        prev = target
    return formants, voiced, fric, fric_gain, loud


def _smooth(x, width):
    """Moving average along axis 0 with edge padding (smooth transitions)."""
    pads = [(width // 2, width - 1 - width // 2)] + [(0, 0)] * (x.ndim - 1)
    padded = np.pad(np.pad(x, pads, "edge"), [(1, 0)] + pads[1:])  # leading 0 row
    c = np.cumsum(padded, axis=0)
    return (c[width:] - c[:-width]) / width


def _envelope_db(freqs, formants, bws, spk):
    """Vocal-tract + source log-magnitude (dB) at ``freqs`` (T, K) given formants (T, 5)."""
    f = np.maximum(freqs, 1.0)[..., None]
    fc, half = formants[:, None, :], bws[:, None, :] / 2
    den = ((f - fc) ** 2 + half**2) * ((f + fc) ** 2 + half**2)
    db = 10 * np.log10((fc**2 + half**2) ** 2 / den).sum(-1)
    db += spk["tilt"] * np.log2(np.maximum(f[..., 0], 80.0) / 100.0)
    db += spk["res_gain"] * np.exp(-0.5 * ((f[..., 0] - spk["res_freq"]) / 300) ** 2)
    db += spk["nasal"] * np.exp(-0.5 * ((f[..., 0] - 250 * spk["vtl"]) / 80) ** 2)
    return db


def synthesise(spk, duration, sample_rate, rng):
    """Synthesise one utterance (float64 mono, peak ~0.5) for speaker parameters ``spk``."""
    n = round(duration * sample_rate)
    fps = sample_rate / HOP
    n_frames = n // HOP + 2
    formants, voiced, fric, fric_gain, loud = _phones(rng, spk, n_frames, fps)
    high = np.full((n_frames, 2), [F4 * spk["vtl"], F5 * spk["vtl"]])
    formants = np.hstack([_smooth(formants, max(3, int(0.05 * fps))), high])
    bws = np.tile(np.array([80.0, 100, 140, 200, 260]) * spk["bw_scale"], (n_frames, 1))
    voiced = _smooth(voiced, 3)
    amp = voiced * _smooth(loud, 5) * np.exp(rng.normal(0, spk["shimmer"], n_frames))

    # f0 contour: per-utterance shift, declination, accents, slow wander, jitter.
    t = np.arange(n_frames) / fps
    semis = rng.normal(0, 1.0) - 2.0 * t / max(t[-1], 1e-3)
    for c in rng.uniform(0, t[-1], size=max(1, int(t[-1] * 1.5))):  # accents
        depth = spk["f0_depth"] * rng.uniform(0.3, 1.0)
        semis += depth * np.exp(-0.5 * ((t - c) / 0.12) ** 2)
    semis += _smooth(rng.normal(0, 2.0, n_frames), int(0.2 * fps) | 1)
    f0_frames = spk["f0"] * 2 ** (semis / 12)
    f0 = np.interp(np.arange(n) / HOP, np.arange(n_frames), f0_frames)
    f0 *= 1 + spk["jitter"] * _smooth(rng.normal(0, 1, n), 5) * np.sqrt(5)

    # Harmonics: amplitude from the envelope at k*f0 per frame, upsampled to samples.
    max_f = min(7000.0, 0.45 * sample_rate)
    n_harm = int(max_f / f0.min())
    k = np.arange(1, n_harm + 1)
    hf = f0_frames[:, None] * k[None, :]  # (T, H)
    gain = 10 ** (_envelope_db(hf, formants, bws, spk) / 20) * amp[:, None]
    w = (np.arange(HOP) / HOP).astype(np.float32)
    g = gain.T.astype(np.float32)[:, :, None]
    harm_amp = (g[:, :-1] * (1 - w) + g[:, 1:] * w).reshape(n_harm, -1)[:, :n]  # (H, N)
    harm_amp *= k[:, None] * f0[None, :] < max_f
    # frac(k * c) == frac(k * frac(c)) for integer k: float32 keeps ~1e-5 cycle accuracy.
    cycles = np.cumsum(f0 / sample_rate)
    frac = (cycles - np.floor(cycles)).astype(np.float32)
    two_pi_k = (2 * np.pi * k).astype(np.float32)[:, None]
    phase0 = rng.uniform(0, 2 * np.pi, (n_harm, 1)).astype(np.float32)
    voiced_sig = (harm_amp * np.sin(two_pi_k * frac + phase0)).sum(0, dtype=float)

    # Noise (aspiration through the vocal tract, fricatives), shaped in the STFT domain.
    bins = np.fft.rfftfreq(N_FFT, 1 / sample_rate)
    asp_db = _envelope_db(np.tile(bins, (n_frames, 1)), formants, bws, spk)
    asp_env = 10 ** (asp_db / 20) * amp[:, None] * (bins > 400)
    z = (bins[None] - fric[:, :1]) / np.maximum(fric[:, 1:], 1)
    fric_env = np.exp(-0.5 * z**2) * _smooth(fric_gain, 3)[:, None]
    asp, fricative = (
        _overlap_add(np.fft.irfft(e * rng.normal(size=e.shape) * np.exp(2j * np.pi *
                     rng.random(e.shape)), N_FFT) * np.hanning(N_FFT), n)
        for e in (asp_env, fric_env)
    )  # fmt: skip
    ref = np.sqrt(np.mean(voiced_sig**2)) + 1e-9
    asp *= spk["breath"] * ref / (np.sqrt(np.mean(asp**2)) + 1e-12)
    per_gain = np.sqrt(np.mean(fricative**2) / (np.mean(fric_gain**2) + 1e-12))
    fricative *= ref / (per_gain + 1e-12)
    return voiced_sig + asp + fricative


def _overlap_add(frames, n):
    """Overlap-add frames (T, N_FFT) with hop ``HOP`` and crop to ``n`` samples."""
    out = np.zeros((frames.shape[0] + N_FFT // HOP) * HOP)
    for r in range(N_FFT // HOP):
        seg = frames[r :: N_FFT // HOP].reshape(-1)
        out[r * HOP : r * HOP + seg.size] += seg
    return out[N_FFT // 2 : N_FFT // 2 + n]


def apply_channel(x, sample_rate, rng, channel=None):
    """Random channel: EQ tilt, bumps, band limits, noise, level.

    ``channel`` overrides entries of :data:`CHANNEL` (ranges of the random draws).
    """
    c = {**CHANNEL, **(channel or {})}
    f = np.fft.rfftfreq(x.size, 1 / sample_rate)
    octs = np.log2(np.maximum(f, 20) / 1000)
    db = rng.uniform(-1, 1) * c["tilt_db_per_oct"] * octs
    for _ in range(c["n_bumps"]):
        centre, width = rng.uniform(np.log2(0.2), np.log2(6.0)), rng.uniform(0.3, 1.2)
        bump = np.exp(-0.5 * ((octs - centre) / width) ** 2)
        db += rng.uniform(-1, 1) * c["bump_db"] * bump
    lo = rng.uniform(*c["low_cut"])
    hi = rng.uniform(c["high_cut"][0], 0.5 * sample_rate)
    shape = 10 ** (db / 20) / np.sqrt(1 + (lo / np.maximum(f, 1)) ** 4)
    shape /= np.sqrt(1 + (f / hi) ** 8)
    y = np.fft.irfft(np.fft.rfft(x) * shape, x.size)
    colour = (np.maximum(f, 50) / 1000) ** rng.uniform(-1.0, 0.3)
    noise = np.fft.irfft(np.fft.rfft(rng.normal(size=x.size)) * colour, x.size)
    snr = rng.uniform(*c["snr_db"])
    noise *= np.sqrt(np.mean(y**2) / np.mean(noise**2) / 10 ** (snr / 10))
    y += noise
    return y * rng.uniform(0.3, 0.5) / np.max(np.abs(y))


def render_utterance(job, durations, sample_rate):
    """Synthesise one utterance from ``job = (path, speaker, seed_key)`` and write it.

    ``seed_key`` seeds the utterance's own ``Generator`` (duration, content, channel), so
    the bytes do not depend on the order or the process that renders them.
    """
    path, spk, seed_key = job
    rng = np.random.default_rng(seed_key)
    dur = rng.uniform(*durations)
    x = apply_channel(synthesise(spk, dur, sample_rate, rng), sample_rate, rng)
    soundfile.write(path, x, sample_rate, "PCM_16")
