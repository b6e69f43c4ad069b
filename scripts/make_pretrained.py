"""Train, export and card the models that ship in the package (``audiodiag/models/``).

::

    AUDIODIAG_DATA=/data python scripts/make_train_corpus.py        # the training corpus, once
    AUDIODIAG_DATA=/data python scripts/make_other_voices.py        # its recorded speech, once
    AUDIODIAG_DATA=/data python scripts/make_pretrained.py causal offline

For each name: ``python -m audiodiag.train experiment=pretrain_NAME`` in
``outputs/pretrain/NAME`` (resumed from its last checkpoint when run again, so a long training
can be done in pieces), ``python -m audiodiag.export`` of its best checkpoint to
``audiodiag/models/NAME.pt``, then ``python -m audiodiag.evaluate`` on the fixed demo test
mixtures (overall, by noise type and SNR, one thread for the real-time factor), on the
corpus' test speakers (training voices and languages), its held-out voices and (where the
corpus has them) its blind, young and other engines' voices, recorded talkers and the test
speakers in recorded music, and the fixed test voices at 15-30 dB SNR (near-clean input), the
card in ``audiodiag/models/cards.json``, and the README's cards (``scripts/render_cards.py``).
Nothing is edited by hand: rerunning this script reproduces the files and their cards.
``--card-only`` scores the shipped files again and rewrites only the scores of their cards (after
a set was added to the corpus), checked to be the files the cards describe.
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

sys.path.insert(0, str(REPO / "scripts"))
import make_other_voices as voices  # noqa: E402  (siblings: the sets' folders, how to score one)
from ablation import set_overrides  # noqa: E402

from audiodiag.loading import load_torchscript  # noqa: E402
from audiodiag.metrics import summarize_test_records  # noqa: E402
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


#: Unheard sets scored where the corpus has them: card key -> folder of the corpus.
#: ``make_train_corpus.py --blind-only / --young-only`` and ``make_other_voices.py`` add them.
EXTRA_SETS = {
    "blind_voices": "blind_voices",  # espeak-ng variants used nowhere else
    "young_voices": "young_voices",  # child-like espeak-ng variants
    "other_voices": voices.TEST_DIR,  # Flite and Festival voices
    "real_voice": voices.REAL_DIR,  # recorded talkers
    "real_music": voices.NOISE_DIR,  # the corpus' test speakers in recorded music
}
#: Card fields that describe the file, its training and its speed; --card-only keeps them (the
#: real-time factor too: it was measured when the file was made, and a rescoring may share the
#: machine).
KEPT_FIELDS = (
    "file", "sha256", "bytes", "command", "commit", "data", "licence", "sample_rate", "causal",
    "param_count", "macs_per_second", "train_time_s", "epochs", "global_step", "rtf_one_thread",
)  # fmt: skip


def training_data(name: str) -> dict[str, str]:
    """The card's ``data`` and ``licence``: what the experiment trains on (its speech root)."""
    experiment = (REPO / "conf" / "experiment" / f"pretrain_{name}.yaml").read_text()
    noise = " mixed on the fly with every noise family of conf/noise/default.yaml"
    speech = "scripts/make_train_corpus.py (espeak-ng voices, speaker-disjoint splits)"
    if f"espeak_train/{voices.REAL_MIXED_DIR}" not in experiment:
        return {
            "data": speech + noise,
            "licence": "MIT (weights trained by this project on synthetic speech and noise)",
        }
    return {
        "data": speech + " and scripts/make_other_voices.py's with_real: 760 recorded prompts of"
        " Asterisk's core sounds (Allison Smith in English and Spanish, June Wallack in French)"
        + noise,
        "licence": "MIT, trained in part on recordings under CC BY-SA 3.0 (Asterisk core sounds:"
        " Allison Smith, June Wallack; Digium, Inc.), credited here",
    }


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
        **training_data(name),
        "sample_rate": int(load_torchscript(model)[1]["sample_rate"]),
        "causal": name == "causal",
        "param_count": metrics.get("param_count"),
        "macs_per_second": (metrics.get("macs_per_second") or {}).get("total"),
        "train_time_s": training_seconds(run_dir, metrics),
        "epochs": metrics.get("epochs"),
        "global_step": metrics.get("global_step"),
        **scores_of(model, run_dir, args.corpus),
    }


