"""Train, export and card the models that ship in the package (``audiodiag/models/``).

::

    AUDIODIAG_DATA=/data python scripts/make_train_corpus.py        # the training corpus, once
    AUDIODIAG_DATA=/data python scripts/make_pretrained.py causal offline

For each name: ``python -m audiodiag.train experiment=pretrain_NAME`` in
``outputs/pretrain/NAME`` (resumed from its last checkpoint when run again, so a long training
can be done in pieces), ``python -m audiodiag.export`` of its best checkpoint to
``audiodiag/models/NAME.pt``, then ``python -m audiodiag.evaluate`` on the fixed demo test
mixtures (overall, by noise type and SNR, one thread for the real-time factor), on the
corpus' test speakers (training voices and languages), its held-out voices and (where the
corpus has them) its blind and young voices, and the fixed test voices at 15-30 dB SNR
(near-clean input), the card
in ``audiodiag/models/cards.json``, and the README's cards (``scripts/render_cards.py``).
Nothing is edited by hand: rerunning this script reproduces the files and their cards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiodiag.loading import load_torchscript  # noqa: E402
from audiodiag.pretrained import CARDS_FILE, MODELS_DIR, sha256  # noqa: E402

#: Clips of the fixed demo test set that the card's quick check (and tests/test_pretrained.py)
#: scores; small so the test stays fast.
CHECK_CLIPS = 8


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=REPO, check=True)


def evaluate(model: Path, out: Path, *overrides: str) -> dict:
    run(
        [
            sys.executable,
            "-m",
            "audiodiag.evaluate",
            f"model={model}",
            "threads=1",
            f"json={out}",
            "overwrite=true",  # this script owns its report files
            *overrides,
        ]
    )
    return json.loads(out.read_text())


def group_scores(report: dict) -> dict:
    """SI-SDRi / PESQ-WB / STOI of the model and the noisy input, per group of the report."""
    scores = {}
    for label, entry in report["summary"]["groups"].items():
        scores[label] = {
            "n": entry["n"],
            "si_sdri": entry["si_sdri"]["model"],
            "pesq": entry.get("pesq", {}).get("model"),
            "pesq_noisy": entry.get("pesq", {}).get("noisy"),
            "stoi": entry.get("stoi", {}).get("model"),
            "stoi_noisy": entry.get("stoi", {}).get("noisy"),
        }
    return scores


def training_seconds(run_dir: Path, metrics: dict) -> float | None:
    """Training time over every piece of a resumed run (Lightning's Timer state in the last
    checkpoint); ``metrics.json`` holds only the latest piece's."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        timer = state.get("callbacks", {}).get("Timer", {}).get("time_elapsed", {})
        if "train" in timer:
            return round(float(timer["train"]), 2)
    return metrics.get("train_time_s")


def make(name: str, args: argparse.Namespace) -> dict:
    run_dir = REPO / "outputs" / "pretrain" / name
    train = [
        sys.executable,
        "-m",
        "audiodiag.train",
        f"experiment=pretrain_{name}",
        f"hydra.run.dir={run_dir}",
        "ckpt_path=last",
        *args.overrides,
    ]
    run(train)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model = MODELS_DIR / f"{name}.pt"
    model.unlink(missing_ok=True)  # this script wrote it: replace it with the new export
    run(
        [
            sys.executable,
            "-m",
            "audiodiag.export",
            f"ckpt={metrics['best_checkpoint']}",
            f"out={model}",
        ]
    )
    fixed = evaluate(model, run_dir / "eval_fixed.json", "data=demo")
    check = evaluate(
        model, run_dir / "eval_check.json", "data=demo", f"limit={CHECK_CLIPS}", "pesq_stoi=false"
    )
    voices = evaluate(
        model,
        run_dir / "eval_heldout_voices.json",
        "data=folder",
        f"data.speech.root={args.corpus / 'heldout_voices'}",
    )
    # The corpus' own test speakers: unheard speakers of the training voices and languages, the
    # reference the held-out voices are compared with.
    corpus_test = evaluate(
        model, run_dir / "eval_corpus_test.json", "data=folder", f"data.speech.root={args.corpus}"
    )
    # The blind voices (variants used nowhere else) and the child-like young voices, where the
    # corpus has them (make_train_corpus.py --blind-only / --young-only adds them to an older one).
    extra = {
        f"{kind}_voices": group_scores(
            evaluate(
                model,
                run_dir / f"eval_{kind}_voices.json",
                "data=folder",
                f"data.speech.root={args.corpus / f'{kind}_voices'}",
            )
        )["all"]
        for kind in ("blind", "young")
        if (args.corpus / f"{kind}_voices").is_dir()
    }
    # Near-clean input: the fixed test voices and noise at 15-30 dB SNR. A model that learned
    # that noise is never far below the speech damages such input (SI-SDRi below 0).
    extra["high_snr"] = group_scores(
        evaluate(model, run_dir / "eval_high_snr.json", "data=demo", "data.snr_db_range=[15,30]")
    )["all"]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "file": model.name,
        "sha256": sha256(model),
        "bytes": model.stat().st_size,
        "command": " ".join(
            ["python -m audiodiag.train", f"experiment=pretrain_{name}", *args.overrides]
        ),
        "commit": commit,
        "data": "scripts/make_train_corpus.py (espeak-ng voices, speaker-disjoint splits) "
        "mixed on the fly with every noise family of conf/noise/default.yaml",
        "licence": "MIT (weights trained by this project on synthetic speech and noise)",
        "sample_rate": int(load_torchscript(model)[1]["sample_rate"]),
        "causal": name == "causal",
        "param_count": metrics.get("param_count"),
        "macs_per_second": (metrics.get("macs_per_second") or {}).get("total"),
        "train_time_s": training_seconds(run_dir, metrics),
        "epochs": metrics.get("epochs"),
        "global_step": metrics.get("global_step"),
        "rtf_one_thread": fixed["rtf"],
        "fixed_test": group_scores(fixed),
        "heldout_voices": group_scores(voices)["all"],
        "corpus_test": group_scores(corpus_test)["all"],
        **extra,
        "check": {"clips": CHECK_CLIPS, "si_sdri": group_scores(check)["all"]["si_sdri"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="+", choices=["causal", "offline"])
    parser.add_argument(
        "--corpus",
        type=Path,
        required=True,
        help="the make_train_corpus.py folder (for the held-out voices)",
    )
    parser.add_argument(
        "--overrides",
        nargs="*",
        default=[],
        help="extra Hydra overrides for training (recorded in the card)",
    )
    args = parser.parse_args()
    for name in args.names:
        entry = make(name, args)
        # Read the cards again just before writing: another name may have been carded meanwhile.
        cards = json.loads(CARDS_FILE.read_text()) if CARDS_FILE.is_file() else {}
        cards[name] = entry
        CARDS_FILE.write_text(json.dumps(cards, indent=2, sort_keys=True) + "\n")
        print(json.dumps(entry, indent=2))
    run([sys.executable, str(REPO / "scripts" / "render_cards.py"), "--readme"])


if __name__ == "__main__":
    main()
