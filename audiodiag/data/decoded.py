"""A decoded copy of a corpus on local disk: int16 PCM at the training rate, read by memory map.

Decoding a two-second FLAC crop costs about 1 ms of CPU on a small machine, more than the rest
of a mixture (noise from the bank, SNR scaling, clipping) together, so on two cores FLAC alone
caps the loader near 1,500 mixtures/s. With ``data.decoded_cache=true`` every file the splits
use is decoded once, resampled to the training rate, and appended to one flat int16 file; a crop
is then a slice of a memory map (a copy out of the page cache) at a small fraction of the cost.

Trade-off: disk space. 16-bit PCM takes about twice the FLAC's size (LibriSpeech
``train-clean-100``: 6.3 GB of FLAC, 11.5 GB decoded). Samples are exact for 16-bit files at the
training rate; resampled ones are rounded to 16 bits (about -96 dBFS of rounding noise).

Layout (``<root>/.audiodiag-decoded/`` when the root is writable, else the user cache)::

    pcm-16000.i16    samples of every file, one after another
    pcm-16000.json   {"format", "root", "sample_rate", "files": {key: [size, mtime_ns, offset, length]}}

An entry whose file changed size or time is decoded again (appended; the old samples stay
unreferenced until the folder is deleted). The index is written atomically every few seconds
while building, so an interrupted build keeps what it decoded. A lock file serialises builders
(several DDP ranks on one machine).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from audiodiag.data.manifest import file_key, manifest_path, root_id

try:
    import fcntl
except ImportError:  # not POSIX: builders are not serialised
    fcntl = None  # type: ignore[assignment]

__all__ = ["DECODED_FORMAT", "DecodedCache", "decoded_cache_dir"]

log = logging.getLogger(__name__)

DECODED_FORMAT = "audiodiag-decoded/1"
_SCALE = 1.0 / 32768.0
_SAVE_EVERY_S = 10.0


def decoded_cache_dir(root: str | os.PathLike) -> Path:
    """Where the decoded copy of ``root`` lives: beside the data when the manifest is (writable
    root), else in the user cache next to the manifests."""
    root = Path(root)
    manifest = manifest_path(root)
    if manifest.parent == root:
        return root / ".audiodiag-decoded"
    return manifest.parent.parent / "decoded" / root_id(root)


def _to_int16(waveform: torch.Tensor) -> np.ndarray:
    # Round, not truncate: a 16-bit file read as float (x / 32768) comes back exactly.
    scaled = np.rint(waveform.numpy().astype(np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


class DecodedCache:
    """Decoded int16 samples of one corpus at one sample rate (see the module docstring)."""

    def __init__(
        self, root: str | os.PathLike, sample_rate: int, location: Path | None = None
    ) -> None:
        self.root = Path(root)
        self.sample_rate = int(sample_rate)
        self.location = Path(location) if location is not None else decoded_cache_dir(self.root)
        self.samples_path = self.location / f"pcm-{self.sample_rate}.i16"
        self.index_path = self.location / f"pcm-{self.sample_rate}.json"
        self._entries: dict[str, list[int]] = {}
        self._spans: dict[str, tuple[int, int]] = {}  # absolute path -> (offset, length)
        self._map: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"DecodedCache('{self.location}', {len(self._spans)} files)"

    def __len__(self) -> int:
        return len(self._spans)

    def __getstate__(self) -> dict:
        # A memory map must not travel to spawned workers (it would pickle as a copy).
        return {**self.__dict__, "_map": None}

    # -- building ---------------------------------------------------------------------------
    def sync(self, paths: Sequence[str], decode: Callable[[str], torch.Tensor | None]) -> int:
        """Make every readable file of ``paths`` (absolute) available, beside those of earlier
        calls. Files missing or stale are decoded with ``decode``: a waveform at
        ``sample_rate``, or None for a bad file (left out, tried again next time). Returns how
        many files were decoded now."""
        self.location.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._entries = self._read_index()
            stale = []
            for path in paths:
                key = file_key(self.root, path)
                entry = self._entries.get(key)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue  # the manifest already reported it
                if not (isinstance(entry, list) and entry[:2] == [stat.st_size, stat.st_mtime_ns]):
                    stale.append((path, key, stat))
            if stale:
                self._decode(stale, decode)
        for path in paths:
            entry = self._entries.get(file_key(self.root, path))
            if entry is not None:
                self._spans[path] = (int(entry[2]), int(entry[3]))
        self._map = None  # mapped lazily, after the file stopped growing
        return len(stale)

    def _decode(self, stale: list, decode: Callable[[str], torch.Tensor | None]) -> None:
        start = time.monotonic()
        saved = start
        if self.samples_path.exists() and self.samples_path.stat().st_size % 2:
            # Half a sample left by an interrupted write: appending after it would misalign.
            os.truncate(self.samples_path, self.samples_path.stat().st_size - 1)
        with open(self.samples_path, "ab") as out:
            offset = out.seek(0, os.SEEK_END) // 2
            for n, (path, key, stat) in enumerate(stale, 1):
                waveform = decode(path)
                if waveform is None:
                    self._entries.pop(key, None)
                    continue
                samples = _to_int16(waveform)
                out.write(samples.tobytes())
                self._entries[key] = [stat.st_size, stat.st_mtime_ns, offset, int(samples.size)]
                offset += int(samples.size)
                if time.monotonic() - saved > _SAVE_EVERY_S:
                    out.flush()
                    self._write_index()
                    saved = time.monotonic()
                    log.info("decoded cache: %d of %d files decoded", n, len(stale))
        self._write_index()
        log.info(
            "decoded cache '%s': decoded %d file(s) in %.1f s",
            self.location,
            len(stale),
            time.monotonic() - start,
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        with open(self.location / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_index(self) -> dict[str, list[int]]:
        """Entries of a valid index whose samples file holds them all; {} otherwise (and the
        samples file is started again)."""
        try:
            with open(self.index_path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            data = None
        except (OSError, ValueError) as error:
            log.warning(
                "rebuilding the unreadable decoded-cache index '%s': %s", self.index_path, error
            )
            data = None
        size = self.samples_path.stat().st_size // 2 if self.samples_path.exists() else 0
        try:
            valid = (
                isinstance(data, dict)
                and data.get("format") == DECODED_FORMAT
                and data.get("root") == str(self.root.resolve())
                and data.get("sample_rate") == self.sample_rate
                and all(int(e[2]) + int(e[3]) <= size for e in data["files"].values())
            )
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            valid = False  # entries of the wrong shape
        if not valid:
            if data is not None:
                log.warning(
                    "rebuilding the decoded cache '%s': foreign or truncated", self.location
                )
            self.samples_path.unlink(missing_ok=True)
            return {}
        return data["files"]

    def _write_index(self) -> None:
        data = {
            "format": DECODED_FORMAT,
            "root": str(self.root.resolve()),
            "sample_rate": self.sample_rate,
            "files": self._entries,
        }
        handle, tmp = tempfile.mkstemp(prefix=".index-", dir=self.location)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out, separators=(",", ":"))
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.index_path)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- reading ----------------------------------------------------------------------------
    def __contains__(self, path: str) -> bool:
        return path in self._spans

    def length(self, path: str) -> int | None:
        """Samples of ``path`` at ``sample_rate``, or None when it is not in the cache."""
        span = self._spans.get(path)
        return None if span is None else span[1]

    def piece(self, path: str, start: int, num_samples: int) -> torch.Tensor | None:
        """Samples ``[start, start + num_samples)`` as float32 in [-1, 1) (fewer at the end), or
        None when ``path`` is not in the cache."""
        found = self.address(path, start)
        if found is None:
            return None
        address, left = found
        piece = self._mapped()[address : address + min(left, int(num_samples))]
        return torch.from_numpy(np.multiply(piece, _SCALE, dtype=np.float32))

    def address(self, path: str, start: int) -> tuple[int, int] | None:
        """Where sample ``start`` of ``path`` sits in the samples file, and how many samples
        follow it in that file; None when ``path`` is not in the cache."""
        span = self._spans.get(path)
        if span is None:
            return None
        offset, length = span
        start = min(max(0, int(start)), length)
        return offset + start, length - start

    def crops(
        self, addresses: Sequence[int], lengths: Sequence[int], num_samples: int
    ) -> torch.Tensor:
        """``(B, num_samples)`` float32: ``lengths[i]`` samples from ``addresses[i]`` (see
        :meth:`address`), zero after them. How the training process reads a batch's speech
        when the loader sends addresses instead of samples (moving samples between processes
        costs more than reading them from the page cache)."""
        samples = self._mapped()
        out = np.empty((len(addresses), int(num_samples)), dtype=np.float32)
        for row, address, length in zip(out, addresses, lengths, strict=True):
            n = min(int(length), int(num_samples))
            np.multiply(
                samples[int(address) : int(address) + n], _SCALE, out=row[:n], dtype=np.float32
            )
            row[n:] = 0.0
        return torch.from_numpy(out)

    def _mapped(self) -> np.ndarray:
        if self._map is None:
            # Mapped in each process on first use: workers forked before it map their own.
            self._map = np.memmap(self.samples_path, dtype=np.int16, mode="r")
        return self._map
