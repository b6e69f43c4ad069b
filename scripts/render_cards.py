"""Print the README model cards of the shipped models from ``audiodiag/models/cards.json``.

::

    python scripts/render_cards.py            # Markdown on stdout
    python scripts/render_cards.py --readme   # replace the cards in README.md in place

The cards in README.md sit between ``<!-- cards:begin -->`` and ``<!-- cards:end -->``; every
number in them comes from ``cards.json``, which ``scripts/make_pretrained.py`` writes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiodiag.pretrained import CARDS_FILE  # noqa: E402

BEGIN, END = "<!-- cards:begin -->", "<!-- cards:end -->"
TITLES = {"causal": "causal, streams", "offline": "offline, whole file"}
#: Rows for the unheard sets beyond the held-out voices, where a card has them.
EXTRA_ROWS = {
    "blind_voices": "blind espeak-ng voices, in the held-out languages",
    "young_voices": "child-like voices (espeak-ng variants written by make_train_corpus.py), "
    "in the held-out languages",
    "other_voices": "voices of other engines (Flite, Festival; make_other_voices.py)",
    "real_voice": "recorded talkers (alsa-utils' channel names; Asterisk's prompts in English, "
    "Spanish, French, Italian, Russian)",
    "real_voice_unheard": "the same, only talkers no model trains on (Carlo in Italian, the "
    "Russian voice, alsa's talker)",
    "real_music": "the espeak-ng test speakers in recorded music (Asterisk's music on hold)",
    "high_snr": "near-clean input: the fixed test voices and noise at 15-30 dB SNR",
}


def _scores(entry: dict) -> str:
    return (
        f"SI-SDRi **{entry['si_sdri']:.2f} dB**, PESQ-WB {entry['pesq']:.2f} "
        f"(noisy {entry['pesq_noisy']:.2f}), STOI {entry['stoi']:.3f} "
        f"(noisy {entry['stoi_noisy']:.3f})"
    )


def _snr_key(label: str) -> float:
    match = re.match(r"\[(-?\d+)", label)
    return float(match.group(1)) if match else float("inf")


def card(name: str, entry: dict) -> str:
    fixed = entry["fixed_test"]
    types = sorted(k for k in fixed if k != "all" and not k.startswith("["))
    snrs = sorted((k for k in fixed if k.startswith("[")), key=_snr_key)
    columns = types + snrs
    minutes = entry["train_time_s"] / 60.0
    voices = entry["heldout_voices"]
    lines = [
        f"#### `{name}` ({TITLES.get(name, name)})",
        "",
        "| | |",
        "|---|---|",
        f"| file | `audiodiag/models/{entry['file']}`, {entry['bytes'] / 1024:.1f} KiB, "
        f"sha256 `{entry['sha256']}` |",
        f"| training | `{entry['command']}` at commit `{entry['commit'][:10]}`: "
        f"{entry['epochs']} epochs, {entry['global_step']:,} steps, {minutes:.1f} min of "
        "training on the 2-core CPU (all pieces of a resumed run) |",
        f"| data | {entry['data']} |",
        f"| size and cost | {entry['param_count']:,} parameters, "
        f"{entry['macs_per_second'] / 1e6:.2f} M multiply-adds per second of audio, "
        f"RTF {entry['rtf_one_thread']:.4f} on one thread (evaluate, clip by clip) |",
        f"| fixed test set ({fixed['all']['n']} demo mixtures, {len(types)} noise families) | "
        f"{_scores(fixed['all'])} |",
        f"| espeak-ng test speakers, training voices and languages "
        f"({entry['corpus_test']['n']} clips) | {_scores(entry['corpus_test'])} |",
        f"| held-out espeak-ng voices and languages ({voices['n']} clips) | {_scores(voices)} |",
        *(
            f"| {title} ({entry[key]['n']} mixtures) | {_scores(entry[key])} |"
            for key, title in EXTRA_ROWS.items()
            if key in entry
        ),
        f"| licence | {entry['licence']} |",
        "",
        "| SI-SDRi (dB) | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
        f"| `{name}` | " + " | ".join(f"{fixed[c]['si_sdri']:.2f}" for c in columns) + " |",
    ]
    return "\n".join(lines)


def render(cards: dict) -> str:
    return "\n\n".join(card(name, cards[name]) for name in sorted(cards))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=Path, default=CARDS_FILE)
    parser.add_argument("--readme", nargs="?", const=REPO / "README.md", type=Path)
    args = parser.parse_args(argv)
    text = render(json.loads(args.cards.read_text()))
    if args.readme is None:
        print(text)
        return 0
    readme = args.readme.read_text()
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"{args.readme}: no {BEGIN} ... {END} block to replace")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
