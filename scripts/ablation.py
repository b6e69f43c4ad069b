"""Model ablation judged on what the model never heard (issue 14, part 5).

Every row trains with the same budget on the larger espeak-ng corpus
(``scripts/make_train_corpus.py``) with some noise families held out of training, then its best
checkpoint is scored three ways with ``python -m audiodiag.evaluate``:

  (a) ``fixed``:    the fixed demo test mixtures with every noise family (the default run's table;
                    its held-out families are in it too, and are named in the by-type columns),
  (b) ``voices``:   the corpus' held-out espeak-ng voices and languages, training noise families,
  (c) ``families``: the corpus' test speakers, only the noise families held out of training,

and, when ``scripts/make_other_voices.py`` has added them to the corpus, two more, with the
training noise families:

  (d) ``other``:    voices of other synthesisers (Flite, Festival) that no row trains on,
  (e) ``real``:     recorded talkers (alsa-utils' channel names, Asterisk's prompts in five
                    languages),
  (f) ``music``:    the corpus' test speakers in recorded music (Asterisk's music on hold), a
                    real noise family (played notes are held out of training).

Rows named in ``TRAIN_ROOTS`` train on a folder of the corpus instead of the corpus itself
(``with_other``: its speakers and Flite's; ``with_real``: and recorded prompts). A row scored before (d)-(f) existed gets them on the
next run that names it, without training again.

::

    AUDIODIAG_DATA=/work/data python scripts/ablation.py --out outputs/ablation \
        --rows rank0 rank4 --epochs 80

Writes ``OUT/ablation.json`` and ``OUT/ablation.md``: one row per model scored into ``OUT``, by
this run or an earlier or concurrent one (finished rows are reused, so an interrupted ablation
continues where it stopped, and rows run side by side share one table). ``--train-only`` trains and
stops; a later run without it scores the rows already trained (``OUT/ROW/train/metrics.json``,
checked to hold the row's overrides) without training them again, so rows can train on a GPU
machine and be scored here (``--score-only`` refuses to train a row that is not there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiodiag.atomic import atomic_write  # noqa: E402
from audiodiag.paths import CONF_DIR, DATA_DIR  # noqa: E402

#: Row name -> Hydra overrides on top of the common budget. Every row names its rank, since the
#: default changed from rank 0 to rank 4, then 16 (after this ablation); without
#: ``model.causal=true`` a row is offline (one block, centred 3-frame context), the default.
_RANK0 = "layer.rank=0"
_CAUSAL = "model.causal=true"
_MEMORY = "model.memory=recurrent"
_SPECTRAL = "loss.spectral=1.0"
_BURSTS = "noise.burst_probability=0.25"
_WIDE_SPEED = "data.speed_range=[0.85,1.45]"  # as pretrain_causal and pretrain_offline
ROWS: dict[str, list[str]] = {
    "rank0": [_RANK0],  # the default before the ablation
    "rank0-causal": [_RANK0, _CAUSAL],
    "recurrent": [_RANK0, _MEMORY],
    "recurrent-causal": [_RANK0, _MEMORY, _CAUSAL],
    "bandwidth1": [_RANK0, "layer=sparse", "layer.bandwidth=1"],  # elementwise has no bands
    "bandwidth2": [_RANK0, "layer=sparse", "layer.bandwidth=2"],
    "spectral-loss": [_RANK0, _SPECTRAL],
    "recurrent-spectral": [_RANK0, _MEMORY, _SPECTRAL],
    "recurrent-spectral-causal": [_RANK0, _MEMORY, _SPECTRAL, _CAUSAL],
    "rank4": ["layer.rank=4"],
    "rank4-causal": ["layer.rank=4", _CAUSAL],
    "rank4-recurrent-causal": ["layer.rank=4", _MEMORY, _CAUSAL],
    "rank16": ["layer.rank=16"],  # today's default
    "rank16-causal": ["layer.rank=16", _CAUSAL],
    # loss.spectral=1 above is too light to matter (its gradient is about 1/125 of SI-SDR's).
    "rank16-spectral": ["layer.rank=16", "loss.spectral=50"],
    "rank16-speed": ["layer.rank=16", "data.speed_range=[0.9,1.1]"],  # speed-perturbed speech
    # A quarter of the training noise gated into bursts (noise=default's setting since then).
    "rank16-bursts": ["layer.rank=16", _BURSTS],
    "rank16-causal-bursts": ["layer.rank=16", _CAUSAL, _BURSTS],
    # Rank 16 + bursts with the spectral term at the weight that moved PESQ-WB.
    "rank16-bursts-spectral": ["layer.rank=16", _BURSTS, "loss.spectral=50"],
    # The old default on today's data (bursts), and whether more rank keeps helping.
    "rank0-bursts": [_RANK0, _BURSTS],
    "rank64-bursts": ["layer.rank=64", _BURSTS],
    # Trained with Flite's voices beside espeak-ng's (TRAIN_ROOTS): do other engines' speakers
    # in training help on unheard ones (d) and on recorded talkers (e)?
    "rank16-bursts-masked20-other": ["layer.rank=16", _BURSTS, "loss.masked_magnitude=20"],
    "rank0-bursts-other": [_RANK0, _BURSTS],
    # Trained with recorded speech too (TRAIN_ROOTS: Asterisk's prompts of three of its five
    # voice sets); judged on the recorded talkers never trained on (Carlo, Russian, alsa).
    "rank0-bursts-real": [_RANK0, _BURSTS],
    "rank16-bursts-masked20-real": ["layer.rank=16", _BURSTS, "loss.masked_magnitude=20"],
    "rank16-recurrent-bursts-masked20-depth2-real": [
        "layer.rank=16",
        _MEMORY,
        _BURSTS,
        "loss.masked_magnitude=20",
        "model.depth=2",
    ],
    # The cheap perceptual term: compressed magnitudes of the masked spectrum, same weight.
    "rank16-bursts-masked": ["layer.rank=16", _BURSTS, "loss.masked_magnitude=50"],
    "rank16-bursts-masked10": ["layer.rank=16", _BURSTS, "loss.masked_magnitude=10"],
    "rank16-bursts-masked20": ["layer.rank=16", _BURSTS, "loss.masked_magnitude=20"],
    # The low-rank part on every diagonal layer, so every lag sees the whole spectrum.
    "rank16-all-bursts-masked20": [
        "layer.rank=16",
        "model.rank_scope=all",
        _BURSTS,
        "loss.masked_magnitude=20",
    ],
    # One neighbour each side in every diagonal layer (a band needs mask, sparse or diag).
    "rank16-bandwidth1-bursts-masked20": [
        "layer.rank=16",
        "layer=sparse",
        "layer.bandwidth=1",
        _BURSTS,
        "loss.masked_magnitude=20",
    ],
    "rank16-causal-bursts-masked20": [
        "layer.rank=16",
        _CAUSAL,
        _BURSTS,
        "loss.masked_magnitude=20",
    ],
    # More capacity, and long per-bin memory, on top of the default (trained longer on a GPU).
    "rank64-bursts-masked20": ["layer.rank=64", _BURSTS, "loss.masked_magnitude=20"],
    "rank16-recurrent-bursts-masked20": [
        "layer.rank=16",
        _MEMORY,
        _BURSTS,
        "loss.masked_magnitude=20",
    ],
    # The speed change the shipped models train with (0.85-1.45x), on the default and on the
    # default + memory: what it does to unheard voices and to gliding tones.
    "rank16-bursts-masked20-speed": [
        "layer.rank=16",
        _BURSTS,
        "loss.masked_magnitude=20",
        _WIDE_SPEED,
    ],
    "rank16-recurrent-bursts-masked20-speed": [
        "layer.rank=16",
        _MEMORY,
        _BURSTS,
        "loss.masked_magnitude=20",
        _WIDE_SPEED,
    ],
    # The default grown in time and in depth: a centred 5-frame context (±16 ms of lags,
    # against ±8), and a second block (every bin's second look at its own history).
    "rank16-bursts-masked20-context5": [
        "layer.rank=16",
        _BURSTS,
        "loss.masked_magnitude=20",
        "model.context=5",
    ],
    "rank16-bursts-masked20-depth2": [
        "layer.rank=16",
        _BURSTS,
        "loss.masked_magnitude=20",
        "model.depth=2",
    ],
    "rank16-recurrent-bursts-masked20-depth2": [
        "layer.rank=16",
        _MEMORY,
        _BURSTS,
        "loss.masked_magnitude=20",
        "model.depth=2",
    ],
    # Wider views across bins (a moving partial is a narrow peak between quieter neighbours) and
    # more hidden channels per bin.
    "rank16-bandwidth2-bursts-masked20": [
        "layer.rank=16",
        "layer=sparse",
        "layer.bandwidth=2",
        _BURSTS,
        "loss.masked_magnitude=20",
    ],
    "rank16-bursts-masked20-channels4": [
        "layer.rank=16",
        _BURSTS,
        "loss.masked_magnitude=20",
        "model.channels=4",
    ],
}

HELD_OUT_FAMILIES = ("instruments", "modulated")
#: Rows that train on a folder of the corpus (``scripts/make_other_voices.py`` writes it).
TRAIN_ROOTS: dict[str, str] = {
    "rank16-bursts-masked20-other": "with_other",
    "rank0-bursts-other": "with_other",
    "rank0-bursts-real": "with_real",
    "rank16-bursts-masked20-real": "with_real",
    "rank16-recurrent-bursts-masked20-depth2-real": "with_real",
}
#: Optional evaluation sets, scored when the corpus has their folder: label -> folder.
EXTRA_EVALUATIONS = {"other": "other_voices", "real": "real_voice", "music": "real_noise"}


def set_overrides(folder: Path, corpus: Path, held_out: Sequence[str] = ()) -> list[str]:
    """Evaluation overrides of a set of ``scripts/make_other_voices.py`` (also the shipped
    models' cards): its voices with the noise of ``held_out``'s config, or (``real_noise``) the
    corpus' test speakers in the recordings of that folder."""
    if folder.name == "real_noise":
        return ["data=folder", f"data.speech.root={corpus}", "noise=folder",
                f"noise.folder={folder}", "noise.split_folder=false"]  # fmt: skip
    return ["data=folder", f"data.speech.root={folder}", *held_out]


def noise_families() -> list[str]:
    weights = yaml.safe_load((CONF_DIR / "noise" / "default.yaml").read_text())["weights"]
    return [name for name, weight in weights.items() if weight > 0]


def run(command: list[str], log: Path) -> None:
    print("+", " ".join(command), flush=True)
    with log.open("a") as stream:
        done = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"failed (exit {done.returncode}); see {log}")


