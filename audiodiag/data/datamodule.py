"""The LightningDataModule: on-the-fly (noisy, clean) mixtures from a speech and a noise source.

Reproducibility: every mixture is made from its own ``numpy`` generator seeded by
``(seed, split, index)`` for validation/test and ``(seed, split, epoch, index)`` for training.
The epoch travels *with the index* (the sampler yields ``(epoch, index)`` pairs from the main
process), so results never depend on the number of workers, on which worker got an index, or on
whether workers persist between epochs. Lightning calls ``sampler.set_epoch`` each epoch;
plain loops get a new epoch each time the loader is iterated. Under DDP Lightning's distributed
sampler gives each rank its own keys, so ranks see different training mixtures; Lightning seeds
the workers' global generators (nothing here draws from them).

Scale: small corpora are decoded once and shared; larger ones are read per crop (only its
frames, lengths from the corpus manifest, :mod:`audiodiag.data.manifest`). With a noise bank
(:mod:`audiodiag.data.noise_bank`) a mixture's synthetic noise is a slice of seeded clips, and
with ``mix_on_device`` the training batch is mixed in one batched step on the training device.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from audiodiag.audio import AudioDecodeError, load_mono, read_audio, resample, to_mono
from audiodiag.data.decoded import DecodedCache
from audiodiag.data.manifest import FileInfo, load_manifest
from audiodiag.data.mixer import Mixer
from audiodiag.data.noise import NoiseSource
from audiodiag.data.noise_bank import BANK_TYPES_EXCLUDED, NoiseBank
from audiodiag.data.speech import SPLITS, SpeechSource, Utterance
from audiodiag.data.speed import SpeedPerturb

__all__ = [
    "AudioStore",
    "BadFileLog",
    "DataSummaryCallback",
    "EpochSampler",
    "MixtureDataset",
    "NoisySpeechDataModule",
]

log = logging.getLogger(__name__)

_SPLIT_CODE = {"train": 0, "valid": 1, "test": 2}
# Decoded audio is kept in memory when the files of the used splits total at most this much
# (the demo corpus is ~14 MB); bigger corpora are decoded on demand in each worker.
_AUTO_CACHE_MAX_BYTES = 64 * 1024 * 1024


class BadFileLog:
    """Records unreadable audio files across DataLoader worker processes.

    ``mode="skip"`` warns once per file (naming it) and appends it to a small log file shared
    by all workers; ``mode="raise"`` re-raises the :class:`AudioDecodeError`. Mixtures whose
    peak had to be scaled down are counted in a shared-memory counter.
    """

    def __init__(self, mode: str = "skip") -> None:
        if mode not in ("skip", "raise"):
            raise ValueError(f"on_bad_file='{mode}' is invalid; accepted: skip, raise")
        self.mode = mode
        self._owner_pid = os.getpid()
        self._dir = tempfile.mkdtemp(prefix="audiodiag-badfiles-")
        self._file = os.path.join(self._dir, "bad_files.tsv")
        self._known: set[str] = set()
        # Spawn-context counters: shareable with spawned processes (ddp_spawn, spawn workers)
        # and still inherited by forked DataLoader workers.
        context = multiprocessing.get_context("spawn")
        self._rescaled: Any = context.Value("q", 0)
        self._mixtures: Any = context.Value("q", 0)
        self._reported_count = 0

    def is_bad(self, path: str) -> bool:
        """True when this process already found ``path`` unreadable."""
        return path in self._known

    def report(self, path: str, error: Exception) -> None:
        """Handle one unreadable file: raise (``raise`` mode) or warn once and record it."""
        if self.mode == "raise":
            raise error
        if path in self._known:
            return
        self._known.add(path)
        reason = error.reason if isinstance(error, AudioDecodeError) else str(error)
        warnings.warn(f"skipping unreadable audio file '{path}': {reason}", stacklevel=2)
        try:
            # One short O_APPEND write per file is atomic across processes.
            with open(self._file, "a", encoding="utf-8") as handle:
                handle.write(f"{path}\t{reason}\n")
        except OSError:  # the log folder is gone (after teardown): the warning still stands
            pass

    def count_mixture(self, rescaled: bool) -> None:
        """Count one mixture (and whether it was scaled down to avoid clipping)."""
        with self._mixtures.get_lock():
            self._mixtures.value += 1
        if rescaled:
            with self._rescaled.get_lock():
                self._rescaled.value += 1

    def count_mixtures(self, mixtures: int, rescaled: int) -> None:
        """Count a batch of mixtures at once (the batched path)."""
        with self._mixtures.get_lock():
            self._mixtures.value += int(mixtures)
        if rescaled:
            with self._rescaled.get_lock():
                self._rescaled.value += int(rescaled)

    def summary(self) -> dict[str, Any]:
        """``{"bad_files": n, "files": {path: reason}, "mixtures": n, "rescaled": n}``."""
        files: dict[str, str] = {}
        if os.path.exists(self._file):
            with open(self._file, encoding="utf-8") as handle:
                for line in handle:
                    path, _, reason = line.rstrip("\n").partition("\t")
                    files.setdefault(path, reason)
        return {
            "bad_files": len(files),
            "files": files,
            "mixtures": int(self._mixtures.value),
            "rescaled": int(self._rescaled.value),
        }

    def log_summary(self, when: str, only_if_new: bool = False) -> dict[str, Any]:
        """Log the summary (a warning when files were skipped); returns it."""
        summary = self.summary()
        if only_if_new and summary["bad_files"] == self._reported_count:
            return summary
        self._reported_count = summary["bad_files"]
        if summary["bad_files"]:
            listed = ", ".join(list(summary["files"])[:10])
            more = " ..." if summary["bad_files"] > 10 else ""
            log.warning(
                "data %s: skipped %d unreadable audio file(s): %s%s",
                when,
                summary["bad_files"],
                listed,
                more,
            )
        log.info(
            "data %s: %d mixtures, %d scaled down to avoid clipping, %d bad files",
            when,
            summary["mixtures"],
            summary["rescaled"],
            summary["bad_files"],
        )
        return summary

    def close(self) -> None:
        """Remove the shared log folder (only from the process that made it)."""
        if os.getpid() == self._owner_pid:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __del__(self) -> None:  # forked workers hold copies: only the owner cleans up
        with contextlib.suppress(Exception):
            self.close()


class AudioStore:
    """Decodes utterances to mono float32 at ``sample_rate``: whole and cached in memory
    (small corpora), or only the frames a crop needs (large ones).

    With ``cache=True`` each file is decoded once per process; :meth:`preload` fills the cache
    in the main process before workers fork, so workers share it copy-on-write. Without it,
    :meth:`piece` reads only its frames (plus the resampler's margins when the file's rate
    differs), using the lengths of :meth:`set_infos` (from the corpus manifest).
    """

    def __init__(self, sample_rate: int, bad_files: BadFileLog, cache: bool = True) -> None:
        self.sample_rate = int(sample_rate)
        self.bad_files = bad_files
        self.cache = bool(cache)
        self._cache: dict[str, torch.Tensor] = {}
        self._infos: dict[str, FileInfo] = {}
        #: Decoded int16 copy of the corpus (``data.decoded_cache``): crops come from it.
        self.decoded: DecodedCache | None = None

    def set_infos(self, infos: dict[str, FileInfo]) -> None:
        """Frames and rates of the files (from :func:`~audiodiag.data.manifest.load_manifest`)."""
        self._infos.update(infos)

    def load(self, path: str) -> torch.Tensor | None:
        """The decoded waveform ``(time,)``, or None for an unreadable file (in skip mode)."""
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        if self.bad_files.is_bad(path):
            return None
        try:
            waveform = load_mono(path, self.sample_rate)
        except AudioDecodeError as error:
            self.bad_files.report(path, error)
            return None
        if self.cache:
            self._cache[path] = waveform
        return waveform

    def preload(self, paths: Sequence[str]) -> None:
        """Decode ``paths`` now (no-op without caching)."""
        if not self.cache:
            return
        for path in paths:
            self.load(path)

    def length(self, path: str) -> int | None:
        """Samples at ``sample_rate`` without decoding, or None when unknown (not in the
        manifest: unreadable header) or known bad."""
        if self.cache or path in self._cache:
            waveform = self.load(path)
            return None if waveform is None else int(waveform.shape[-1])
        if self.decoded is not None and path in self.decoded:
            return self.decoded.length(path)
        info = self._infos.get(path)
        if info is None or self.bad_files.is_bad(path):
            return None
        if info.sample_rate == self.sample_rate:
            return info.frames
        return math.ceil(info.frames * self.sample_rate / info.sample_rate)

    def piece(self, path: str, start: int, num_samples: int) -> torch.Tensor | None:
        """Samples ``[start, start + num_samples)`` at ``sample_rate`` (fewer at the end), or
        None for an unreadable file (in skip mode)."""
        if self.cache or path in self._cache:
            waveform = self.load(path)
            return None if waveform is None else waveform[start : start + num_samples]
        if self.decoded is not None and path in self.decoded:
            return self.decoded.piece(path, start, num_samples)
        info = self._infos.get(path)
        if info is None or self.bad_files.is_bad(path):
            return None
        try:
            return self._read(path, info, start, num_samples)
        except AudioDecodeError as error:
            self.bad_files.report(path, error)
            return None

    def _read(self, path: str, info: FileInfo, start: int, num_samples: int) -> torch.Tensor:
        rate = info.sample_rate
        if rate == self.sample_rate:
            waveform, _ = read_audio(path, frame_offset=start, num_frames=num_samples)
            return to_mono(waveform)
        # Resample only what is read: the polyphase kernel maps input blocks of rate/g samples
        # to output blocks of sample_rate/g, so read from a block boundary with a kernel-wide
        # margin on both sides and cut the output there (as audio.StreamingResampler does).
        g = math.gcd(rate, self.sample_rate)
        in_block, out_block = rate // g, self.sample_rate // g
        margin = math.ceil(6 * in_block / (min(in_block, out_block) * 0.99)) + in_block
        lo = max(0, (start // out_block) * in_block - margin) // in_block * in_block
        hi = min(info.frames, math.ceil((start + num_samples) * rate / self.sample_rate) + margin)
        waveform, _ = read_audio(path, frame_offset=lo, num_frames=max(1, hi - lo))
        out = resample(to_mono(waveform), rate, self.sample_rate)
        skip = start - lo // in_block * out_block
        return out[skip : skip + num_samples].clamp_(-1.0, 1.0)


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` pairs, shuffled per epoch by ``(seed, epoch)``.

    Each iteration uses the epoch last given to :meth:`set_epoch` (Lightning calls it), then
    moves to the next, so a plain ``for epoch ...: for batch in loader`` also gets fresh
    mixtures. ``on_epoch_start`` (optional) runs in the main process before each epoch.
    """

    def __init__(self, num_items: int, seed: int = 0, shuffle: bool = True, on_epoch_start=None):
        self.num_items = int(num_items)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        #: The epoch of the latest iteration (what a checkpoint at its end resumes after).
        self.last_epoch: int | None = None
        self.on_epoch_start = on_epoch_start

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch += 1
        self.last_epoch = epoch
        if self.on_epoch_start is not None:
            self.on_epoch_start(epoch)
        if self.shuffle:
            order = np.random.default_rng([self.seed, 7919, epoch]).permutation(self.num_items)
        else:
            order = np.arange(self.num_items)
        return iter([(epoch, int(i)) for i in order])


