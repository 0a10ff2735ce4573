"""Waveform augmentation for the two MoCo views, vectorised over the batch.

Each view of a pair is augmented independently: every transform is applied
to a random subset of rows (probability ``prob`` per row), so the two views of
one utterance rarely share a corruption. Additive noise and reverberation read
SpeechBrain-style manifests (``ID,duration,wav,...``), keep the corruption
files in memory, and convolve with FFTs on the training device: SpeechBrain's
``AddReverb`` uses one impulse response per batch and time-domain
convolution, which on CPU cost as much as the encoder itself.
"""

import csv
import inspect
import math

import torch
import torch.nn.functional as F
import torchaudio
from speechbrain.utils.logger import get_logger

from speechbrain_moco.audio import list_audio_files, load_audio

logger = get_logger(__name__)


def bank_paths(csv_file=None, folder=None, replacements=None):
    """``(path, start, stop)`` segments of a corruption manifest or a folder.

    ``start``/``stop`` (samples at the file's own rate) come from the manifest
    when it has them, so chunked noise manifests load each chunk only.
    """
    if csv_file is None:
        return [(path, 0, None) for path in list_audio_files(folder)]
    paths = []
    with open(csv_file, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.DictReader(f), start=2):
            if not row.get("wav"):
                raise ValueError(f"{csv_file}:{lineno}: no 'wav' value")
            path = row["wav"]
            for key, value in (replacements or {}).items():
                path = path.replace("$" + key, str(value))
            start = int(row.get("start") or 0)
            stop = int(row["stop"]) if row.get("stop") not in (None, "", "-1") else None
            paths.append((path, start, stop))
    return paths


def load_bank(segments, sample_rate, max_seconds=None, channel=None):
    """Load corruption segments as a list of mono 1-D tensors at ``sample_rate``.

    Files at another sample rate are resampled here (the declared place),
    multi-channel files are averaged (or ``channel`` is taken: impulse
    responses of microphone arrays must not be averaged), each segment is cut
    to ``max_seconds`` when given, and empty or silent ones are skipped with a
    warning.
    """
    bank = []
    for path, start, stop in segments:
        wav = load_audio(path, sample_rate, resample=True, start=start, stop=stop, channel=channel)
        if max_seconds is not None:
            wav = wav[: int(max_seconds * sample_rate)]
        if wav.numel() == 0 or float(wav.abs().max()) == 0.0:
            logger.warning("empty or silent corruption file skipped: %s", path)
            continue
        bank.append(wav)
    if not bank:
        raise ValueError(f"no usable corruption audio among {len(segments)} segments")
    logger.info("loaded %d corruption files (%.1f s)", len(bank),
                sum(w.numel() for w in bank) / sample_rate)
    return bank


def _rms(x, lengths=None):
    """Root mean square over the valid samples of each row."""
    if lengths is None:
        return x.pow(2).mean(dim=1, keepdim=True).sqrt()
    n = (lengths * x.shape[1]).round().clamp(min=1).unsqueeze(1)
    mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < n
    return ((x * mask).pow(2).sum(dim=1, keepdim=True) / n).sqrt()


