"""Speech sources, noise sources, the mixer and the DataModule that joins them.

Hydra builds these from ``conf/data/*.yaml`` and ``conf/noise/*.yaml``::

    datamodule = hydra.utils.instantiate(cfg.data)   # -> NoisySpeechDataModule
"""

from __future__ import annotations

from audiodiag.data.datamodule import (
    AudioStore,
    BadFileLog,
    DataSummaryCallback,
    EpochSampler,
    MixtureDataset,
    NoisySpeechDataModule,
)
from audiodiag.data.download import UnsafeArchiveError, download_and_extract, safe_extract
from audiodiag.data.manifest import FileInfo, load_manifest
from audiodiag.data.mixer import NO_NOISE_SNR_DB, SILENT_SNR_DB, Mixer, Mixture
from audiodiag.data.noise import NOISE_TYPES, NoiseSource
from audiodiag.data.noise_bank import NoiseBank
from audiodiag.data.speech import (
    SPLITS,
    VCTK,
    DemoSpeech,
    FolderSpeech,
    LibriSpeech,
    SpeechCommands,
    SpeechSource,
    Utterance,
    assign_splits,
)

__all__ = [
    "NOISE_TYPES",
    "NO_NOISE_SNR_DB",
    "SILENT_SNR_DB",
    "SPLITS",
    "VCTK",
    "AudioStore",
    "BadFileLog",
    "DataSummaryCallback",
    "DemoSpeech",
    "EpochSampler",
    "FileInfo",
    "FolderSpeech",
    "LibriSpeech",
    "Mixer",
    "Mixture",
    "MixtureDataset",
    "NoiseBank",
    "NoiseSource",
    "NoisySpeechDataModule",
    "SpeechCommands",
    "SpeechSource",
    "UnsafeArchiveError",
    "Utterance",
    "assign_splits",
    "download_and_extract",
    "load_manifest",
    "safe_extract",
]