def scores(report_path: Path) -> dict:
    groups = json.loads(report_path.read_text())["summary"]["groups"]
    out = {}
    for label, entry in groups.items():
        if entry["kind"] == "snr":
            continue
        out[label] = {
            "si_sdri": entry["si_sdri"].get("model"),
            "pesq": entry.get("pesq", {}).get("model"),
            "stoi": entry.get("stoi", {}).get("model"),
            "n": entry["n"],
        }
    return out


def train_and_score(name: str, args: argparse.Namespace, corpus: Path) -> dict:
    run_dir = args.out / name
    result_path = run_dir / "row.json"
    extra = {k: corpus / f for k, f in EXTRA_EVALUATIONS.items() if (corpus / f).is_dir()}
    row: dict = json.loads(result_path.read_text()) if result_path.exists() else {}
    if row and set(extra) <= set(row):
        return row
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "ablation.log"
    held_out = [f"noise.weights.{family}=0" for family in HELD_OUT_FAMILIES]
    metrics_path = run_dir / "train" / "metrics.json"
    metrics = _finished(metrics_path)
    if metrics is None:
        if args.score_only:
            raise SystemExit(f"--score-only: row {name} has no finished training ({metrics_path})")
        _train(name, args, corpus, run_dir, held_out, log)
        metrics = _finished(metrics_path)
    if args.train_only:
        return {}
    if metrics is None:
        raise SystemExit(f"row {name}: training ended without a finished {metrics_path}")
    trained_with = set(metrics.get("overrides") or [])
    if not set(ROWS[name]) <= trained_with:
        raise SystemExit(
            f"row {name}: {metrics_path} was trained without {sorted(set(ROWS[name]) - trained_with)}"
            "; move that run folder away to train the row again"
        )
    # The checkpoint by its place in this run folder: the row may have trained on another machine.
    checkpoint = run_dir / "train" / "checkpoints" / Path(metrics["best_checkpoint"]).name
    if not checkpoint.is_file():
        raise SystemExit(f"row {name}: its best checkpoint {checkpoint} is missing")
    others = [f"noise.weights.{f}=0" for f in noise_families() if f not in HELD_OUT_FAMILIES]
    evaluations = {
        "fixed": ["data=demo"],
        "voices": ["data=folder", f"data.speech.root={corpus / 'heldout_voices'}", *held_out],
        "families": ["data=folder", f"data.speech.root={corpus}", *others],
    }
    for label, folder in extra.items():
        evaluations[label] = set_overrides(folder, corpus, held_out)
    if not row:
        row = {"name": name, "overrides": ROWS[name], "train_seconds": metrics.get("wall_time_s")}
        for key in ("param_count", "global_step", "train_time_s"):
            row[key] = metrics.get(key)
        row["macs_per_second"] = (metrics.get("macs_per_second") or {}).get("total")
    for label, overrides in evaluations.items():
        if label in row:
            continue
        report = run_dir / f"eval_{label}.json"
        run(
            [
                sys.executable,
                "-m",
                "audiodiag.evaluate",
                f"model={checkpoint}",
                "threads=2",
                f"json={report}",
                "overwrite=true",  # this script owns its report files
                *overrides,
            ],
            log,
        )
        row[label] = scores(report)
    with atomic_write(result_path) as tmp:  # whole or absent for a concurrent summary
        tmp.write_text(json.dumps(row, indent=2))
    return row


