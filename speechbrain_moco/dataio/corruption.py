"""Additive noise and reverberation from corruption banks, per row, on the training device.

Both read SpeechBrain-style manifests (``ID,duration,wav,...``) or a folder of audio
files, keep the corruption audio in memory, and work on a whole batch at once:
reverberation is an FFT convolution with one impulse response per row (SpeechBrain's
``AddReverb`` uses one impulse response per batch and time-domain convolution, which
on CPU cost as much as the encoder itself).
"""

import os

import torch
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.audio import find_audio_files, load_audio
from speechbrain_moco.dataio.augment import rms
from speechbrain_moco.dataio.manifest import iter_csv

logger = get_logger(__name__)


def bank_paths(csv_file=None, folder=None, replacements=None):
    """``(path, start, stop)`` segments of a corruption manifest or a folder.

    ``start``/``stop`` (samples at the file's own rate) come from the manifest
    when it has them, so chunked noise manifests load each chunk only.
    """
    if csv_file is None:
        return [(os.path.join(folder, rel), 0, None) for rel in find_audio_files(folder)]
    paths = []
    for lineno, row in iter_csv(csv_file, required=("wav",)):
        if not row["wav"]:
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
    logger.info("loaded %d corruption files (%.1f s)", len(bank), sum(w.numel() for w in bank) / sample_rate)
    return bank


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
    >>> snr = 20 * torch.log10(rms(x) / rms(y - x))
    >>> torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.01)
    True
    """

    def __init__(
        self, csv_file=None, folder=None, snr_low=0.0, snr_high=15.0, sample_rate=16000, replacements=None
    ):
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
        scale = rms(wavs, lengths) / (rms(noise) + 1e-8) / (10 ** (snr / 20))
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

    def __init__(
        self,
        csv_file=None,
        folder=None,
        sample_rate=16000,
        max_rir_seconds=1.0,
        replacements=None,
        n_synthetic=64,
        seed=0,
    ):
        super().__init__()
        self.sample_rate, self.max_rir_seconds = sample_rate, max_rir_seconds
        self.source = (csv_file, folder, replacements, n_synthetic, seed)
        self.rirs = None  # loaded at first use, after data preparation

    def _load(self):
        if self.rirs is not None:
            return
        csv_file, folder, replacements, n_synthetic, seed = self.source
        if csv_file or folder:
            bank = load_bank(
                bank_paths(csv_file, folder, replacements), self.sample_rate, self.max_rir_seconds, channel=0
            )
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
        out = out * rms(wavs, lengths) / (rms(out, lengths) + 1e-8)
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