class MixtureDataset(Dataset):
    """``num_mixtures`` (noisy, clean) pairs from ``utterances`` of one split.

    Index ``i`` uses utterance ``order[i % len(utterances)]`` (training: ``order[(i + epoch *
    num_mixtures) % len(utterances)]``); ``order`` is a permutation fixed by the seed.
    Training items are addressed by ``(epoch, i)`` (see :class:`EpochSampler`), validation/test
    items by ``i`` alone, so the latter are identical in every run.

    With a ``bank`` (:class:`~audiodiag.data.noise_bank.NoiseBank`) synthetic noise is a slice
    of the bank instead of a per-item synthesis. With ``batched`` an item is only the recipe:
    the clean crop, the bank row and offset (or a recording's crop), the SNR and gain; the
    DataModule mixes the batch on the training device
    (:meth:`NoisySpeechDataModule.mix_batch`), with the same result as the per-item path. With a
    ``speed`` (training only) each crop is played at a random speed before mixing.
    """

    def __init__(
        self,
        split: str,
        utterances: Sequence[Utterance],
        store: AudioStore,
        noise: NoiseSource,
        mixer: Mixer,
        num_mixtures: int,
        seed: int = 0,
        bank: NoiseBank | None = None,
        batched: bool = False,
        speed: SpeedPerturb | None = None,
    ) -> None:
        if not utterances:
            raise ValueError(
                f"split '{split}' has no utterances; check the speech source and its splits"
            )
        if num_mixtures <= 0:
            raise ValueError(f"number of {split} mixtures must be > 0, got {num_mixtures}")
        if batched and bank is None:
            raise ValueError("batched mixing needs a noise bank")
        self.split = split
        self.utterances = list(utterances)
        self.store = store
        self.noise = noise
        self.mixer = mixer
        self.num_mixtures = int(num_mixtures)
        self.seed = int(seed)
        self.bank = bank
        self.batched = bool(batched)
        self.speed = speed
        self.order = np.random.default_rng([self.seed, 104729, _SPLIT_CODE[split]]).permutation(
            len(self.utterances)
        )

    def __len__(self) -> int:
        return self.num_mixtures

    @property
    def sends_addresses(self) -> bool:
        """Whether a recipe carries its speech crop's address in the decoded cache instead of
        the samples (batched, decoded cache, no speed perturbation)."""
        return self.batched and self.speed is None and self.store.decoded is not None

    def _crop_from(
        self, position: int, rng: np.random.Generator
    ) -> tuple[Utterance, torch.Tensor | int, int]:
        """Crop the utterance at ``position`` of the order, or the next readable one: the
        utterance, the crop (or its address, see :attr:`sends_addresses`) and its length."""
        n = len(self.utterances)
        segment = self.mixer.segment_samples
        # No draw without speed perturbation, so the other draws stay what they were.
        factor = self.speed.draw(rng) if self.speed is not None else 1.0
        need = SpeedPerturb.samples_needed(segment, factor)
        for step in range(n):
            utterance = self.utterances[int(self.order[(position + step) % n])]
            total = self.store.length(utterance.path)
            if total is None:
                continue
            start = self.mixer.crop_start(total, rng, need)
            if self.sends_addresses:
                assert self.store.decoded is not None
                found = self.store.decoded.address(utterance.path, start)
                if found is not None:
                    return utterance, found[0], min(found[1], segment)
            piece = self.store.piece(utterance.path, start, need)
            if piece is not None:
                clean, length = self.mixer.pad(SpeedPerturb.apply(piece, factor))
                return utterance, clean, length
        raise RuntimeError(
            f"no readable audio file in the '{self.split}' split ({n} file(s) tried, e.g. "
            f"{self.utterances[0].path if n else '-'}; the warnings above say why each failed): "
            "give speech that decodes as wav/flac/ogg (data.speech.root)"
        )

    def _draw_speech(self, exclude: Utterance):
        """A callable giving random *other* utterances of this split (for babble)."""
        utterances = self.utterances

        def draw(rng: np.random.Generator) -> torch.Tensor | None:
            for _ in range(8):
                other = utterances[int(rng.integers(len(utterances)))]
                if other.path == exclude.path:
                    continue
                same_voice = exclude.speaker is not None and other.speaker == exclude.speaker
                # Prefer other voices, but accept the same voice now and then (one-voice splits).
                if same_voice and rng.random() < 0.75:
                    continue
                return self.store.load(other.path)
            return None

        return draw

    def bank_speech(self, rng: np.random.Generator) -> torch.Tensor | None:
        """Babble talkers for the noise bank: a clip-long piece of a random utterance of this
        split (only the piece is read)."""
        assert self.bank is not None
        need = self.bank.clip_samples
        for _ in range(8):
            path = self.utterances[int(rng.integers(len(self.utterances)))].path
            total = self.store.length(path)
            if total is None:
                continue
            start = int(rng.integers(0, total - need + 1)) if total > need else 0
            piece = self.store.piece(path, start, need)
            if piece is not None and piece.numel():
                return piece
        return None

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            epoch, index = int(key[0]), int(key[1])
        else:
            epoch, index = 0, int(key)
        if not 0 <= index < self.num_mixtures:
            raise IndexError(f"mixture index {index} out of range 0..{self.num_mixtures - 1}")
        code = _SPLIT_CODE[self.split]
        entropy = (
            [self.seed, code, epoch, index] if self.split == "train" else [self.seed, code, index]
        )
        rng = np.random.default_rng(entropy)
        # Training epochs walk on through the corpus when there are fewer mixtures per epoch than
        # utterances, so every utterance is used in turn.
        position = index + epoch * self.num_mixtures if self.split == "train" else index
        utterance, clean, length = self._crop_from(position % len(self.utterances), rng)
        if self.bank is None:
            assert isinstance(clean, torch.Tensor)  # addresses are sent only batched, with a bank
            return self._mix_here(utterance, clean, length, rng)
        segment = self.mixer.segment_samples
        kind = self.noise.draw_type(rng)
        recording: torch.Tensor | None = None
        row, offset = -1, 0
        if kind in BANK_TYPES_EXCLUDED:
            made, kind = self.noise.generate(
                kind, segment, self.mixer.sample_rate, rng, self.split,
                report_bad=self.store.bad_files.report,
            )  # fmt: skip
            recording = torch.from_numpy(made)
        else:
            row, offset = self.bank.draw(kind, rng)
        snr_db = self.mixer.draw_snr_db(rng)
        gain_db = self.mixer.draw_gain_db(rng)
        if self.batched:
            # Plain numbers: collate_recipes makes one array per key (cheap to send).
            item: dict[str, Any] = {
                "clean_at" if isinstance(clean, int) else "clean": clean,
                "length": length,
                "snr_db": snr_db,
                "gain_db": gain_db,
                "epoch": epoch,
                "noise_row": row,
                "noise_offset": offset,
                "noise_type": kind,
                "source_id": utterance.source_id,
            }
            if "folder" in self.noise.types:
                item["noise"] = recording if recording is not None else torch.zeros(segment)
            return item
        if recording is None:
            bank, kinds = self.bank.get(self.split, epoch, self.bank_speech)
            recording, kind = self.bank.slice(bank, row, offset), kinds[row]
        assert isinstance(clean, torch.Tensor)  # not batched: the samples, not an address
        mixture = self.mixer.mix(clean, length, recording, snr_db, gain_db=gain_db)
        self.store.bad_files.count_mixture(mixture.rescaled)
        return _as_item(mixture, kind, utterance.source_id)

    def _mix_here(
        self, utterance: Utterance, clean: torch.Tensor, length: int, rng: np.random.Generator
    ) -> dict[str, Any]:
        """The per-item path with per-item noise synthesis (no bank)."""
        noise, kind = self.noise.sample(
            self.mixer.segment_samples,
            self.mixer.sample_rate,
            rng,
            split=self.split,
            draw_speech=self._draw_speech(utterance),
            report_bad=self.store.bad_files.report,
        )
        mixture = self.mixer.mix(
            clean, length, torch.from_numpy(noise), self.mixer.draw_snr_db(rng), rng
        )
        self.store.bad_files.count_mixture(mixture.rescaled)
        return _as_item(mixture, kind, utterance.source_id)


