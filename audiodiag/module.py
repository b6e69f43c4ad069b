"""The LightningModule that trains a waveform-to-waveform enhancer.

:class:`GainLearner` owns training concerns only: the loss (negative SI-SDR plus an optional
spectral magnitude term), the optimiser and LR schedule, the validation/test metrics and a guard
that stops the run on a non-finite loss. The network itself is a plain ``nn.Module`` built by
:func:`audiodiag.nets.build_net` from plain keyword arguments, so a checkpoint's
``hyper_parameters["net"]`` is enough to rebuild it without Lightning or Hydra
(``torch.load(..., weights_only=True)`` works because every hyperparameter is a plain type).

SI-SDR is :func:`audiodiag.losses.si_sdr` (zero-mean) everywhere: in the loss, the metrics and
the per-clip test records (:func:`audiodiag.metrics.score_clip`, shared with evaluate; the
tables are :mod:`audiodiag.metrics`' too). Clips whose clean reference is silent have no
meaningful SI-SDR; they are left out of every mean (and counted) so no logged mean is NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import MeanMetric

from audiodiag.compiled import compile_blocker, compile_network
from audiodiag.losses import masked_magnitude_loss, si_sdr, spectral_magnitude_loss
from audiodiag.metrics import (
    per_clip_si_sdr,
    pesq_stoi_available,
    score_clip,
    silent_mask,
)
from audiodiag.nets import build_net, plain_values

__all__ = ["DEFAULT_OPTIMIZER", "DEFAULT_SCHEDULER", "GainLearner", "NonFiniteLossError"]

log = logging.getLogger(__name__)

# The training defaults of conf/train.yaml (the one source users see); a test holds these equal
# to it, so a GainLearner built without a config trains like `python -m audiodiag.train`.
_DEFAULT_LOSS = {"si_sdr": 1.0, "spectral": 0.0, "masked_magnitude": 20.0}
DEFAULT_OPTIMIZER = {"name": "adamw", "lr": 0.01, "weight_decay": 0.0, "betas": [0.9, 0.999]}
DEFAULT_SCHEDULER = {"name": "cosine", "warmup_steps": 20, "min_lr_ratio": 0.05}
SCHEDULERS: tuple[str, ...] = ("none", "cosine", "plateau")
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step and batch."""