class AddNoiseBank(torch.nn.Module):
    """Add a random noise excerpt to each row at a random SNR.

    Arguments
    ---------
    csv_file : str
        Noise manifest (``wav`` column).
    folder : str
        Folder of noise files, used when ``csv_file`` is None. With neither,
        white noise is added.
    snr_low, snr_high : float
        SNR range in dB.
    sample_rate : int
        Rate of the clean speech; noise is resampled to it.
    replacements : dict
        ``$key`` substitutions in the manifest's paths.

    Example
    -------
    >>> noise = AddNoiseBank(None, snr_low=10, snr_high=10)
    >>> x = torch.sin(torch.arange(16000.0) / 5).repeat(2, 1)
    >>> y = noise(x, torch.ones(2))
    >>> snr = 20 * torch.log10(_rms(x) / _rms(y - x))
    >>> torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.01)
    True
    """

    def __init__(self, csv_file=None, folder=None, snr_low=0.0, snr_high=15.0,
                 sample_rate=16000, replacements=None):
        super().__init__()
        self.snr_low, self.snr_high = snr_low, snr_high
        self.sample_rate = sample_rate
        self.source = (csv_file, folder, replacements)
        self.bank = None  # loaded at first use, after data preparation

    def _load(self):
        csv_file, folder, replacements = self.source
        if self.bank is None and (csv_file or folder):
            self.bank = load_bank(bank_paths(csv_file, folder, replacements), self.sample_rate)

    def _excerpts(self, batch, length, device):
        rows = []
        for _ in range(batch):
            noise = self.bank[int(torch.randint(len(self.bank), ()))]
            if noise.numel() < length:
                noise = noise.repeat(length // noise.numel() + 1)
            start = int(torch.randint(noise.numel() - length + 1, ()))
            rows.append(noise[start : start + length])
        return torch.stack(rows).to(device)

    def forward(self, wavs, lengths):
        """Return noisy (B, T) waveforms; ``lengths`` are relative (B,)."""
        self._load()
        if self.bank is None:
            noise = torch.randn_like(wavs)
        else:
            noise = self._excerpts(wavs.shape[0], wavs.shape[1], wavs.device).to(wavs.dtype)
        snr = torch.rand(wavs.shape[0], 1, device=wavs.device) * (self.snr_high - self.snr_low) + self.snr_low
        scale = _rms(wavs, lengths) / (_rms(noise) + 1e-8) / (10 ** (snr / 20))
        return wavs + noise * scale


class AddReverbFFT(torch.nn.Module):
    """Convolve each row with its own random impulse response, via FFT.

    The output is aligned on the direct-path peak of the impulse response and
    rescaled to the input's RMS, like SpeechBrain's ``reverberate``.

    Arguments
    ---------
    csv_file : str
        Impulse-response manifest (``wav`` column).
    folder : str
        Folder of impulse responses, used when ``csv_file`` is None. With
        neither, ``n_synthetic`` exponentially decaying noise responses
        (RT60 0.2-0.8 s) are generated from the seed.
    sample_rate : int
        Rate of the speech; responses are resampled to it.
    max_rir_seconds : float
        Responses are truncated to this length (long hall tails mostly add
        cost, not realism, at 2 s crops).
    replacements : dict
        ``$key`` substitutions in the manifest's paths.
    """

    def __init__(self, csv_file=None, folder=None, sample_rate=16000, max_rir_seconds=1.0,
                 replacements=None, n_synthetic=64, seed=0):
        super().__init__()
        self.sample_rate, self.max_rir_seconds = sample_rate, max_rir_seconds
        self.source = (csv_file, folder, replacements, n_synthetic, seed)
        self.rirs = None  # loaded at first use, after data preparation

    def _load(self):
        if self.rirs is not None:
            return
        csv_file, folder, replacements, n_synthetic, seed = self.source
        if csv_file or folder:
            bank = load_bank(bank_paths(csv_file, folder, replacements), self.sample_rate,
                             self.max_rir_seconds, channel=0)
        else:
            bank = synthetic_rirs(n_synthetic, self.sample_rate, self.max_rir_seconds, seed)
        length = max(r.numel() for r in bank)
        rirs = torch.zeros(len(bank), length)
        peaks = torch.zeros(len(bank), dtype=torch.long)
        for i, r in enumerate(bank):
            rirs[i, : r.numel()] = r / r.abs().max()
            peaks[i] = r.abs().argmax()
        self.rirs, self.peaks = rirs, peaks

    def forward(self, wavs, lengths=None):
        """Return reverberated (B, T) waveforms."""
        self._load()
        batch, time = wavs.shape
        idx = torch.randint(self.rirs.shape[0], (batch,))
        rir = self.rirs[idx].to(wavs.device, torch.float32)
        n_fft = 1 << (time + rir.shape[1] - 1).bit_length()
        spec = torch.fft.rfft(wavs.float(), n_fft) * torch.fft.rfft(rir, n_fft)
        full = torch.fft.irfft(spec, n_fft)
        offset = self.peaks[idx].to(wavs.device).unsqueeze(1)
        gather = torch.arange(time, device=wavs.device).unsqueeze(0) + offset
        out = full.gather(1, gather)
        out = out * _rms(wavs, lengths) / (_rms(out, lengths) + 1e-8)
        return out.to(wavs.dtype)


def synthetic_rirs(n, sample_rate=16000, max_seconds=1.0, seed=0, rt60=(0.2, 0.8)):
    """Exponentially decaying Gaussian-noise impulse responses.

    Example
    -------
    >>> rirs = synthetic_rirs(3, 8000, 0.5)
    >>> len(rirs), rirs[0].shape, int(rirs[0].abs().argmax())
    (3, torch.Size([4000]), 0)
    """
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(max_seconds * sample_rate)) / sample_rate
    out = []
    for _ in range(n):
        rt = rt60[0] + (rt60[1] - rt60[0]) * float(torch.rand((), generator=gen))
        tail = torch.randn(t.numel(), generator=gen) * torch.exp(-6.908 * t / rt)
        tail[0] = 0.0
        tail = 0.5 * tail / tail.abs().max()
        tail[0] = 1.0  # direct path
        out.append(tail)
    return out


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
    >>> y.shape, bool(torch.allclose(_rms(y), _rms(x), rtol=1e-3))
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
        out = out * _rms(wavs, lengths) / (_rms(out, lengths) + 1e-8)
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
    >>> [round(20 * math.log10(float(r)), 2) for r in _rms(y)]
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
            scale = scale * 10.0 ** (self.level_db / 20.0) / (_rms(x, lengths) + 1e-8)
        return (x * scale).to(wavs.dtype)


class RandomAugment(torch.nn.Module):
    """Apply each transform to a random subset of rows.

    Arguments
    ---------
    transforms : list of torch.nn.Module
        Waveform transforms ``f(wavs)`` or ``f(wavs, lengths)``.
    probs : list of float
        Per-row probability of each transform (same order).

    Example
    -------
    >>> aug = RandomAugment([AddNoiseBank(None, 0, 0)], [0.0])
    >>> x = torch.randn(3, 100)
    >>> torch.equal(aug(x, torch.ones(3)), x)
    True
    """

    def __init__(self, transforms, probs):
        super().__init__()
        if len(transforms) != len(probs):
            raise ValueError("one probability per transform is needed")
        self.transforms = torch.nn.ModuleList(transforms)
        self.probs = [float(p) for p in probs]
        self.takes_lengths = [
            len(inspect.signature(t.forward).parameters) >= 2 for t in transforms
        ]

    def forward(self, wavs, lengths):
        """Return augmented (B, T) waveforms (a new tensor)."""
        out = wavs.clone()
        for transform, prob, with_len in zip(self.transforms, self.probs, self.takes_lengths):
            if prob <= 0:
                continue
            rows = (torch.rand(out.shape[0]) < prob).nonzero().squeeze(1).to(out.device)
            if rows.numel() == 0:
                continue
            args = (out[rows], lengths[rows]) if with_len else (out[rows],)
            res = transform(*args)
            out[rows] = res[:, : out.shape[1]].to(out.dtype)
        return out