def _finished(metrics_path: Path) -> dict | None:
    """A finished training run's metrics; None when there is none (or it did not finish)."""
    if not metrics_path.exists():
        return None
    metrics = json.loads(metrics_path.read_text())
    return metrics if metrics.get("status") == "ok" else None


def _train(
    name: str, args: argparse.Namespace, corpus: Path, run_dir: Path, held_out: list, log: Path
) -> None:
    budget = [
        f"trainer.max_epochs={args.epochs}",
        "trainer.max_time=null",
        f"data.train_mixtures_per_epoch={args.mixtures_per_epoch}",
        "test=false",
    ]
    run(
        [
            sys.executable,
            "-m",
            "audiodiag.train",
            "data=folder",
            f"data.speech.root={corpus / TRAIN_ROOTS.get(name, '')}",
            f"hydra.run.dir={run_dir / 'train'}",
            *budget,
            *held_out,
            # The rows were measured before noise=default gated training draws into bursts and
            # before the default loss had its masked-magnitude term; rows that want them say so.
            "noise.burst_probability=0",
            "loss.masked_magnitude=0",
            *ROWS[name],
            *args.extra,
        ],
        log,
    )


def _cell(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict]) -> str:
    types = sorted({t for r in rows for t in r["fixed"] if t != "all"})
    head = (
        "| row | (a) SI-SDRi | (a) PESQ | (a) STOI | (b) voices SI-SDRi | (b) PESQ "
        "| (c) families SI-SDRi | (c) PESQ | (d) other SI-SDRi | (d) PESQ | (e) real SI-SDRi "
        "| (e) PESQ | (f) music SI-SDRi | (f) PESQ | params | MAC/s | steps/s | "
        + " | ".join(f"(a) {t}" for t in types)
        + " |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        steps_per_s = (r["global_step"] or 0) / r["train_time_s"] if r.get("train_time_s") else None
        macs = r.get("macs_per_second")
        cells = [
            r["name"],
            _cell(r["fixed"]["all"]["si_sdri"]),
            _cell(r["fixed"]["all"]["pesq"]),
            _cell(r["fixed"]["all"]["stoi"], 3),
            _cell(r["voices"]["all"]["si_sdri"]),
            _cell(r["voices"]["all"]["pesq"]),
            _cell(r["families"]["all"]["si_sdri"]),
            _cell(r["families"]["all"]["pesq"]),
            *(
                _cell(r.get(k, {}).get("all", {}).get(m))
                for k in EXTRA_EVALUATIONS
                for m in ("si_sdri", "pesq")
            ),
            f"{r['param_count']:,}" if r.get("param_count") else "–",
            f"{macs / 1e6:.2f} M" if macs else "–",
            _cell(steps_per_s, 1),
            *(_cell(r["fixed"].get(t, {}).get("si_sdri")) for t in types),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "ablation")
    parser.add_argument("--corpus", type=Path, default=DATA_DIR / "espeak_train")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--mixtures-per-epoch", type=int, default=240)
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for every row")
    parser.add_argument("--train-only", action="store_true", help="train the rows, score none")
    parser.add_argument(
        "--score-only", action="store_true", help="score rows trained before; train none"
    )
    args = parser.parse_args()
    if not (args.corpus / "train").is_dir() or not (args.corpus / "heldout_voices").is_dir():
        raise SystemExit(
            f"--corpus {args.corpus}: no train/ and heldout_voices/ folders; "
            "make it with scripts/make_train_corpus.py"
        )
    for name in args.rows:
        train_and_score(name, args, args.corpus.resolve())
    if args.train_only:
        return
    text = write_summary(args.out)
    print(text)


def finished_rows(out: Path) -> list[dict]:
    """Every row scored into ``out`` (its ``ROW/row.json``), in the order of ``ROWS``."""
    found = {}
    for path in sorted(out.glob("*/row.json")):
        row = json.loads(path.read_text())
        found[row["name"]] = row
    order = {name: index for index, name in enumerate(ROWS)}
    return sorted(found.values(), key=lambda row: (order.get(row["name"], len(order)), row["name"]))


def write_summary(out: Path) -> str:
    """``OUT/ablation.json`` and ``.md`` over every row scored into ``out``, not only this
    invocation's: rows run side by side into one folder share one table (each invocation
    rewrites it whole, atomically, from the rows finished so far)."""
    rows = finished_rows(out)
    text = markdown(rows)
    with atomic_write(out / "ablation.json") as tmp:
        tmp.write_text(json.dumps(rows, indent=2))
    with atomic_write(out / "ablation.md") as tmp:
        tmp.write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
