"""The LightningModule that trains a waveform-to-waveform enhancer, and its test report.

:class:`GainLearner` owns training concerns only: the loss (negative SI-SDR plus an optional
spectral magnitude term), the optimiser and LR schedule, the validation/test metrics and a guard
that stops the run on a non-finite loss. The network itself is a plain ``nn.Module`` built by
:func:`build_net` from plain keyword arguments, so a checkpoint's ``hyper_parameters["net"]`` is
enough to rebuild it without Lightning or Hydra (``torch.load(..., weights_only=True)`` works
because every hyperparameter is a plain Python type).

SI-SDR is computed on zero-mean signals everywhere (``zero_mean=True``), in the loss, the
metrics and the test report. Clips whose clean reference is silent have no meaningful SI-SDR;
they are left out of every mean (and counted) so that no logged mean is NaN.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

from audiodiag import layers
from audiodiag.losses import si_sdr, spectral_magnitude_loss

__all__ = [
    "NET_KINDS",
    "GainLearner",
    "NonFiniteLossError",
    "build_net",
    "count_parameters",
    "markdown_test_report",
    "silent_mask",
    "summarize_test_records",
]

log = logging.getLogger(__name__)

#: Network kinds :func:`build_net` knows; ``kind`` selects one, the other keys are its kwargs.
NET_KINDS: tuple[str, ...] = ("gainnet", "wiener")

#: A clean clip whose RMS is below this (about -100 dBFS) counts as silent.
SILENCE_RMS = 1e-5

_DEFAULT_LOSS = {"si_sdr": 1.0, "spectral": 0.0}
_DEFAULT_OPTIMIZER = {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0, "betas": [0.9, 0.999]}
_DEFAULT_SCHEDULER = {"name": "cosine", "warmup_steps": 0, "min_lr_ratio": 0.05}
SCHEDULERS: tuple[str, ...] = ("none", "cosine", "plateau")
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step and batch."""


def _plain(value: Any) -> Any:
    """Turn OmegaConf containers (or any mapping/sequence) into plain dicts and lists.

    Hyperparameters are stored in checkpoints, which must load with ``weights_only=True``.
    """
    try:  # Hydra is optional for the module: only convert when OmegaConf is around.
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def build_net(net: Mapping[str, Any]) -> nn.Module:
    """Build the waveform-to-waveform network described by plain keyword arguments.

    ``net["kind"]`` is one of :data:`NET_KINDS` (default ``"gainnet"``); every other key is
    passed to :class:`audiodiag.model.GainNet` or :class:`audiodiag.wiener.WienerEnhancer`.
    This is what export and evaluate call on ``checkpoint["hyper_parameters"]["net"]``.
    """
    kwargs = dict(_plain(net))
    kind = kwargs.pop("kind", "gainnet")
    if kind == "gainnet":
        from audiodiag.model import GainNet

        cls: type[nn.Module] = GainNet
    elif kind == "wiener":
        from audiodiag.wiener import WienerEnhancer

        cls = WienerEnhancer
    else:
        raise ValueError(f"model.kind={kind!r} is unknown; valid: {', '.join(NET_KINDS)}")
    params = inspect.signature(cls.__init__).parameters
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(k for k in kwargs if k not in params) if not takes_var_kw else []
    if unknown:
        accepted = ", ".join(k for k in params if k != "self")
        raise ValueError(
            f"model.{unknown[0]} is not an argument of {cls.__name__} (model.kind={kind!r}); "
            f"accepted: {accepted}"
        )
    return cls(**kwargs)


def count_parameters(net: nn.Module) -> int:
    """Trainable values, diagonal layers in their shared layout (same for all four forms)."""
    return layers.count_parameters(net)