def collate_recipes(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate recipe items (``mix_on_device``): tensors stacked, number columns as numpy arrays.

    Every tensor a loader worker sends costs a shared-memory file and a file-descriptor
    handshake with the main process (about 1 ms each on a 2-core machine); numpy arrays are
    pickled by value. A recipe has six number columns, so this saves most of the transfer.
    """
    out: dict[str, Any] = {}
    for key, first in items[0].items():
        values = [item[key] for item in items]
        if isinstance(first, torch.Tensor):
            out[key] = default_collate(values)
        elif isinstance(first, (int, float)):
            out[key] = np.asarray(values)
        else:
            out[key] = values
    return out


def _as_item(mixture: Any, kind: str, source_id: str) -> dict[str, Any]:
    return {
        "noisy": mixture.noisy.float(),
        "clean": mixture.clean.float(),
        "length": torch.tensor(mixture.length, dtype=torch.int64),
        "snr_db": torch.tensor(mixture.snr_db, dtype=torch.float32),
        "noise_type": kind,
        "source_id": source_id,
    }


class NoisySpeechDataModule(L.LightningDataModule):
    """Noisy/clean speech pairs mixed on the fly, for ``Trainer.fit``/``test``.

    Args:
        speech: a :class:`~audiodiag.data.speech.SpeechSource` (Hydra ``data.speech``).
        noise: a :class:`~audiodiag.data.noise.NoiseSource` (Hydra group ``noise``).
        sample_rate: Hz of every waveform in a batch.
        segment_seconds: length of every example; shorter utterances are zero-padded and the
            batch's ``length`` gives their true length.
        snr_db_range: SNR drawn per mixture (dB), uniformly unless ``snr_db_weights``.
        snr_db_weights: optional weights of equal-width bands across ``snr_db_range``
            (:class:`~audiodiag.data.mixer.Mixer`); they shape validation and test SNRs too.
        gain_db_range: optional random overall gain (dB) on noisy and clean together.
        speed_range: optional ``[low, high]`` speed factor drawn per training crop
            (:class:`~audiodiag.data.speed.SpeedPerturb`: pitch and formants move with it);
            validation and test speech is never perturbed.
        batch_size, num_workers, pin_memory: DataLoader settings.
        seed: fixes validation/test mixtures and the sequence of training mixtures.
        train_mixtures_per_epoch: None = one per training utterance.
        val_mixtures / test_mixtures: fixed counts (None = one per utterance of the split).
        on_bad_file: ``skip`` (warn, count, use the next file) or ``raise``.
        cache_audio: keep decoded speech in memory; None = when the files total <= 64 MB.
        decoded_cache: for speech read per crop (not cached in memory): decode the used files
            once into an int16 copy on local disk (:class:`~audiodiag.data.decoded.DecodedCache`,
            about twice the FLAC size) and cut crops from it instead of decoding each crop.
            With ``mix_on_device`` the loader then sends each crop's address and the training
            process reads the batch from the copy (cheaper than moving samples between
            processes). ``decoded_cache_dir``: where (default: beside the data, else the user
            cache).
        peak_limit: anti-clipping threshold (see :class:`~audiodiag.data.mixer.Mixer`).
        persistent_workers: keep workers alive between epochs (only with ``num_workers > 0``).
        mix_on_device: ``true``: the training loader returns clean crops and noise recipes,
            and the noise from the bank, SNR scaling, gain and anti-clipping run as one batched step
            on the training device (``on_after_batch_transfer``, or :meth:`mix_batch` in a
            plain loop). ``auto``: only when the trainer's device is not the CPU (on a CPU the
            workers mix in parallel with training; the main process would mix in series).
            Validation and test are always mixed per item (the same mixtures).
        noise_bank: synthetic noise as slices of a seeded :class:`NoiseBank`; None = on with
            ``mix_on_device`` true or auto, else off (per-item synthesis). With the bank on,
            the same seeds give the same mixtures on either path.
        noise_bank_clips / noise_bank_clip_seconds: bank size per noise type.

    Batches are dicts: ``noisy``/``clean`` (B, T) float32, ``length`` (B,) int64,
    ``snr_db`` (B,) float32, ``noise_type`` list[str], ``source_id`` list[str].
    """

    def __init__(
        self,
        speech: SpeechSource,
        noise: NoiseSource,
        sample_rate: int = 16000,
        segment_seconds: float = 2.0,
        snr_db_range: Sequence[float] = (-5.0, 15.0),
        gain_db_range: Sequence[float] | None = None,
        speed_range: Sequence[float] | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        train_mixtures_per_epoch: int | None = None,
        val_mixtures: int | None = 64,
        test_mixtures: int | None = 128,
        on_bad_file: str = "skip",
        cache_audio: bool | None = None,
        decoded_cache: bool = False,
        decoded_cache_dir: str | None = None,
        peak_limit: float = 0.99,
        persistent_workers: bool = True,
        mix_on_device: bool | str = False,
        noise_bank: bool | None = None,
        noise_bank_clips: int = 24,
        noise_bank_clip_seconds: float = 3.0,
        snr_db_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(speech, SpeechSource):
            raise TypeError(
                f"speech must be a SpeechSource (e.g. audiodiag.data.DemoSpeech), got {type(speech).__name__}"
            )
        if not isinstance(noise, NoiseSource):
            raise TypeError(
                f"noise must be an audiodiag.data.NoiseSource, got {type(noise).__name__}"
            )
        if batch_size <= 0:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if num_workers < 0:
            raise ValueError(f"num_workers={num_workers} must be >= 0")
        self.speech = speech
        self.noise = noise
        self.sample_rate = int(sample_rate)
        self.mixer = Mixer(
            sample_rate=self.sample_rate,
            segment_seconds=segment_seconds,
            snr_db_range=tuple(snr_db_range),
            snr_db_weights=snr_db_weights,
            gain_db_range=tuple(gain_db_range) if gain_db_range is not None else None,
            peak_limit=peak_limit,
        )
        self.speed = SpeedPerturb(speed_range) if speed_range is not None else None
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.seed = int(seed)
        self.train_mixtures_per_epoch = train_mixtures_per_epoch
        self.val_mixtures = val_mixtures
        self.test_mixtures = test_mixtures
        self.cache_audio = cache_audio
        self.decoded_cache = bool(decoded_cache)
        self.decoded_cache_dir = (
            Path(decoded_cache_dir).expanduser() if decoded_cache_dir not in (None, "") else None
        )
        self.bad_files = BadFileLog(on_bad_file)
        if mix_on_device not in (True, False, "auto"):
            raise ValueError(
                f"data.mix_on_device={mix_on_device!r} is invalid; accepted: true, false, auto"
            )
        self.mix_on_device = mix_on_device
        if noise_bank is False and mix_on_device is not False:
            raise ValueError(
                f"data.mix_on_device={mix_on_device} needs data.noise_bank=true (or null): the "
                "device step slices noise from the bank"
            )
        use_bank = mix_on_device is not False if noise_bank is None else bool(noise_bank)
        self.bank = (
            NoiseBank(
                noise,
                self.sample_rate,
                self.mixer.segment_samples,
                clips=noise_bank_clips,
                clip_seconds=noise_bank_clip_seconds,
                seed=self.seed,
            )
            if use_bank
            else None
        )
        self.store: AudioStore | None = None
        self.datasets: dict[str, MixtureDataset] = {}
        self._train_sampler: EpochSampler | None = None
        self._resume_epoch = 0  # set from a checkpoint by load_state_dict

    # -- Lightning hooks --------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download the speech dataset if asked (Lightning runs this on one process only)."""
        self.speech.prepare()

    def _splits_for(self, stage: str | None) -> tuple[str, ...]:
        if stage in (None, "fit"):
            return ("train", "valid") if stage == "fit" else SPLITS
        if stage == "validate":
            return ("valid",)
        if stage in ("test", "predict"):
            return ("test",)
        raise ValueError(f"unknown stage '{stage}'; expected fit, validate, test or predict")

    def setup(self, stage: str | None = None) -> None:
        """Build the mixture datasets of the splits ``stage`` needs (all when None)."""
        splits = [s for s in self._splits_for(stage) if s not in self.datasets]
        if not splits:
            return
        self.noise.setup(report_bad=self.bad_files.report)
        utterances = {split: self.speech.utterances(split) for split in splits}
        if self.store is None:
            cache = self.cache_audio
            if cache is None:
                total = sum(
                    os.path.getsize(u.path)
                    for s in SPLITS
                    for u in self.speech.utterances(s)
                    if os.path.exists(u.path)
                )
                cache = total <= _AUTO_CACHE_MAX_BYTES
            self.store = AudioStore(self.sample_rate, self.bad_files, cache=cache)
            if cache and self.decoded_cache:
                log.info("data.decoded_cache is not used: the speech is decoded into memory")
        if not self.store.cache:
            # Crops read only their frames: the lengths come from the corpus manifest.
            listed = [u for split in splits for u in utterances[split]]
            if self.speech.root is None:
                raise ValueError(f"{self.speech!r} has no root folder for its manifest")
            infos = load_manifest(
                self.speech.root,
                [u.path for u in listed],
                [u.speaker for u in listed],
                report_bad=self.bad_files.report,
            )
            self.store.set_infos(infos)
            if self.decoded_cache:
                if self.store.decoded is None:
                    self.store.decoded = DecodedCache(
                        self.speech.root, self.sample_rate, self.decoded_cache_dir
                    )
                try:
                    self.store.decoded.sync(list(infos), self.store.load)
                except OSError as error:
                    raise OSError(
                        f"cannot write the decoded cache in '{self.store.decoded.location}': "
                        f"{error.strerror or error}; set data.decoded_cache_dir to a writable "
                        "folder with room for about twice the corpus, or data.decoded_cache=false"
                    ) from error
        counts = {
            "train": self.train_mixtures_per_epoch,
            "valid": self.val_mixtures,
            "test": self.test_mixtures,
        }
        for split in splits:
            items = utterances[split]
            if not items:
                raise ValueError(
                    f"{self.speech!r} has no '{split}' utterances; check its root and split settings"
                )
            # Decode in the main process so forked workers share one copy.
            self.store.preload([u.path for u in items])
            wanted = counts[split]
            count = int(wanted) if wanted is not None else len(items)
            self.datasets[split] = MixtureDataset(
                split,
                items,
                self.store,
                self.noise,
                self.mixer,
                count,
                seed=self.seed,
                bank=self.bank,
                batched=self.mix_on_device is True and split == "train",
                speed=self.speed if split == "train" else None,
            )
        log.info(
            "data: %s",
            ", ".join(
                f"{s}={len(d.utterances)} utterances/{len(d)} mixtures"
                for s, d in self.datasets.items()
            ),
        )

    def teardown(self, stage: str | None = None) -> None:
        """Log the data summary (mixtures, clipping rescales, skipped files)."""
        self.bad_files.log_summary(f"{stage or 'run'} end")

    def _loader(self, split: str, sampler: Sampler | None) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "valid": "validate", "test": "test"}[split])
        workers = self.num_workers
        dataset = self.datasets[split]
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            collate_fn=collate_recipes if dataset.batched else None,
            sampler=sampler,
            shuffle=False,
            num_workers=workers,
            pin_memory=self.pin_memory,
            drop_last=False,
            persistent_workers=self.persistent_workers and workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        """New mixtures every epoch, shuffled; see :class:`EpochSampler`."""
        if "train" not in self.datasets:
            self.setup("fit")
        sampler = EpochSampler(
            len(self.datasets["train"]), seed=self.seed, on_epoch_start=self._on_train_epoch_start
        )
        if self._train_sampler is not None:
            sampler.set_epoch(self._train_sampler.epoch)
        elif self._resume_epoch:
            # Lightning builds the loader's iterator (and a loader with workers prefetches from
            # the sampler) before it calls set_epoch: without this, a run resumed at epoch N
            # would draw epoch 0's mixtures for its first epoch.
            sampler.set_epoch(self._resume_epoch)
        self._train_sampler = sampler
        self.datasets["train"].batched = self.device_mixing()
        return self._loader("train", sampler)

    def device_mixing(self) -> bool:
        """Whether training batches are mixed on the device (``mix_on_device`` resolved)."""
        if self.mix_on_device != "auto":
            return bool(self.mix_on_device)
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type != "cpu"

    def val_dataloader(self) -> DataLoader:
        """Fixed validation mixtures (identical in every run and for every worker count)."""
        return self._loader("valid", self._evaluation_sampler("valid"))

    def test_dataloader(self) -> DataLoader:
        """Fixed test mixtures."""
        return self._loader("test", self._evaluation_sampler("test"))

    def _evaluation_sampler(self, split: str) -> Sampler | None:
        """Under DDP, each rank scores its own share of the fixed mixtures, every mixture once.

        Lightning's default DistributedSampler pads the split to a multiple of the world size
        with repeated mixtures, so validation and test means would differ from a single-process
        run's; this sampler does not pad (ranks may get one batch fewer).
        """
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size <= 1:
            return None
        if split not in self.datasets:
            self.setup({"valid": "validate", "test": "test"}[split])
        return UnrepeatedDistributedSampler(
            self.datasets[split],
            num_replicas=trainer.world_size,
            rank=trainer.global_rank,
            shuffle=False,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Finish recipe batches (``mix_on_device``) on the device they were moved to."""
        if isinstance(batch, dict) and "noise_row" in batch:
            return self.mix_batch(batch)
        return batch

    def mix_batch(
        self, batch: dict[str, Any], device: torch.device | str | None = None
    ) -> dict[str, Any]:
        """Turn a training recipe batch into (noisy, clean) on the batch's device: the noise
        from the bank (or the recordings' crops), then :meth:`Mixer.mix_batch`. A batch of
        speech addresses (decoded cache) is read here and moved to ``device`` (default: the
        trainer's device, else the CPU)."""
        if self.bank is None or "train" not in self.datasets:
            raise RuntimeError("mix_batch needs data.mix_on_device=true/auto and setup('fit')")
        if "clean_at" in batch:  # addresses in the decoded cache: read here, then move
            assert self.store is not None and self.store.decoded is not None
            clean = self.store.decoded.crops(
                batch["clean_at"], batch["length"], self.mixer.segment_samples
            )
            if device is None:
                trainer = getattr(self, "trainer", None)
                device = trainer.strategy.root_device if trainer is not None else clean.device
            clean = clean.to(device)
        else:
            clean = batch["clean"]
            device = clean.device

        def column(key: str, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(batch[key], dtype=dtype, device=device)

        rows, epochs = column("noise_row", torch.int64), column("epoch", torch.int64)
        lengths = column("length", torch.int64)
        # Views into the bank (no copy); a folder recording's crop travels in the batch.
        views = self.bank.windows(
            "train",
            epochs,
            rows,
            column("noise_offset", torch.int64),
            self.datasets["train"].bank_speech,
        )
        noise = [batch["noise"][i] if v is None else v for i, v in enumerate(views)]
        mixed = self.mixer.mix_batch(
            clean,
            lengths,
            noise,
            column("snr_db", torch.float32),
            column("gain_db", torch.float32),
        )
        kinds = list(batch["noise_type"])
        for i, (epoch, row) in enumerate(zip(epochs.tolist(), rows.tolist(), strict=True)):
            if row >= 0:  # the type the bank row really holds (babble may fall back to pink)
                kinds[i] = self.bank.get("train", epoch)[1][row]
        self.bad_files.count_mixtures(len(kinds), int(mixed["rescaled"].sum()))
        return {
            "noisy": mixed["noisy"],
            "clean": mixed["clean"],
            "length": lengths,
            "snr_db": mixed["snr_db"],
            "noise_type": kinds,
            "source_id": batch["source_id"],
        }

    def state_dict(self) -> dict[str, Any]:
        """Saved in Lightning checkpoints: the training epoch whose mixtures come next, taken as
        the one after the latest epoch iterated (``sampler.epoch`` itself is no guide: Lightning
        resets it after a worker loader's prefetch). Exact for checkpoints written at an epoch's
        end (``last.ckpt``, best-of-epoch), which is where resuming restarts."""
        sampler = self._train_sampler
        last = None if sampler is None else sampler.last_epoch
        return {"train_epoch": 0 if last is None else last + 1}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restored before the loaders are built, so a resumed run draws the mixtures the
        uninterrupted run would have (checkpoints written at an epoch's end)."""
        self._resume_epoch = int(state_dict.get("train_epoch", 0))

    # -- helpers ----------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Choose the training epoch for plain loops (Lightning sets it on the sampler itself)."""
        if self._train_sampler is not None:
            self._train_sampler.set_epoch(epoch)

    def _on_train_epoch_start(self, epoch: int) -> None:
        if epoch > 0:
            self.bad_files.log_summary(f"epoch {epoch - 1}", only_if_new=True)

    def bad_file_summary(self) -> dict[str, Any]:
        """``{"bad_files": n, "files": {path: reason}, "mixtures": n, "rescaled": n}`` so far."""
        return self.bad_files.summary()


class DataSummaryCallback(L.Callback):
    """Optional: at each training epoch end, warn about newly skipped files and log
    ``data/bad_files`` and ``data/rescaled`` (mixtures scaled down to avoid clipping).

    Without it the DataModule still logs the summary when the next epoch starts and at teardown.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if not isinstance(datamodule, NoisySpeechDataModule):
            return
        summary = datamodule.bad_files.log_summary(
            f"epoch {trainer.current_epoch}", only_if_new=True
        )
        pl_module.log_dict(
            {
                "data/bad_files": float(summary["bad_files"]),
                "data/rescaled": float(summary["rescaled"]),
            },
            on_epoch=True,
            on_step=False,
        )
