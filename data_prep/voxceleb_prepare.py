"""Prepare VoxCeleb1 / VoxCeleb2 manifests, and convert VoxCeleb2's m4a files to wav.

Layouts (one root, or a list of roots such as ``[vox1, vox2/dev]``):

* VoxCeleb1: ``<root>/wav/idXXXXX/<video>/NNNNN.wav``
* VoxCeleb2: ``<root>/aac/idXXXXX/<video>/NNNNN.m4a``; :func:`prepare_voxceleb` first
  converts them (resumably) into ``<root>/wav`` with :func:`convert_m4a`, or uses a
  ``<root>/wav`` folder converted before.

Outputs in ``save_folder``: ``train.csv`` and ``dev.csv`` (``ID,duration,wav,start,stop,spk_id``
with IDs such as ``id10001/1zcIwhmdeo4/00001``), and with trial lists ``enrol.csv`` /
``test.csv`` (enrol-side and test-side utterances of all lists), one normalised
VoxCeleb-format copy ``trials_<list name>.txt`` per list (names relative to ``$data_root``,
so ``verify.py --data_folder=<$data_root>`` scores it), ``skipped.txt`` and
``prepare_options.json``. ``$data_root`` is the root, or the common parent folder of the
roots when several are given (also saved as ``data_root`` in the options file).

Trial lists may be official VoxCeleb lists (``1 id10270/x6uYqmx31kE/00001.wav ...``, incl.
the cleaned Vox1-O/E/H ``veri_test2.txt``, ``list_test_all2.txt``, ``list_test_hard2.txt``)
or Kaldi lists (``id10270-x6uYqmx31kE-00001 id10309-... target``); names are relative to
``<root>/wav``. Every speaker of any list is excluded from train/dev. Bad input: see
:mod:`data_prep.speaker_prep` (unusable files go to ``skipped.txt``, missing trial files
raise naming list and line, m4a conversion failures are listed in
``<root>/wav/conversion_failures.txt``).

m4a conversion uses ``ffmpeg`` when it is on ``PATH`` (``apt-get install ffmpeg`` or
``conda install -c conda-forge ffmpeg``), else ``torchaudio.load`` if torchcodec is
installed; otherwise :func:`convert_m4a` raises a ``RuntimeError`` saying so. Audio is
decoded as is: no resampling, no down-mixing (prep then skips files that are not 16 kHz mono).
"""

import importlib.util
import os
import re
import shutil
import subprocess
from functools import partial
from multiprocessing import Pool

from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from data_prep.speaker_prep import (
    check_splits,
    probe_entries,
    roots_and_data_root,
    speaker_outputs,
    write_speaker_prep,
)
from speechbrain_moco.dataio.audio import find_audio_files
from speechbrain_moco.dataio.manifest import options_match, utterance_id
from speechbrain_moco.dataio.trials import read_trial_ids

logger = get_logger(__name__)

FAILURES_FILE = "conversion_failures.txt"
_KALDI_ID = re.compile(r"^(id\d+)-(.+)-(\d+)$")


def voxceleb_id(name):
    """Utterance ID of a trial-list name (VoxCeleb path or Kaldi utterance ID).

    Example
    -------
    >>> voxceleb_id("id10270/x6uYqmx31kE/00001.wav")
    'id10270/x6uYqmx31kE/00001'
    >>> voxceleb_id("id10270-5r0d-Wxy17C8-00001")
    'id10270/5r0d-Wxy17C8/00001'
    """
    uid = utterance_id(name)
    match = _KALDI_ID.match(uid) if "/" not in uid else None
    return "/".join(match.groups()) if match else uid