def silent_mask(clean: Tensor, lengths: Tensor | None = None) -> Tensor:
    """(B,) bool: True where the clean reference is silent (RMS below :data:`SILENCE_RMS`)."""
    if lengths is None:
        energy = clean.float().pow(2).mean(dim=-1)
    else:
        time = torch.arange(clean.shape[-1], device=clean.device)
        valid = (time[None, :] < lengths[:, None]).to(clean.dtype)
        energy = (clean.float().pow(2) * valid).sum(-1) / lengths.clamp_min(1).to(clean.dtype)
    return energy.sqrt() < SILENCE_RMS


def per_clip_si_sdr(estimate: Tensor, clean: Tensor, lengths: Tensor) -> Tensor:
    """(B,) zero-mean SI-SDR of each clip over its true length (padding excluded)."""
    estimate, clean = estimate.float(), clean.float()
    if bool((lengths == clean.shape[-1]).all()):
        return scale_invariant_signal_distortion_ratio(estimate, clean, zero_mean=True)
    values = [
        scale_invariant_signal_distortion_ratio(
            estimate[i, : int(n)], clean[i, : int(n)], zero_mean=True
        )
        for i, n in enumerate(lengths.tolist())
    ]
    return torch.stack(values)


def pesq_stoi_available() -> tuple[bool, str]:
    missing = []
    for name in ("pesq", "pystoi"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        return False, (
            f"PESQ/STOI skipped on test: {' and '.join(missing)} not installed "
            "(pip install 'audiodiag[metrics]')"
        )
    return True, ""


def pesq_wb(clean: Any, degraded: Any, sample_rate: int) -> float:
    """Wideband PESQ of one clip (16 kHz; resampled if needed), NaN where PESQ refuses."""
    from pesq import pesq

    if sample_rate != 16000:
        import torchaudio.functional as AF

        clean = AF.resample(torch.as_tensor(clean), sample_rate, 16000).numpy()
        degraded = AF.resample(torch.as_tensor(degraded), sample_rate, 16000).numpy()
    try:  # PESQ raises on silence ("No utterances detected") and on clips under ~0.25 s.
        return float(pesq(16000, clean, degraded, "wb"))
    except Exception:  # noqa: BLE001 - any PESQ failure makes this clip's score undefined
        return math.nan


def stoi_score(clean: Any, degraded: Any, sample_rate: int) -> float:
    """STOI of one clip, NaN where pystoi cannot score it (too short after silence removal)."""
    import warnings

    from pystoi import stoi

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(stoi(clean, degraded, sample_rate, extended=False))
    except Exception:  # noqa: BLE001
        return math.nan
    # pystoi returns 1e-5 with a warning when fewer than 30 frames survive: not a score.
    return math.nan if value <= 1e-5 else value


class GainLearner(pl.LightningModule):
    """Trains ``net`` (waveform to waveform) to map noisy speech to clean speech.

    Args:
        net: plain keyword arguments of the network, with ``kind`` in :data:`NET_KINDS`
            (``{"kind": "gainnet", "layer": "sparse", "depth": 3, ...}``), see :func:`build_net`.
        loss: weights ``{"si_sdr": w1, "spectral": w2}`` of negative SI-SDR (dB) and the
            multi-resolution spectral magnitude loss.
        optimizer: ``{"name": adamw|adam|sgd, "lr": ..., "weight_decay": ..., "betas": [..]}``.
        scheduler: ``{"name": none|cosine|plateau, "warmup_steps": int, "min_lr_ratio": float}``;
            cosine decays per step over the run's estimated steps after a linear warmup,
            plateau halves the LR when the monitored validation metric stalls.
        sample_rate: of the waveforms (for PESQ/STOI and logging).
        test_pesq_stoi: score PESQ-WB and STOI on test when ``pesq``/``pystoi`` are installed.
        test_reference: plain kwargs of a reference net (e.g. ``{"kind": "wiener"}``) scored on
            the same test clips so the report has its row beside the model's; ``None`` skips.
        monitor: the validation metric the plateau scheduler follows.
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        loss: Mapping[str, float] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        sample_rate: int = 16000,
        test_pesq_stoi: bool = True,
        test_reference: Mapping[str, Any] | None = None,
        monitor: str = "val/si_sdri",
    ) -> None:
        super().__init__()
        # Plain containers only: checkpoints must load with weights_only=True.
        net = _plain(net)
        loss = {**_DEFAULT_LOSS, **_plain(loss or {})}
        optimizer = {**_DEFAULT_OPTIMIZER, **_plain(optimizer or {})}
        scheduler = {**_DEFAULT_SCHEDULER, **_plain(scheduler or {})}
        test_reference = _plain(test_reference) if test_reference else None
        unknown_loss = sorted(set(loss) - set(_DEFAULT_LOSS))
        if unknown_loss:
            raise ValueError(f"loss.{unknown_loss[0]} is unknown; valid: si_sdr, spectral")
        if loss["si_sdr"] == 0 and loss["spectral"] == 0:
            raise ValueError("loss.si_sdr and loss.spectral are both 0: nothing to train on")
        if str(optimizer["name"]).lower() not in OPTIMIZERS:
            raise ValueError(
                f"optimizer.name={optimizer['name']!r} is unknown; valid: {', '.join(OPTIMIZERS)}"
            )
        if str(scheduler["name"]).lower() not in SCHEDULERS:
            raise ValueError(
                f"scheduler.name={scheduler['name']!r} is unknown; valid: {', '.join(SCHEDULERS)}"
            )
        self.save_hyperparameters()
        self.net = build_net(net)
        self.sample_rate = int(sample_rate)

        self.val_si_sdr = MeanMetric()
        self.val_si_sdri = MeanMetric()
        self.test_si_sdr = MeanMetric()
        self.test_si_sdri = MeanMetric()
        self.test_pesq = MeanMetric()
        self.test_stoi = MeanMetric()
        #: Per-clip test results (all ranks gathered), filled by test_step / on_test_epoch_end.
        self.test_records: list[dict[str, Any]] = []
        self._silent_skipped = 0
        self._pesq_stoi_on = False
        # A tuple keeps the reference net out of the state_dict and the optimiser.
        self._reference: tuple[nn.Module, ...] = ()

    # ------------------------------------------------------------------ forward and loss
    def forward(self, waveform: Tensor) -> Tensor:
        """Enhance ``waveform`` (B, T) -> (B, T)."""
        return self.net(waveform)

    def compute_loss(
        self, enhanced: Tensor, clean: Tensor, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Weighted loss and the batch-mean SI-SDR (dB) that it contains, padding masked out."""
        enhanced, clean = enhanced.float(), clean.float()
        if lengths is not None and bool((lengths < clean.shape[-1]).any()):
            time = torch.arange(clean.shape[-1], device=clean.device)
            valid = (time[None, :] < lengths[:, None]).to(clean.dtype)
            enhanced, clean = enhanced * valid, clean * valid
        # Silent references would pull the loss towards "output silence" for no reason.
        keep = ~silent_mask(clean)
        if not bool(keep.any()):
            keep = torch.ones_like(keep)
        sdr = si_sdr(enhanced[keep], clean[keep])
        total = enhanced.new_zeros(())
        weights = self.hparams["loss"]
        if weights["si_sdr"]:
            total = total - weights["si_sdr"] * sdr.mean()
        if weights["spectral"]:
            total = total + weights["spectral"] * spectral_magnitude_loss(enhanced, clean)
        return total, sdr.mean().detach()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step; a NaN/inf loss raises :class:`NonFiniteLossError`."""
        noisy, clean = batch["noisy"], batch["clean"]
        enhanced = self.net(noisy)
        loss, sdr = self.compute_loss(enhanced, clean, batch.get("length"))
        if not bool(torch.isfinite(loss)):
            sources = ", ".join(map(str, batch.get("source_id", [])[:4]))
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step}, "
                f"epoch {self.current_epoch}, batch index {batch_idx} (first sources: "
                f"{sources or 'n/a'}); lower optimizer.lr, set trainer.gradient_clip_val, "
                "or check that batch's audio"
            )
        size = noisy.shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        self.log("train/si_sdr", sdr, on_step=False, on_epoch=True, batch_size=size)
        return loss

    # ------------------------------------------------------------------ evaluation
    def _score(
        self, batch: dict[str, Any], enhanced: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-clip (si_sdr enhanced, si_sdr noisy, lengths, valid mask)."""
        noisy, clean = batch["noisy"], batch["clean"]
        lengths = batch.get("length")
        if lengths is None:
            lengths = torch.full((noisy.shape[0],), noisy.shape[-1], device=noisy.device)
        valid = ~silent_mask(clean, lengths)
        self._silent_skipped += int((~valid).sum())
        sdr_enh = per_clip_si_sdr(enhanced, clean, lengths)
        sdr_noisy = per_clip_si_sdr(noisy, clean, lengths)
        return sdr_enh, sdr_noisy, lengths, valid

    @staticmethod
    def _update_mean(metric: MeanMetric, values: Tensor, valid: Tensor) -> None:
        # Weight 0 (and value 0, since NaN*0 is NaN) leaves silent clips out of the mean.
        valid = valid & torch.isfinite(values)
        metric.update(torch.where(valid, values, torch.zeros_like(values)), valid.float())

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Validation loss, SI-SDR and SI-SDR improvement; returns the enhanced batch."""
        enhanced = self.net(batch["noisy"]).float()
        loss, _ = self.compute_loss(enhanced, batch["clean"], batch.get("length"))
        sdr_enh, sdr_noisy, _, valid = self._score(batch, enhanced)
        self._update_mean(self.val_si_sdr, sdr_enh, valid)
        self._update_mean(self.val_si_sdri, sdr_enh - sdr_noisy, valid)
        size = enhanced.shape[0]
        self.log("val/loss", loss, on_epoch=True, batch_size=size, sync_dist=True)
        self.log("val/si_sdr", self.val_si_sdr, on_epoch=True, batch_size=size)
        self.log("val/si_sdri", self.val_si_sdri, on_epoch=True, prog_bar=True, batch_size=size)
        return {"enhanced": enhanced.detach()}

    def on_validation_epoch_start(self) -> None:
        """Reset the silent-clip count for this pass."""
        self._silent_skipped = 0

    def on_validation_epoch_end(self) -> None:
        """Say once how many silent clips were left out of the means."""
        if self._silent_skipped and not self.trainer.sanity_checking:
            rank_zero_info(f"validation: {self._silent_skipped} silent clip(s) left out of means")

    def on_test_start(self) -> None:
        """Set up PESQ/STOI (or say why not) and the reference net."""
        self.test_records = []
        self._silent_skipped = 0
        self._pesq_stoi_on = False
        if self.hparams["test_pesq_stoi"]:
            ok, why = pesq_stoi_available()
            self._pesq_stoi_on = ok
            if not ok:
                rank_zero_info(why)
        ref = self.hparams["test_reference"]
        self._reference = (build_net(ref).to(self.device).eval(),) if ref else ()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Test metrics and one record per clip (noise type, SNR, every score)."""
        noisy, clean = batch["noisy"], batch["clean"]
        enhanced = self.net(noisy).float()
        sdr_enh, sdr_noisy, lengths, valid = self._score(batch, enhanced)
        self._update_mean(self.test_si_sdr, sdr_enh, valid)
        self._update_mean(self.test_si_sdri, sdr_enh - sdr_noisy, valid)
        size = noisy.shape[0]
        self.log("test/si_sdr", self.test_si_sdr, batch_size=size)
        self.log("test/si_sdri", self.test_si_sdri, batch_size=size)

        systems: dict[str, Tensor] = {"noisy": noisy.float(), "model": enhanced}
        if self._reference:
            systems["reference"] = self._reference[0](noisy).float()
        snr = batch.get("snr_db", torch.full((size,), math.nan))
        noise_types = list(batch.get("noise_type", ["unknown"] * size))
        source_ids = list(batch.get("source_id", [""] * size))
        clean_np = clean.float().cpu().numpy()
        outs_np = {name: wav.detach().cpu().numpy() for name, wav in systems.items()}
        sdr_ref = per_clip_si_sdr(systems["reference"], clean, lengths) if self._reference else None
        for i in range(size):
            n = int(lengths[i])
            record: dict[str, Any] = {
                "source_id": str(source_ids[i]),
                "noise_type": str(noise_types[i]),
                "snr_db": float(snr[i]),
                "seconds": n / self.sample_rate,
                "silent": not bool(valid[i]),
                "si_sdr": {"noisy": float(sdr_noisy[i]), "model": float(sdr_enh[i])},
            }
            if sdr_ref is not None:
                record["si_sdr"]["reference"] = float(sdr_ref[i])
            if self._pesq_stoi_on and bool(valid[i]):
                ref_clean = clean_np[i, :n]
                record["pesq"] = {
                    k: pesq_wb(ref_clean, v[i, :n], self.sample_rate) for k, v in outs_np.items()
                }
                record["stoi"] = {
                    k: stoi_score(ref_clean, v[i, :n], self.sample_rate) for k, v in outs_np.items()
                }
            self.test_records.append(record)
        if self._pesq_stoi_on:
            recs = self.test_records[-size:]
            pesq_vals = torch.tensor([r.get("pesq", {}).get("model", math.nan) for r in recs])
            stoi_vals = torch.tensor([r.get("stoi", {}).get("model", math.nan) for r in recs])
            self._update_mean(self.test_pesq, pesq_vals.to(self.device), valid)
            self._update_mean(self.test_stoi, stoi_vals.to(self.device), valid)
            if self.test_pesq.update_count:
                self.log("test/pesq", self.test_pesq, batch_size=size)
                self.log("test/stoi", self.test_stoi, batch_size=size)
        return {"enhanced": enhanced.detach()}

    def on_test_epoch_end(self) -> None:
        """Gather every rank's per-clip records so rank 0 can write the full report."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, self.test_records)
            self.test_records = [r for part in gathered for r in part]
        if self._silent_skipped:
            rank_zero_info(f"test: {self._silent_skipped} silent clip(s) left out of means")
        self._reference = ()

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        """Optimiser and (per-step cosine with warmup, or plateau) LR schedule from hparams."""
        opt_cfg = self.hparams["optimizer"]
        params = [p for p in self.parameters() if p.requires_grad]
        name = str(opt_cfg["name"]).lower()
        lr, wd = float(opt_cfg["lr"]), float(opt_cfg["weight_decay"])
        if name == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=lr, weight_decay=wd, momentum=float(opt_cfg.get("momentum", 0.9))
            )
        else:
            cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
            optimizer = cls(params, lr=lr, weight_decay=wd, betas=tuple(opt_cfg["betas"]))

        sch_cfg = self.hparams["scheduler"]
        kind = str(sch_cfg["name"]).lower()
        if kind == "none":
            return optimizer
        if kind == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=0.5, patience=int(sch_cfg.get("patience", 2))
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": plateau, "monitor": self.hparams["monitor"]},
            }
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(
                "scheduler.name=cosine needs a finite run length: set trainer.max_epochs or "
                "trainer.max_steps (or use scheduler.name=plateau|none)"
            )
        warmup = int(sch_cfg.get("warmup_steps", 0))
        floor = float(sch_cfg.get("min_lr_ratio", 0.0))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _WarmupCosine(warmup, max(int(total), 1), floor)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class _WarmupCosine:
    """LR factor: linear warmup over ``warmup`` steps, then cosine down to ``floor``."""

    def __init__(self, warmup: int, total: int, floor: float) -> None:
        self.warmup, self.total, self.floor = warmup, total, floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------- test report
def _snr_groups(records: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Group record indices by SNR: exact values when there are few, else 5 dB buckets."""
    snrs = [float(r["snr_db"]) for r in records]
    finite = [s for s in snrs if math.isfinite(s)]
    distinct = sorted({round(s, 2) for s in finite})
    groups: dict[str, list[int]] = defaultdict(list)
    keyed: dict[float, str] = {}
    for i, s in enumerate(snrs):
        if not math.isfinite(s):
            label, order = "SNR n/a", math.inf
        elif len(distinct) <= 8:
            order = round(s, 2)
            label = f"{order:g} dB"
        else:
            lo = 5.0 * math.floor(s / 5.0)
            order = lo
            label = f"[{lo:g}, {lo + 5:g}) dB"
        keyed[order] = label
        groups[label].append(i)
    return {keyed[k]: groups[keyed[k]] for k in sorted(keyed)}


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def summarize_test_records(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean scores per system, overall and by noise type and SNR, from per-clip records.

    Returns ``{"n_clips", "n_silent", "systems", "groups": {label: {"kind", "n", "si_sdr":
    {system: dB}, "si_sdri": {...}, "pesq": {...}, "stoi": {...}}}}``; silent clips are left
    out of every mean. ``label`` is ``"all"``, a noise type, or an SNR value/bucket.
    """
    scored = [r for r in records if not r.get("silent")]
    systems: list[str] = []
    for r in scored:
        for name in r["si_sdr"]:
            if name not in systems:
                systems.append(name)
    by_noise: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(scored):
        by_noise[str(r["noise_type"])].append(i)
    groups: dict[str, tuple[str, list[int]]] = {"all": ("all", list(range(len(scored))))}
    for name in sorted(by_noise):
        groups[name] = ("noise", by_noise[name])
    for label, idx in _snr_groups(scored).items():
        groups[label] = ("snr", idx)

    summary: dict[str, Any] = {
        "n_clips": len(records),
        "n_silent": len(records) - len(scored),
        "systems": systems,
        "groups": {},
    }
    for label, (kind, idx) in groups.items():
        rows = [scored[i] for i in idx]
        entry: dict[str, Any] = {"kind": kind, "n": len(rows)}
        for metric in ("si_sdr", "pesq", "stoi"):
            if not any(metric in r for r in rows):
                continue
            entry[metric] = {
                s: _mean([r.get(metric, {}).get(s, math.nan) for r in rows]) for s in systems
            }
        entry["si_sdri"] = {
            s: _mean([r["si_sdr"][s] - r["si_sdr"]["noisy"] for r in rows])
            for s in systems
            if s != "noisy"
        }
        summary["groups"][label] = entry
    return summary


def markdown_test_report(
    summary: Mapping[str, Any], system_names: Mapping[str, str] | None = None
) -> str:
    """Markdown tables (one per metric): rows are systems, columns overall / noise / SNR."""
    names = {"noisy": "noisy input", "reference": "Wiener", "model": "model"}
    names.update(system_names or {})
    labels = list(summary["groups"])
    header = "| system | " + " | ".join(labels) + " |"
    rule = "|---|" + "---:|" * len(labels)
    counts = "| clips | " + " | ".join(str(summary["groups"][g]["n"]) for g in labels) + " |"
    out = [
        f"Test set: {summary['n_clips']} clips ({summary['n_silent']} silent, left out). "
        "SI-SDR on zero-mean signals.",
        "",
    ]
    titles = {
        "si_sdr": "SI-SDR (dB)",
        "si_sdri": "SI-SDR improvement (dB)",
        "pesq": "PESQ-WB",
        "stoi": "STOI",
    }
    for metric, title in titles.items():
        if not any(metric in summary["groups"][g] for g in labels):
            continue
        out += [f"**{title}**", "", header, rule, counts]
        for system in summary["systems"]:
            if metric == "si_sdri" and system == "noisy":
                continue
            cells = []
            for g in labels:
                value = summary["groups"][g].get(metric, {}).get(system)
                cells.append("n/a" if value is None else f"{value:.2f}")
            out.append(f"| {names.get(system, system)} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
