"""Audio reading with explicit errors, and the file walker: one place where files become tensors."""

import os

import numpy as np
import soundfile as sf
import torch
import torchaudio


class AudioError(RuntimeError):
    """A file that cannot be used as training or test audio."""


def load_audio(path, sample_rate, resample=False, start=0, stop=None, channel=None):
    """Read ``path[start:stop]`` (in samples) as a mono float32 tensor.

    Multi-channel audio is averaged to mono, or ``channel`` is taken. A file at another rate raises
    ``AudioError`` unless ``resample=True`` (resampling only where declared).

    Example
    -------
    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.zeros((800, 2)), 16000)
    >>> load_audio(path, 16000, start=100, stop=300).shape
    torch.Size([200])
    """
    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: NaN or infinite samples (a corrupt float file)")
    if channel is not None:
        wav = torch.from_numpy(data[:, min(channel, data.shape[1] - 1)].copy())
    else:
        wav = torch.from_numpy(data).mean(dim=1)
    if rate != sample_rate:
        if not resample:
            raise AudioError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz")
        wav = torchaudio.functional.resample(wav, rate, sample_rate)
    return wav


def audio_frames(path):
    """Number of samples per channel in ``path`` (reads the header only)."""
    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}")
    try:
        return sf.info(path).frames
    except Exception as err:
        raise AudioError(f"cannot read audio file {path}: {err}") from err


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".sph")


def find_audio_files(folder, extensions=AUDIO_EXTENSIONS):
    """Sorted paths, relative to ``folder`` with ``/`` separators, of the audio files below it.

    The one file walker of the toolkit (corpus preparation, corruption banks, speaker
    splits): recursive, following symbolic links, extensions matched case-insensitively.

    Example
    -------
    >>> import tempfile, os, numpy as np
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "spk1", "s1"))
    >>> sf.write(os.path.join(root, "spk1", "s1", "b.WAV"), np.zeros(10), 16000)
    >>> sf.write(os.path.join(root, "a.flac"), np.zeros(10), 16000)
    >>> find_audio_files(root)
    ['a.flac', 'spk1/s1/b.WAV']
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"audio folder not found: {folder}")
    exts = tuple(e.lower() for e in extensions)
    found = []
    for root, _, files in os.walk(folder, followlinks=True):
        for name in files:
            if name.lower().endswith(exts):
                rel = os.path.relpath(os.path.join(root, name), folder)
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)
