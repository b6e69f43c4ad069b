"""TensorBoard media for training runs: audio, spectrograms, gain maps and per-bin weights.

:class:`TensorBoardMediaLogger` keeps the first few clips of the first validation batch (the
validation mixtures are seeded, so they are the same clips every epoch) and, at the end of each
validation epoch, logs to every TensorBoard logger of the trainer:

* audio: ``clips/<i>/noisy``, ``clips/<i>/clean`` (once) and ``clips/<i>/enhanced`` (every time);
* images: one figure per clip with the noisy, enhanced and clean spectrograms and the gain map
  over time (``spectrograms/<i>``), and the learned per-bin weights of every diagonal layer as
  curves over frequency (``weights/per_bin``).

Figures are drawn with ``matplotlib.figure.Figure`` (the Agg canvas, no pyplot state), so the
callback works on headless machines and in worker processes.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import Tensor, nn

from audiodiag.layers import DiagonalLinear

__all__ = ["TensorBoardMediaLogger", "per_bin_weights"]


def per_bin_weights(net: nn.Module) -> dict[str, Tensor]:
    """Every diagonal layer's weight in the family's shared layout, ``(2k+1, bins)``, by name.

    Read through :meth:`DiagonalLinear.bands`, so ``mask`` (a dense matrix inside) plots the
    same curves as the other implementations.
    """
    return {
        f"{name}.weight": layer.bands().detach().float().cpu()
        for name, layer in net.named_modules()
        if isinstance(layer, DiagonalLinear)
    }


def _log_spectrogram(wave: Tensor, n_fft: int, hop: int) -> Tensor:
    window = torch.hann_window(n_fft, device=wave.device)
    spec = torch.stft(wave.float(), n_fft, hop, window=window, return_complex=True)
    return 20.0 * torch.log10(spec.abs() + 1e-5)


def _fixed_margins(figure: Figure) -> None:
    """Margins for a column of panels. Fixed, not ``layout="constrained"``: that
    layout draws every figure twice and made a figure cost 0.8 s instead of 0.3 s."""
    height = figure.get_figheight()
    figure.subplots_adjust(
        left=0.08, right=0.97, bottom=0.45 / height, top=1 - 0.65 / height, hspace=0.45
    )


class TensorBoardMediaLogger(pl.Callback):
    """Log audio, spectrogram/gain figures and per-bin weight curves to TensorBoard.

    Args:
        n_clips: how many fixed validation clips to log (from the first validation batch).
        every_n_epochs: log media on every n-th validation epoch (always on the last one).
        max_seconds: clips are cut to this length to keep event files small.
        n_fft, hop_length: spectrogram parameters for the figures (default: the net's own).
    """

    def __init__(
        self,
        n_clips: int = 3,
        every_n_epochs: int = 1,
        max_seconds: float = 4.0,
        n_fft: int | None = None,
        hop_length: int | None = None,
    ) -> None:
        super().__init__()
        if n_clips < 0 or every_n_epochs < 1:
            raise ValueError(
                f"TensorBoardMediaLogger: n_clips={n_clips} must be >= 0 and "
                f"every_n_epochs={every_n_epochs} >= 1"
            )
        self.n_clips = n_clips
        self.every_n_epochs = every_n_epochs
        self.max_seconds = max_seconds
        self.n_fft = n_fft
        self.hop_length = hop_length
        self._clips: dict[str, Tensor] | None = None
        self._logged_references = False

    @staticmethod
    def _writers(trainer: pl.Trainer) -> list[Any]:
        return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]

    def _active(self, trainer: pl.Trainer) -> bool:
        if trainer.sanity_checking or not trainer.is_global_zero or self.n_clips == 0:
            return False
        return bool(self._writers(trainer))

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the first clips of the first validation batch, with their enhanced output."""
        if batch_idx != 0 or dataloader_idx != 0 or not self._active(trainer):
            return
        if not isinstance(outputs, dict) or "enhanced" not in outputs:
            return
        n = min(self.n_clips, batch["noisy"].shape[0])
        sample_rate = int(getattr(pl_module, "sample_rate", 16000))
        limit = int(self.max_seconds * sample_rate)
        lengths = batch.get("length")
        clips: dict[str, Tensor] = {}
        for key, value in (
            ("noisy", batch["noisy"]),
            ("clean", batch["clean"]),
            ("enhanced", outputs["enhanced"]),
        ):
            clips[key] = value[:n].detach().float().cpu()
        clips["length"] = (
            lengths[:n].cpu()
            if lengths is not None
            else torch.full((n,), clips["noisy"].shape[-1], dtype=torch.long)
        ).clamp(max=limit)
        self._clips = clips

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the kept clips, their figures and the weight curves."""
        clips, self._clips = self._clips, None
        if clips is None or not self._active(trainer):
            return
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if epoch % self.every_n_epochs != 0 and not last:
            return
        step = trainer.global_step
        sample_rate = int(getattr(pl_module, "sample_rate", 16000))
        net = getattr(pl_module, "net", pl_module)
        n_fft: int = int(self.n_fft or getattr(net, "n_fft", 512) or 512)
        hop: int = int(self.hop_length or getattr(net, "hop_length", n_fft // 4) or n_fft // 4)
        gains = self._gains(net, clips, pl_module.device)
        weights = per_bin_weights(net)
        for writer in self._writers(trainer):
            for i in range(clips["noisy"].shape[0]):
                n = int(clips["length"][i])
                for key in ("noisy", "clean", "enhanced"):
                    if key != "enhanced" and self._logged_references:
                        continue
                    wave = clips[key][i, :n].clamp(-1.0, 1.0)
                    writer.add_audio(f"clips/{i}/{key}", wave[None], step, sample_rate)
                figure = self._spectrogram_figure(
                    clips, i, n, gains, sample_rate, n_fft, hop, title=f"clip {i}, epoch {epoch}"
                )
                writer.add_figure(f"spectrograms/{i}", figure, step, close=True)
            if weights:
                writer.add_figure(
                    "weights/per_bin", self._weights_figure(weights, sample_rate), step, close=True
                )
            writer.flush()
        self._logged_references = True

    @staticmethod
    def _gains(net: nn.Module, clips: dict[str, Tensor], device: torch.device) -> Tensor | None:
        """Gain maps (clips, freq, frames) from ``net.gains`` when the net has one."""
        gains_fn = getattr(net, "gains", None)
        if not callable(gains_fn):
            return None
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                return gains_fn(clips["noisy"].to(device)).float().cpu()
        except Exception:  # noqa: BLE001 - a figure must never stop training
            return None
        finally:
            net.train(was_training)

    @staticmethod
    def _spectrogram_figure(
        clips: dict[str, Tensor],
        i: int,
        n: int,
        gains: Tensor | None,
        sample_rate: int,
        n_fft: int,
        hop: int,
        title: str,
    ) -> Figure:
        panels = [("noisy", "noisy (dB)"), ("enhanced", "enhanced (dB)"), ("clean", "clean (dB)")]
        rows = len(panels) + (gains is not None)
        figure = Figure(figsize=(8, 2.1 * rows))
        axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
        _fixed_margins(figure)
        seconds = n / sample_rate
        extent = (0.0, seconds, 0.0, sample_rate / 2000.0)
        noisy_db = _log_spectrogram(clips["noisy"][i, :n], n_fft, hop)
        vmax = float(noisy_db.max())
        for ax, (key, label) in zip(axes, panels, strict=False):
            spec = _log_spectrogram(clips[key][i, :n], n_fft, hop)
            image = ax.imshow(
                spec.numpy(),
                origin="lower",
                aspect="auto",
                extent=extent,
                vmin=vmax - 80.0,
                vmax=vmax,
                cmap="magma",
            )
            ax.set_ylabel("kHz")
            ax.set_title(label, fontsize=9)
            figure.colorbar(image, ax=ax)
        if gains is not None:
            frames = max(1, min(gains.shape[-1], math.ceil(n / hop) + 1))
            image = axes[-1].imshow(
                gains[i, :, :frames].numpy(),
                origin="lower",
                aspect="auto",
                extent=extent,
                vmin=0.0,
                vmax=1.0,
                cmap="viridis",
            )
            axes[-1].set_title("gain", fontsize=9)
            axes[-1].set_ylabel("kHz")
            figure.colorbar(image, ax=axes[-1])
        axes[-1].set_xlabel("seconds")
        figure.suptitle(title, fontsize=10)
        return figure

    @staticmethod
    def _weights_figure(
        weights: dict[str, Tensor], sample_rate: int, max_panels: int = 8
    ) -> Figure:
        """One panel per group of layers (e.g. one block's context taps), curves overlaid."""
        groups: dict[str, list[tuple[str, Tensor]]] = {}
        for name, curves in weights.items():
            parts = name.split(".")
            prefix = ".".join(parts[:-2]) if len(parts) > 2 else parts[0]
            groups.setdefault(prefix, []).append((parts[-2] if len(parts) > 1 else name, curves))
        shown = list(groups.items())
        if len(shown) > max_panels:  # keep the first blocks and the output layer
            shown = shown[: max_panels - 1] + shown[-1:]
        figure = Figure(figsize=(8, 1.7 * len(shown) + 0.6))
        axes = figure.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
        _fixed_margins(figure)
        for ax, (prefix, members) in zip(axes, shown, strict=True):
            freqs = torch.linspace(0, sample_rate / 2000.0, members[0][1].shape[-1]).numpy()
            for label, curves in members:
                centre = curves.shape[0] // 2
                for k in range(curves.shape[0]):
                    offset = k - centre
                    suffix = "" if offset == 0 else f" band {offset:+d}"
                    ax.plot(
                        freqs,
                        curves[k].numpy(),
                        lw=0.8 if offset == 0 else 0.5,
                        alpha=0.8,
                        label=f"{label}{suffix}",
                    )
            ax.set_title(f"{prefix} ({len(members)} layer(s))", fontsize=8)
            if sum(c.shape[0] for _, c in members) <= 8:
                ax.legend(fontsize=6, loc="upper right", ncol=2)
        axes[-1].set_xlabel("kHz")
        figure.suptitle("learned per-bin weights (main diagonal; bands if any)", fontsize=10)
        return figure