def recard(name: str, card: dict | None, args: argparse.Namespace) -> dict:
    """The card of the shipped file scored again (new evaluation sets), without training or
    exporting: its KEPT_FIELDS stay, and the file must be the one the card describes."""
    model = MODELS_DIR / f"{name}.pt"
    if card is None or not model.is_file() or sha256(model) != card.get("sha256"):
        raise SystemExit(f"--card-only: {model} is missing or is not the file its card describes")
    run_dir = REPO / "outputs" / "pretrain" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    kept = {key: card[key] for key in KEPT_FIELDS if key in card}
    return {**scores_of(model, run_dir, args.corpus), **kept}


def scores_of(model: Path, run_dir: Path, corpus: Path) -> dict:
    """Every evaluation of a card: the fixed demo test set, the corpus' sets, near-clean input."""
    fixed = evaluate(model, run_dir / "eval_fixed.json", "data=demo")
    check = evaluate(
        model, run_dir / "eval_check.json", "data=demo", f"limit={CHECK_CLIPS}", "pesq_stoi=false"
    )
    voices = evaluate(
        model,
        run_dir / "eval_heldout_voices.json",
        "data=folder",
        f"data.speech.root={corpus / 'heldout_voices'}",
    )
    # The corpus' own test speakers: unheard speakers of the training voices and languages, the
    # reference the held-out voices are compared with.
    corpus_test = evaluate(
        model, run_dir / "eval_corpus_test.json", "data=folder", f"data.speech.root={corpus}"
    )
    reports = {
        key: evaluate(model, run_dir / f"eval_{key}.json", *set_overrides(corpus / folder, corpus))
        for key, folder in EXTRA_SETS.items()
        if (corpus / folder).is_dir()
    }
    extra = {key: group_scores(report)["all"] for key, report in reports.items()}
    if "real_voice" in reports:
        extra["real_voice_unheard"] = unheard_talkers(reports["real_voice"], corpus)
    # Near-clean input: the fixed test voices and noise at 15-30 dB SNR. A model that learned
    # that noise is never far below the speech damages such input (SI-SDRi below 0).
    extra["high_snr"] = group_scores(
        evaluate(model, run_dir / "eval_high_snr.json", "data=demo", "data.snr_db_range=[15,30]")
    )["all"]
    return {
        "rtf_one_thread": fixed["rtf"],
        "fixed_test": group_scores(fixed),
        "heldout_voices": group_scores(voices)["all"],
        "corpus_test": group_scores(corpus_test)["all"],
        **extra,
        "check": {"clips": CHECK_CLIPS, "si_sdri": group_scores(check)["all"]["si_sdri"]},
    }


def unheard_talkers(report: dict, corpus: Path) -> dict:
    """The recorded talkers' scores without the talkers of ``real_train`` (the recorded speech
    a model may train on): the same clips of the same report, so cards with and without
    recorded speech in training compare on talkers neither heard."""
    trained = corpus / voices.REAL_TRAIN_DIR / "train"
    heard = {p.name for p in trained.iterdir()} if trained.is_dir() else set()
    records = [r for r in report["records"] if r["source_id"].split("/")[1] not in heard]
    if not records:
        raise SystemExit(f"{corpus / voices.REAL_DIR}: every talker is one of {trained}'s")
    return group_scores({"summary": summarize_test_records(records)})["all"]


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
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="score the shipped files again (e.g. on sets added to the corpus since); "
        "train and export nothing",
    )
    args = parser.parse_args()
    for name in args.names:
        if args.card_only:
            cards = json.loads(CARDS_FILE.read_text()) if CARDS_FILE.is_file() else {}
            entry = recard(name, cards.get(name), args)
        else:
            entry = make(name, args)
        # Read the cards again just before writing: another name may have been carded meanwhile.
        cards = json.loads(CARDS_FILE.read_text()) if CARDS_FILE.is_file() else {}
        cards[name] = entry
        CARDS_FILE.write_text(json.dumps(cards, indent=2, sort_keys=True) + "\n")
        print(json.dumps(entry, indent=2))
    run([sys.executable, str(REPO / "scripts" / "render_cards.py"), "--readme"])


if __name__ == "__main__":
    main()