def prepare_voxceleb(
    data_folder,
    save_folder,
    verification_file=None,
    splits=("train", "dev"),
    dev_ratio=0.01,
    chunk_seconds=None,
    sample_rate=16000,
    seed=1234,
    check_silence=False,
    num_workers=4,
    skip_prep=False,
):
    """Write VoxCeleb train/dev (and enrol/test/trial) manifests.

    Arguments
    ---------
    data_folder : str or list of str
        VoxCeleb1 and/or VoxCeleb2 root(s), each holding ``wav/`` and/or ``aac/``.
    save_folder : str
        Output folder.
    verification_file : str or list of str, optional
        Trial list(s), absolute or relative to the first root. Their speakers are
        excluded from train/dev; their utterances form ``enrol.csv`` / ``test.csv``.
    splits : tuple of str
        Manifests to write, among ``"train"`` and ``"dev"``; without ``"dev"`` no
        utterance is held out.
    dev_ratio : float
        Fraction of training utterances held out (by ``seed``) for ``dev.csv``.
    chunk_seconds : float, optional
        Cut train/dev utterances into consecutive chunks of this length (IDs
        ``<ID>_<start>_<stop>``, samples); a remainder shorter than a chunk is dropped,
        an utterance shorter than a chunk is kept whole. Enrol/test stay whole.
    sample_rate : int
        Required rate; other files are skipped (listed in ``skipped.txt``), not resampled.
    seed : int
        Seed of the dev split.
    check_silence : bool
        Also decode every file and skip all-silent ones (a full read of the corpus).
    num_workers : int
        Processes for m4a conversion and for probing large corpora.
    skip_prep : bool
        Only return the output paths.

    Returns
    -------
    dict
        Output paths (``train``, ``dev``, ``skipped``, ``enrol``, ``test``, ``trials_<name>``)
        and ``data_root``, the ``$data_root`` of the manifests.
    """
    roots, data_root = roots_and_data_root(data_folder)
    lists = verification_file
    if lists is not None:
        lists = [lists] if isinstance(lists, (str, os.PathLike)) else list(lists)
        lists = [_find_list(roots[0], str(p)) for p in lists]
    names = [f"trials_{os.path.splitext(os.path.basename(p))[0]}" for p in lists or ()]
    if len(set(names)) != len(names):
        raise ValueError(f"trial lists with the same file name: {lists}")
    outputs = speaker_outputs(save_folder, splits, bool(lists), names)
    if skip_prep:
        return dict(outputs, data_root=data_root)
    options = {
        "corpus": "voxceleb",
        "data_folder": roots,
        "data_root": data_root,
        "verification_file": lists,
        "splits": list(check_splits(splits)),
        "dev_ratio": dev_ratio,
        "chunk_seconds": chunk_seconds,
        "sample_rate": sample_rate,
        "seed": seed,
        "check_silence": check_silence,
    }
    if options_match(save_folder, options, outputs.values()):
        logger.info("VoxCeleb manifests in %s are up to date, skipping", save_folder)
        return dict(outputs, data_root=data_root)

    entries, skipped = [], []
    for root in roots:
        more, bad = _voxceleb_entries(root, data_root, num_workers)
        entries += more
        skipped += bad
    rows, bad = probe_entries(entries, data_root, sample_rate, check_silence, num_workers)
    skipped += bad
    by_id = {row["ID"]: row for row in rows}
    skipped_ids = {_skipped_id(rel): why for rel, why in skipped}
    trial_sets = {
        name: read_trial_ids(path, by_id, voxceleb_id, skipped_ids) for name, path in zip(names, lists or ())
    }
    outputs = write_speaker_prep(
        outputs, options, rows, by_id, trial_sets, skipped, dev_ratio, chunk_seconds, sample_rate, seed
    )
    return dict(outputs, data_root=data_root)


def _find_list(root, path):
    """Absolute path of a trial list given absolute, relative to ``root``, or to the cwd."""
    for candidate in (os.path.join(root, path), os.path.abspath(path)):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"trial list not found: {path} (looked in {root} and the cwd)")


def _skipped_id(rel):
    """Utterance ID of a skipped ``.../wav/<id>.wav`` or ``.../aac/<id>.m4a`` path."""
    rel = "/" + rel
    for marker in ("/wav/", "/aac/"):
        if marker in rel:
            return utterance_id(rel.rsplit(marker, 1)[1])
    return utterance_id(rel[1:])


def _voxceleb_entries(root, data_root, num_workers):
    """``(uid, relpath, spk)`` entries of ``<root>/wav`` and conversion skips."""
    wav, aac = os.path.join(root, "wav"), os.path.join(root, "aac")
    skipped = []
    if os.path.isdir(aac):
        convert_m4a(aac, wav, num_workers)
        failures = os.path.join(wav, FAILURES_FILE)
        with open(failures, encoding="utf-8") as f:
            for line in f:
                src, _, why = line.rstrip("\n").partition("\t")
                rel = os.path.relpath(src, data_root).replace(os.sep, "/")
                skipped.append((rel, f"m4a conversion failed: {why}"))
    if not os.path.isdir(wav):
        raise FileNotFoundError(f"{root}: neither wav/ (VoxCeleb1) nor aac/ (VoxCeleb2) found")
    prefix = os.path.relpath(wav, data_root).replace(os.sep, "/")
    entries = []
    for rel in find_audio_files(wav, (".wav",)):
        full = f"{prefix}/{rel}" if prefix != "." else rel
        if rel.count("/") != 2:
            skipped.append((full, "not at wav/<speaker>/<video>/<utterance>.wav"))
        else:
            entries.append((utterance_id(rel), full, rel.split("/")[0]))
    return entries, skipped


