"""Per-row spectral and level transforms: speed, random EQ (a channel), random gain (a level)."""

import math

import torch
import torch.nn.functional as F
import torchaudio

from speechbrain_moco.dataio.augment import rms


class SpeedPerturbRows(torch.nn.Module):
    """Resample each selected row by a random factor, keeping its length.

    Speed perturbation shifts pitch and formants, i.e. the speaker's identity:
    supervised recipes treat perturbed copies as new speakers, so in MoCo it is
    off by default (probability 0 in the recipes).
    """

    def __init__(self, sample_rate=16000, speeds=(95, 105)):
        super().__init__()
        self.sample_rate = sample_rate
        self.speeds = list(speeds)

    def forward(self, wavs, lengths=None):
        """Return speed-perturbed (B, T) waveforms (cropped or tiled to T)."""
        speed = self.speeds[int(torch.randint(len(self.speeds), ()))]
        out = torchaudio.functional.resample(wavs, self.sample_rate * speed // 100, self.sample_rate)
        if out.shape[1] < wavs.shape[1]:
            out = F.pad(out, (0, wavs.shape[1] - out.shape[1]))
        return out[:, : wavs.shape[1]]


class RandomEQ(torch.nn.Module):
    """Colour each row with its own random, smooth frequency response (a channel).

    A microphone, a codec or a room tilts and ripples the long-term spectrum; two
    crops of one recording share that colouring, so a contrastive model can match
    them on the channel instead of the voice, and a feature normalisation that
    keeps each utterance's spectrum (``feature_norm: global``) lets it. Drawing a
    different colouring per view removes the shortcut. The gain curve in dB is a
    random sum of ``n_bands`` cosines over log-frequency (lower ones weighted
    more, so it is smooth), scaled so its largest excursion is uniform in
    ``[0, max_db]``; applied zero-phase by FFT, RMS kept.

    Arguments
    ---------
    max_db : float
        Largest boost or cut of the curve.
    n_bands : int
        Cosine components (resolution of the curve over log-frequency).
    sample_rate : int
        Rate of the audio.
    min_freq : float
        Frequencies below it share its gain.

    Example
    -------
    >>> eq = RandomEQ(max_db=6.0)
    >>> x = torch.randn(2, 16000)
    >>> y = eq(x)
    >>> y.shape, bool(torch.allclose(rms(y), rms(x), rtol=1e-3))
    (torch.Size([2, 16000]), True)
    """

    def __init__(self, max_db=6.0, n_bands=6, sample_rate=16000, min_freq=60.0):
        super().__init__()
        if max_db < 0 or n_bands < 1:
            raise ValueError(f"RandomEQ needs max_db >= 0 and n_bands >= 1, got {max_db}, {n_bands}")
        self.max_db, self.n_bands = float(max_db), int(n_bands)
        self.sample_rate, self.min_freq = sample_rate, float(min_freq)

    def gains_db(self, batch, time, device=None):
        """(batch, time // 2 + 1) random gain curves in dB for ``time``-sample rows."""
        freqs = torch.fft.rfftfreq(time, 1.0 / self.sample_rate, device=device)
        lo, hi = math.log(self.min_freq), math.log(self.sample_rate / 2)
        pos = (torch.log(freqs.clamp(min=self.min_freq)) - lo) / (hi - lo)  # 0 .. 1
        k = torch.arange(1, self.n_bands + 1, device=device, dtype=torch.float32)
        basis = torch.cos(torch.pi * k[:, None] * pos[None, :])
        coef = (torch.rand(batch, self.n_bands, device=device) * 2 - 1) / k
        curve = coef @ basis
        peak = curve.abs().amax(dim=1, keepdim=True).clamp(min=1e-6)
        return curve / peak * torch.rand(batch, 1, device=device) * self.max_db

    def forward(self, wavs, lengths=None):
        """Return equalised (B, T) waveforms."""
        batch, time = wavs.shape
        gain = 10.0 ** (self.gains_db(batch, time, wavs.device) / 20.0)
        out = torch.fft.irfft(torch.fft.rfft(wavs.float(), dim=1) * gain, n=time, dim=1)
        out = out * rms(wavs, lengths) / (rms(out, lengths) + 1e-8)
        return out.to(wavs.dtype)


class RandomGain(torch.nn.Module):
    """Give each row its own random recording level.

    Two crops of one recording share its level (microphone gain, distance,
    the corpus' own normalisation), and with a feature normalisation that keeps
    each utterance's spectrum (``feature_norm: global``) a log-Fbank level is a
    constant offset the encoder can read: a contrastive model can match the views
    on their loudness instead of the voice. Each row's RMS (over its valid
    samples) is first set to ``level_db`` dBFS (``None``: keep the row's own
    level), then multiplied by a gain drawn uniformly in ``[-max_db, max_db]`` dB,
    so the source level says nothing about which rows belong together.

    Arguments
    ---------
    max_db : float
        Largest boost or cut.
    level_db : float or None
        RMS level (dB relative to full scale) every row is brought to before the
        random gain; ``None`` keeps each row's level.

    Example
    -------
    >>> gain = RandomGain(max_db=0.0, level_db=-26.0)
    >>> y = gain(torch.randn(2, 16000))
    >>> [round(20 * math.log10(float(r)), 2) for r in rms(y)]
    [-26.0, -26.0]
    """

    def __init__(self, max_db=6.0, level_db=-26.0):
        super().__init__()
        if max_db < 0:
            raise ValueError(f"RandomGain needs max_db >= 0, got {max_db}")
        self.max_db = float(max_db)
        self.level_db = None if level_db is None else float(level_db)

    def forward(self, wavs, lengths=None):
        """Return (B, T) waveforms at their new levels."""
        x = wavs.float()
        db = (torch.rand(x.shape[0], 1, device=x.device) * 2 - 1) * self.max_db
        scale = 10.0 ** (db / 20.0)
        if self.level_db is not None:
            scale = scale * 10.0 ** (self.level_db / 20.0) / (rms(x, lengths) + 1e-8)
        return (x * scale).to(wavs.dtype)
