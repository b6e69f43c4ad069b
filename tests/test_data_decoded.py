"""The decoded int16 copy of a corpus (data.decoded_cache) and the address-only recipes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from test_data_pipeline import _datamodule
from test_data_sources import make_demo, speechlike

from audiodiag.audio import load_mono
from audiodiag.data.datamodule import collate_recipes
from audiodiag.data.decoded import DecodedCache, decoded_cache_dir
from audiodiag.data.manifest import manifest_path

SPLITS_4 = {"s1": "train", "s2": "train", "s3": "valid", "s4": "test"}


def _decode(path: str) -> torch.Tensor | None:
    try:
        return load_mono(path, 16000)
    except Exception:
        return None


def _corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    same = root / "a.flac"  # 16-bit at the training rate: exact
    sf.write(same, speechlike(1.0, 16000, 1), 16000, subtype="PCM_16")
    other = root / "b.wav"  # 22.05 kHz: resampled, then rounded to 16 bits
    sf.write(other, speechlike(0.7, 22050, 2), 22050)
    bad = root / "c.flac"
    bad.write_bytes(b"corrupt" * 50)
    return root, [str(same), str(other), str(bad)]


def test_crops_equal_the_decoded_files_and_bad_files_are_left_out(tmp_path):
    root, paths = _corpus(tmp_path)
    cache = DecodedCache(root, 16000)
    assert cache.sync(paths, _decode) == 3
    assert len(cache) == 2 and paths[2] not in cache
    exact = load_mono(paths[0], 16000)
    assert cache.length(paths[0]) == exact.numel()
    assert torch.equal(cache.piece(paths[0], 1234, 5000), exact[1234:6234])
    resampled = load_mono(paths[1], 16000)
    piece = cache.piece(paths[1], 100, 20000)  # runs past the end: fewer samples
    assert piece.numel() == resampled.numel() - 100
    assert (piece - resampled[100:]).abs().max() <= 1.0 / 32768
    # Addresses read in a batch give the same samples, zero-padded to the segment.
    starts, needs = [0, 1234], [8000, 8000]
    found = [cache.address(p, s) for p, s in zip(paths[:2], starts, strict=True)]
    batch = cache.crops(
        [a for a, _ in found], [min(n, r) for (_, r), n in zip(found, needs, strict=True)], 12000
    )
    assert batch.shape == (2, 12000) and not batch[:, 8000:].any()
    assert torch.equal(batch[0, :8000], exact[:8000])
    assert torch.equal(batch[1, :8000], cache.piece(paths[1], 1234, 8000))


def test_the_copy_is_reused_and_only_changed_files_are_decoded_again(tmp_path):
    root, paths = _corpus(tmp_path)
    location = decoded_cache_dir(root)
    assert location == root / ".audiodiag-decoded"  # a writable root keeps it beside the data
    DecodedCache(root, 16000).sync(paths, _decode)
    size = (location / "pcm-16000.i16").stat().st_size
    decoded = []

    def counting(path):
        decoded.append(path)
        return _decode(path)

    again = DecodedCache(root, 16000)
    assert again.sync(paths[:2], counting) == 0 and decoded == []
    sf.write(paths[0], speechlike(1.5, 16000, 9), 16000, subtype="PCM_16")  # changed
    os.utime(paths[0], ns=(1, 1))
    assert again.sync(paths[:2], counting) == 1 and decoded == [paths[0]]
    assert torch.equal(again.piece(paths[0], 0, 24000), load_mono(paths[0], 16000))
    assert (location / "pcm-16000.i16").stat().st_size == size + 24000 * 2  # appended


def test_a_truncated_or_foreign_copy_is_rebuilt(tmp_path):
    root, paths = _corpus(tmp_path)
    cache = DecodedCache(root, 16000)
    cache.sync(paths, _decode)
    samples = cache.samples_path
    with open(samples, "r+b") as handle:  # an interrupted write lost the end of the samples
        handle.truncate(samples.stat().st_size // 2)
    rebuilt = DecodedCache(root, 16000)
    assert rebuilt.sync(paths, _decode) == 3
    assert torch.equal(rebuilt.piece(paths[0], 0, 16000), load_mono(paths[0], 16000))
    index = json.loads(rebuilt.index_path.read_text())
    index["root"] = "/elsewhere"
    rebuilt.index_path.write_text(json.dumps(index))
    assert DecodedCache(root, 16000).sync(paths, _decode) == 3


def test_a_read_only_root_keeps_the_copy_in_the_user_cache(tmp_path, monkeypatch):
    root, _ = _corpus(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("audiodiag.data.manifest.os.access", lambda path, mode: False)
    location = decoded_cache_dir(root)
    assert location.parent == tmp_path / "cache" / "audiodiag" / "decoded"
    assert manifest_path(root).parent == tmp_path / "cache" / "audiodiag" / "manifests"


def test_an_unwritable_cache_folder_names_the_folder_and_the_options(tmp_path):
    root = make_demo(tmp_path / "demo", SPLITS_4, per_speaker=2)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    datamodule = _datamodule(root, decoded_cache=True, decoded_cache_dir=str(blocker / "sub"))
    with pytest.raises(OSError, match=r"decoded cache in '.*file/sub'.*data\.decoded_cache_dir"):
        datamodule.setup("fit")


@pytest.mark.parametrize("workers", [0, 2])
def test_address_recipes_give_the_same_mixtures_as_reading_the_files(tmp_path, workers):
    root = make_demo(tmp_path / "demo", SPLITS_4, per_speaker=3)
    from_files = _datamodule(root, noise_bank=True)
    batched = _datamodule(root, mix_on_device=True, decoded_cache=True, num_workers=workers)
    from_files.setup("fit")
    batched.setup("fit")
    dataset = batched.datasets["train"]
    for epoch in (0, 1):
        from_files.set_epoch(epoch)
        batched.set_epoch(epoch)
        expected = list(from_files.train_dataloader())
        recipes = list(batched.train_dataloader())
        assert dataset.sends_addresses and "clean" not in recipes[0]
        assert isinstance(recipes[0]["clean_at"], np.ndarray)  # numbers travel by value
        for want, recipe in zip(expected, recipes, strict=True):
            have = batched.on_after_batch_transfer(recipe, 0)
            # The demo files are 16-bit at 16 kHz, so the copy is exact.
            for key in ("noisy", "clean", "snr_db"):
                assert torch.allclose(have[key], want[key], atol=1e-6), key
            assert have["noise_type"] == want["noise_type"]
    # Evaluation reads the copy per item, with the files' samples.
    for a, b in zip(from_files.val_dataloader(), batched.val_dataloader(), strict=True):
        assert torch.equal(a["noisy"], b["noisy"])


def test_recipe_collate_sends_numbers_as_arrays_and_stacks_tensors():
    items = [
        {"clean": torch.full((3,), float(i)), "length": 3, "snr_db": 1.5 * i, "noise_type": "pink"}
        for i in range(2)
    ]
    batch = collate_recipes(items)
    assert batch["clean"].shape == (2, 3) and batch["noise_type"] == ["pink", "pink"]
    assert batch["length"].tolist() == [3, 3] and batch["snr_db"].tolist() == [0.0, 1.5]
    assert isinstance(batch["snr_db"], np.ndarray)


def test_half_a_sample_left_by_an_interrupted_write_does_not_misalign_the_next_files(tmp_path):
    root, paths = _corpus(tmp_path)
    cache = DecodedCache(root, 16000)
    cache.sync(paths[:1], _decode)
    with open(cache.samples_path, "ab") as handle:
        handle.write(b"\x01")  # killed mid-write, before the index knew of the next file
    again = DecodedCache(root, 16000)
    assert again.sync(paths[:2], _decode) == 1
    resampled = load_mono(paths[1], 16000)
    assert (again.piece(paths[1], 0, 20000) - resampled).abs().max() <= 1.0 / 32768