def find_converter():
    """``"ffmpeg"`` or ``"torchaudio"``, the m4a decoder available here.

    Raises
    ------
    RuntimeError
        When neither ``ffmpeg`` (on PATH) nor torchaudio with torchcodec is available.
    """
    if shutil.which("ffmpeg"):
        return "ffmpeg"
    if importlib.util.find_spec("torchcodec") is not None:
        return "torchaudio"
    raise RuntimeError(
        "cannot decode m4a: ffmpeg is not on PATH and torchaudio has no torchcodec "
        "backend. Install ffmpeg (Debian/Ubuntu: 'apt-get install ffmpeg'; conda: "
        "'conda install -c conda-forge ffmpeg'), or convert VoxCeleb2's aac/ folder to "
        "16 kHz wav under <root>/wav yourself."
    )


def convert_m4a(src_root, dst_root, num_workers=4):
    """Convert every ``*.m4a`` below ``src_root`` to ``*.wav`` at the same place below ``dst_root``.

    Resumable: an existing ``.wav`` is never rewritten (each file is written to
    ``<name>.wav.part`` and renamed when complete). Failures are listed, one
    ``source<TAB>reason`` line each, in ``<dst_root>/conversion_failures.txt`` (rewritten by
    every run; failed files are retried next time).

    Arguments
    ---------
    src_root, dst_root : str
        Source and destination folders.
    num_workers : int
        Parallel conversions (processes).

    Returns
    -------
    dict
        Counts ``converted``, ``existing``, ``failed``.
    """
    rels = find_audio_files(src_root, (".m4a",))
    jobs = []
    for rel in rels:
        dst = os.path.join(dst_root, rel[: -len(".m4a")] + ".wav")
        if not os.path.exists(dst):
            jobs.append((os.path.join(src_root, rel), dst))
    counts = {"converted": 0, "existing": len(rels) - len(jobs), "failed": 0}
    failures = []
    if jobs:
        convert = partial(_convert_one, converter=find_converter())
        logger.info("Converting %d m4a files (%d done before) to %s", len(jobs), counts["existing"], dst_root)
        bar = {"total": len(jobs), "desc": "m4a -> wav", "disable": len(jobs) < 100}
        if num_workers > 1 and len(jobs) > 1:
            with Pool(num_workers) as pool:
                results = list(tqdm(pool.imap_unordered(convert, jobs, chunksize=16), **bar))
        else:
            results = [convert(job) for job in tqdm(jobs, **bar)]
        failures = sorted(r for r in results if r is not None)
        counts["failed"] = len(failures)
        counts["converted"] = len(jobs) - len(failures)
    os.makedirs(dst_root, exist_ok=True)
    with open(os.path.join(dst_root, FAILURES_FILE), "w", encoding="utf-8") as f:
        f.writelines(f"{src}\t{why}\n" for src, why in failures)
    if failures:
        logger.warning(
            "%d m4a file(s) failed to convert, listed in %s",
            len(failures),
            os.path.join(dst_root, FAILURES_FILE),
        )
    return counts


def _convert_one(job, converter):
    """Convert one file; ``None`` on success, ``(src, reason)`` on failure."""
    src, dst = job
    tmp = dst + ".part"
    try:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if converter == "ffmpeg":
            cmd = [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-i",
                src,
                "-vn",
                "-c:a",
                "pcm_s16le",
                "-f",
                "wav",
                tmp,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                why = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
                raise RuntimeError(f"ffmpeg: {why[:300]}")
        else:
            import soundfile
            import torchaudio

            wav, rate = torchaudio.load(src)
            soundfile.write(tmp, wav.T.numpy(), rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, dst)
        return None
    except (OSError, RuntimeError, ValueError, ImportError) as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        return src, f"{type(err).__name__}: {err}".replace("\n", " ").replace("\t", " ")