class GainLearner(pl.LightningModule):
    """Trains ``net`` (waveform to waveform) to map noisy speech to clean speech.

    Args:
        net: plain keyword arguments of the network, with ``kind`` in :data:`audiodiag.nets.NET_KINDS`
            (``{"kind": "gainnet", "layer": "sparse", "depth": 3, ...}``), see
            :func:`audiodiag.nets.build_net`.
        loss: weights ``{"si_sdr": w1, "spectral": w2, "masked_magnitude": w3}`` of negative
            SI-SDR (dB), the multi-resolution spectral magnitude loss of the output and the
            compressed-magnitude loss of the masked spectrum on the net's own STFT frames
            (:func:`audiodiag.losses.masked_magnitude_loss`).
        optimizer: ``{"name": adamw|adam|sgd, "lr": ..., "weight_decay": ..., "betas": [..]}``.
        scheduler: ``{"name": none|cosine|plateau, "warmup_steps": int, "min_lr_ratio": float}``;
            cosine decays per step over the run's estimated steps after a linear warmup,
            plateau halves the LR when the monitored validation metric stalls.
        sample_rate: of the waveforms (for PESQ/STOI and logging).
        test_pesq_stoi: score PESQ-WB and STOI on test when ``pesq``/``pystoi`` are installed.
        test_reference: plain kwargs of a reference net (e.g. ``{"kind": "wiener"}``) scored on
            the same test clips so the report has its row beside the model's; ``None`` skips.
        monitor: the validation metric the plateau scheduler follows.
        compile_network: train through ``torch.compile`` of the network
            (:mod:`audiodiag.compiled`); where it cannot compile (no C++ compiler on CPU,
            ``layer=sparse``, a compiler error) training runs eager and says why, once.
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
        compile_network: bool = False,
    ) -> None:
        super().__init__()
        # Plain containers only: checkpoints must load with weights_only=True.
        net = plain_values(net)
        loss = {**_DEFAULT_LOSS, **plain_values(loss or {})}
        optimizer = {**DEFAULT_OPTIMIZER, **plain_values(optimizer or {})}
        scheduler = {**DEFAULT_SCHEDULER, **plain_values(scheduler or {})}
        test_reference = plain_values(test_reference) if test_reference else None
        unknown_loss = sorted(set(loss) - set(_DEFAULT_LOSS))
        if unknown_loss:
            raise ValueError(
                f"loss.{unknown_loss[0]} is unknown; valid: {', '.join(_DEFAULT_LOSS)}"
            )
        _check_numbers(loss, optimizer, scheduler)
        if not any(loss.values()):
            raise ValueError(f"loss.{', loss.'.join(_DEFAULT_LOSS)} are all 0: nothing to train on")
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
        # The compiled network once decided (a tuple keeps it out of the module tree); None:
        # not decided yet; (): training eager.
        self._compiled: tuple[Callable[[Tensor], Tensor], ...] | None = None
        self._compile_proven = False  # its backward has compiled and run once

    # ------------------------------------------------------------------ forward and loss
    def forward(self, waveform: Tensor) -> Tensor:
        """Enhance ``waveform`` (B, T) -> (B, T)."""
        return self.net(waveform)

    def enhance(self, noisy: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """The enhanced batch, and (spectrum, gains) when the masked-spectrum loss needs them."""
        net: Any = self.net  # a spectral-gain enhancer (build_net's kinds)
        network = self._compiled_network() if noisy.shape[-1] > 0 else None
        if network is not None:
            spec = net.stft.analysis(noisy)
            try:
                features = net.features(spec)
                if not self._compile_proven:
                    # The backward compiles at its first call, inside Lightning's backward where
                    # eager could no longer take over: prove it here once, gradients discarded.
                    params = [p for p in net.parameters() if p.requires_grad]
                    probe = network(features.detach()).sum()
                    torch.autograd.grad(probe, params, allow_unused=True)
                    self._compile_proven = True
                gains = network(features)
            except Exception as error:  # noqa: BLE001 - any compiler failure: train eager
                self._compiled = ()
                reason = (str(error).strip().splitlines() or [""])[0]
                log.warning(
                    "compile=true failed, training eager: %s: %s", type(error).__name__, reason
                )
                return self.enhance(noisy)
            enhanced = net.stft.synthesis(spec * gains, noisy.shape[-1])
            return enhanced, (spec, gains) if self.hparams["loss"]["masked_magnitude"] else None
        if self.hparams["loss"]["masked_magnitude"] and noisy.shape[-1] > 0:
            enhanced, spec, gains = net.enhance_with_gains(noisy)
            return enhanced, (spec, gains)
        return net(noisy), None

    def _compiled_network(self) -> Callable[[Tensor], Tensor] | None:
        """The compiled network for a training step, or None (eager). Decided at the first
        training step, on the device that step runs on."""
        if not (self.hparams.get("compile_network") and self.training and torch.is_grad_enabled()):
            return None
        if self._compiled is None:
            blocker = compile_blocker(self.net, self.device)
            if blocker:
                rank_zero_info(f"compile=true: training eager ({blocker})")
            self._compiled = () if blocker else (compile_network(self.net),)
        return self._compiled[0] if self._compiled else None

    def compute_loss(
        self,
        enhanced: Tensor,
        clean: Tensor,
        lengths: Tensor | None = None,
        masked: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Weighted loss and the batch-mean SI-SDR (dB) that it contains, padding masked out.
        ``masked``: (noisy spectrum, gains) from :meth:`enhance`, for ``loss.masked_magnitude``.
        Its frames past a clip's length count too: there the reference is silence and the input
        holds the noise alone (a short utterance's crop), or both are zero padding (no loss)."""
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
        if weights["masked_magnitude"] and masked is not None:
            spec, gains = masked
            net: Any = self.net  # a spectral-gain enhancer: it returned (spectrum, gains)
            clean_spec = net.stft.analysis(clean.to(spec.real.dtype))
            term = masked_magnitude_loss(gains.float(), spec, clean_spec)
            total = total + weights["masked_magnitude"] * term
        return total, sdr.mean().detach()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step; a NaN/inf loss raises :class:`NonFiniteLossError`."""
        noisy, clean = batch["noisy"], batch["clean"]
        enhanced, masked = self.enhance(noisy)
        loss, sdr = self.compute_loss(enhanced, clean, batch.get("length"), masked)
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
        enhanced, masked = self.enhance(batch["noisy"])
        enhanced = enhanced.float()
        loss, _ = self.compute_loss(enhanced, batch["clean"], batch.get("length"), masked)
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
        for i in range(size):
            n = int(lengths[i])
            labels = {"source_id": source_ids[i], "noise_type": noise_types[i], "snr_db": snr[i]}
            clip = {name: wav[i, :n] for name, wav in systems.items()}
            record = score_clip(clean[i, :n], clip, self.sample_rate, labels, self._pesq_stoi_on)
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


def _number(key: str, value: Any, low: float, high: float = math.inf, *, open_low: bool) -> float:
    """``value`` as a finite float in the range, else ValueError naming ``key`` and the range."""
    bound = f"> {low:g}" if open_low else f">= {low:g}"
    accepted = bound if high == math.inf else f"{bound} and <= {high:g}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{key}={value!r} is not a finite number; accepted: a number {accepted}")
    if (number <= low if open_low else number < low) or number > high:
        raise ValueError(f"{key}={value!r} is out of range; accepted: a number {accepted}")
    return number


def _check_numbers(
    loss: Mapping[str, Any], optimizer: Mapping[str, Any], scheduler: Mapping[str, Any]
) -> None:
    """Every numeric setting checked at construction, so a bad one stops the run with one line
    naming its key instead of a TypeError (or PyTorch's nameless "Invalid learning rate") later."""
    for key in _DEFAULT_LOSS:
        _number(f"loss.{key}", loss[key], 0.0, open_low=False)
    _number("optimizer.lr", optimizer["lr"], 0.0, open_low=True)
    _number("optimizer.weight_decay", optimizer["weight_decay"], 0.0, open_low=False)
    if "momentum" in optimizer:
        _number("optimizer.momentum", optimizer["momentum"], 0.0, 1.0, open_low=False)
    betas = optimizer.get("betas")
    if not isinstance(betas, list | tuple) or len(betas) != 2:
        raise ValueError(
            f"optimizer.betas={betas!r} must be two numbers in [0, 1), e.g. [0.9, 0.999]"
        )
    for beta in betas:
        if _number("optimizer.betas", beta, 0.0, 1.0, open_low=False) >= 1.0:
            raise ValueError(f"optimizer.betas={betas!r} must be two numbers in [0, 1)")
    warmup = _number("scheduler.warmup_steps", scheduler.get("warmup_steps", 0), 0, open_low=False)
    if warmup != int(warmup):
        raise ValueError(f"scheduler.warmup_steps={warmup!r} must be a whole number of steps")
    _number("scheduler.min_lr_ratio", scheduler.get("min_lr_ratio", 0.0), 0.0, 1.0, open_low=False)


class _WarmupCosine:
    """LR factor: linear warmup over ``warmup`` steps, then cosine down to ``floor``."""

    def __init__(self, warmup: int, total: int, floor: float) -> None:
        self.warmup, self.total, self.floor = warmup, total, floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
