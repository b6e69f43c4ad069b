"""A seeded bank of synthetic noise clips, so a mixture's noise is a slice, not a synthesis.

Generating noise per item (an FFT, a few sines, babble from several files) costs more than
reading the speech crop. A bank holds ``clips`` clips of ``clip_seconds`` for every noise type
of a :class:`~audiodiag.data.noise.NoiseSource` (all but ``folder``, whose recordings are
already a bank on disk), generated once per split and training epoch from
``(seed, split, epoch, type)``: any process (a DataLoader worker, the main process, another
rank) that asks for the same key builds bit-identical clips. A mixture then draws a clip and an
offset, and its noise is ``bank[row, offset : offset + segment]``, on the CPU or on the device.

What this trades: within one epoch a type's noise comes from ``clips`` parameter draws (for
example 24 hum fundamentals) at random offsets, instead of a fresh draw per mixture; the
training bank is rebuilt every epoch. Raise ``clips`` for more variety per epoch.

Building a training bank takes about a second of CPU, so each one is built ahead, in a thread,
while the epoch before it runs: on a GPU that second was a stall at every epoch start. What is
left is the part of a build that an epoch shorter than the build does not cover, and the
thread's share of the interpreter lock. A fork (DataLoader workers) first waits for such a
thread: a child forked while it held a lock could deadlock. Workers that do not persist between
epochs start a build they never use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from audiodiag.data.noise import NoiseSource

__all__ = ["BANK_TYPES_EXCLUDED", "NoiseBank"]

# Recordings are cropped from their files per item (partial reads), never banked.
BANK_TYPES_EXCLUDED = ("folder",)
_SPLIT_CODE = {"train": 0, "valid": 1, "test": 2}

DrawSpeech = Callable[[np.random.Generator], "torch.Tensor | None"]
Built = tuple[torch.Tensor, list[str]]

_BUILDING: set[threading.Thread] = set()  # build-ahead threads of this process still running


def _finish_builds_before_fork() -> None:
    for thread in list(_BUILDING):
        thread.join()


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere workers are spawned, never forked
    os.register_at_fork(before=_finish_builds_before_fork)


class NoiseBank:
    """Seeded noise clips per (split, epoch), built lazily and kept for the latest epoch.

    Args:
        noise: the noise source whose types and generators fill the bank.
        sample_rate: Hz.
        segment_samples: the mixture length; clips are at least this long.
        clips: clips per noise type.
        clip_seconds: length of each clip.
        seed: with the split and epoch, fixes every clip.
    """

    def __init__(
        self,
        noise: NoiseSource,
        sample_rate: int,
        segment_samples: int,
        clips: int = 24,
        clip_seconds: float = 3.0,
        seed: int = 0,
    ) -> None:
        if clips < 1:
            raise ValueError(f"noise_bank_clips={clips} must be >= 1")
        if clip_seconds <= 0:
            raise ValueError(f"noise_bank_clip_seconds={clip_seconds} must be > 0")
        self.noise = noise
        self.sample_rate = int(sample_rate)
        self.clips = int(clips)
        self.clip_samples = max(int(round(clip_seconds * sample_rate)), int(segment_samples))
        self.segment_samples = int(segment_samples)
        self.seed = int(seed)
        self.types = tuple(t for t in noise.types if t not in BANK_TYPES_EXCLUDED)
        self._built: dict[str, tuple[int, torch.Tensor, list[str]]] = {}
        self._on_device: dict[tuple[str, int, str], torch.Tensor] = {}
        # The next training epoch's bank being built: (pid, epoch, thread, result holder).
        self._ahead: tuple[int, int, threading.Thread, dict[str, Built]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Neither a thread nor the device copies travel to another process (a spawned worker or
        # rank): a worker that received CUDA tensors would start CUDA itself.
        return {**self.__dict__, "_ahead": None, "_on_device": {}}

    def __repr__(self) -> str:
        return (
            f"NoiseBank(types={list(self.types)}, clips={self.clips}, "
            f"clip_samples={self.clip_samples})"
        )

    @property
    def nbytes(self) -> int:
        """Memory of one split's bank."""
        return len(self.types) * self.clips * self.clip_samples * 4

    def row(self, kind: str, clip: int) -> int:
        """The bank row of clip ``clip`` of type ``kind``."""
        return self.types.index(kind) * self.clips + clip

    def draw(self, kind: str, rng: np.random.Generator) -> tuple[int, int]:
        """A (row, offset) for one mixture's noise of type ``kind``."""
        clip = int(rng.integers(self.clips))
        offset = int(rng.integers(0, self.clip_samples - self.segment_samples + 1))
        return self.row(kind, clip), offset

    def get(
        self, split: str, epoch: int = 0, draw_speech: DrawSpeech | None = None
    ) -> tuple[torch.Tensor, list[str]]:
        """The bank of ``split`` (training: of ``epoch``): ``(rows, clip_samples)`` float32 on the
        CPU and the type each row actually holds (babble without speech falls back to pink)."""
        epoch = int(epoch) if split == "train" else 0
        built = self._built.get(split)
        if built is not None and built[0] == epoch:
            return built[1], built[2]
        ahead = self._take_ahead(epoch) if split == "train" else None
        bank, kinds = ahead or self._build(split, epoch, draw_speech)
        self._built[split] = (epoch, bank, kinds)
        self._on_device = {k: v for k, v in self._on_device.items() if k[0] != split}
        if split == "train":
            self._build_ahead(epoch + 1, draw_speech)
        return bank, kinds

    def _build(self, split: str, epoch: int, draw_speech: DrawSpeech | None) -> Built:
        rows, kinds = [], []
        for t_index, kind in enumerate(self.types):
            rng = np.random.default_rng([self.seed, 4099, _SPLIT_CODE[split], epoch, t_index])
            for _ in range(self.clips):
                clip, made = self.noise.generate(
                    kind, self.clip_samples, self.sample_rate, rng, split, draw_speech
                )
                rows.append(torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32)))
                kinds.append(made)
        bank = torch.stack(rows) if rows else torch.zeros(0, self.clip_samples)
        return bank, kinds

    def _build_ahead(self, epoch: int, draw_speech: DrawSpeech | None) -> None:
        """Start building the training bank of ``epoch`` in a thread (seeded as always)."""
        holder: dict[str, Built] = {}

        def build() -> None:
            try:
                holder["built"] = self._build("train", epoch, draw_speech)
            finally:
                _BUILDING.discard(thread)

        thread = threading.Thread(target=build, name=f"noise-bank-{epoch}", daemon=True)
        _BUILDING.add(thread)
        try:
            thread.start()
        except BaseException:  # a thread never started must not be joined before a fork
            _BUILDING.discard(thread)
            raise
        self._ahead = (os.getpid(), epoch, thread, holder)

    def _take_ahead(self, epoch: int) -> Built | None:
        """The bank built ahead for ``epoch``; None where there is none to use: another epoch
        was built ahead, the thread belongs to the process this one was forked from, or it
        failed (then the caller builds the bank itself and its error shows)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None or ahead[0] != os.getpid() or ahead[1] != epoch:
            return None
        ahead[2].join()
        return ahead[3].get("built")

    def slice(self, bank: torch.Tensor, row: int, offset: int) -> torch.Tensor:
        """One mixture's noise: a view of ``segment_samples`` into a bank."""
        return bank[row, offset : offset + self.segment_samples]

    def windows(
        self,
        split: str,
        epochs: torch.Tensor,
        rows: torch.Tensor,
        offsets: torch.Tensor,
        draw_speech: DrawSpeech | None = None,
    ) -> list[torch.Tensor | None]:
        """The noise of a batch as B views of ``segment_samples`` into the bank kept on the
        device of ``rows`` (no copy); None where the row is < 0 (a folder recording)."""
        device = rows.device
        epoch_list = epochs.tolist()
        banks = {}
        for epoch in set(epoch_list):
            bank_cpu, _ = self.get(split, epoch, draw_speech)
            key = (split, epoch if split == "train" else 0, str(device))
            bank = self._on_device.get(key)
            if bank is None:
                bank = bank_cpu.to(device)
                self._on_device = {k: v for k, v in self._on_device.items() if k[0] != split}
                self._on_device[key] = bank
            banks[epoch] = bank
        return [
            self.slice(banks[epoch], row, offset) if row >= 0 else None
            for epoch, row, offset in zip(epoch_list, rows.tolist(), offsets.tolist(), strict=True)
        ]
