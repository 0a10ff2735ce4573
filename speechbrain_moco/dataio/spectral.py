"""Per-row spectral and level transforms: speed, random EQ (a channel), random gain (a level)."""

import math

import torch
from speechbrain.processing.signal_processing import convolve1d, notch_filter

from speechbrain_moco.dataio.augment import rms


class SpeedPerturbRows(torch.nn.Module):
    """Play each row at its own random speed, keeping its length.

    The speed of every row is drawn uniformly in ``[speeds[0], speeds[1]]`` percent and
    applied by linear interpolation (time positions ``t * speed``); the end of a sped-up
    row is padded with zeros, a slowed-down row is cut to the length. Speed perturbation
    shifts pitch and formants, i.e. the speaker's identity: supervised recipes treat
    perturbed copies as new speakers, so in MoCo it is off by default (probability 0).

    Example
    -------
    >>> x = torch.arange(8.0).repeat(2, 1)
    >>> y = SpeedPerturbRows(speeds=(200, 200))(x)   # twice as fast: every other sample
    >>> y[0].tolist()
    [0.0, 2.0, 4.0, 6.0, 0.0, 0.0, 0.0, 0.0]
    """

    def __init__(self, sample_rate=16000, speeds=(95, 105)):
        super().__init__()
        self.sample_rate = sample_rate
        self.low, self.high = float(min(speeds)) / 100, float(max(speeds)) / 100

    def forward(self, wavs, lengths=None):
        """Return speed-perturbed (B, T) waveforms."""
        batch, time = wavs.shape
        speed = self.low + (self.high - self.low) * torch.rand(batch, 1, device=wavs.device)
        pos = torch.arange(time, device=wavs.device, dtype=torch.float32)[None, :] * speed
        left = pos.floor().long().clamp(max=time - 1)
        right = (left + 1).clamp(max=time - 1)
        frac = (pos - left).to(wavs.dtype)
        out = wavs.gather(1, left) * (1 - frac) + wavs.gather(1, right) * frac
        return out * (pos <= time - 1).to(wavs.dtype)


class DropFreqRows(torch.nn.Module):
    """SpeechBrain's ``DropFreq`` with its notches drawn for each row.

    ``DropFreq`` picks its notches once per call, so two views of an utterance that both
    go through it share them (a shortcut no queue negative has). Each row here gets
    ``drop_freq_count_low`` to ``drop_freq_count_high`` notches at frequencies uniform in
    ``[drop_freq_low, drop_freq_high]`` (fractions of the Nyquist frequency): the same
    101-tap notch filters as ``DropFreq`` (``notch_filter`` of ``drop_freq_width``,
    cascaded and applied by ``convolve1d`` as it does), so a row's output is exactly
    ``DropFreq``'s for the frequencies drawn for it, and the augmentation as strong.

    Example
    -------
    >>> drop = DropFreqRows(drop_freq_count_low=1, drop_freq_count_high=1)
    >>> y = drop(torch.randn(1, 1600).repeat(3, 1))
    >>> bool((y[0] - y[1]).abs().max() > 0), y.shape
    (True, torch.Size([3, 1600]))
    """

    filter_length = 101  # DropFreq's

    def __init__(
        self,
        drop_freq_low=1e-14,
        drop_freq_high=1.0,
        drop_freq_count_low=1,
        drop_freq_count_high=3,
        drop_freq_width=0.05,
    ):
        super().__init__()
        if not 0 <= drop_freq_count_low <= drop_freq_count_high:
            raise ValueError("need 0 <= drop_freq_count_low <= drop_freq_count_high")
        self.low, self.high, self.width = float(drop_freq_low), float(drop_freq_high), float(drop_freq_width)
        self.count_low, self.count_high = int(drop_freq_count_low), int(drop_freq_count_high)

    def row_filter(self, frequencies):
        """The (1, 101, 1) cascade of DropFreq's notch filters at ``frequencies``."""
        pad = self.filter_length // 2
        kernel = torch.zeros(1, self.filter_length, 1)
        kernel[0, pad, 0] = 1
        for frequency in frequencies:
            kernel = convolve1d(kernel, notch_filter(frequency, self.filter_length, self.width), pad)
        return kernel

    def forward(self, wavs, lengths=None):
        """Return (B, T) waveforms, each row with its own notches."""
        batch = wavs.shape[0]
        counts = torch.randint(self.count_low, self.count_high + 1, (batch,))
        span = self.high - self.low
        frequencies = (torch.rand(batch, self.count_high) * span + self.low).clamp(min=1e-14)
        kernels = torch.cat([self.row_filter(frequencies[b, : counts[b]]) for b in range(batch)], dim=0).to(
            device=wavs.device, dtype=wavs.dtype
        )  # (B, 101, 1)
        # one grouped convolution: row b with its own kernel (DropFreq's convolve1d, per row)
        out = convolve1d(wavs.t().unsqueeze(0), kernels, padding=self.filter_length // 2, groups=batch)
        return out.squeeze(0).t()  # (1, T, B) -> (B, T)


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
