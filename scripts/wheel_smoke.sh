#!/usr/bin/env bash
# Wheel smoke test: build the wheel, install it (not editable) into a clean environment and,
# from a folder outside the repository, train (fast_dev_run), train a tiny model, export it (.pt2) and
# enhance a file; then check that nothing was written under site-packages.
#
#   scripts/wheel_smoke.sh            # uses the current `python` (a venv holding the deps)
#
# The clean environment is a fresh venv whose site-packages holds only the audiodiag wheel plus
# a .pth line naming the current interpreter's site-packages for the dependencies (torch & co.):
# a plain path in a .pth adds that folder but does not run the editable-install hook inside it,
# so a checkout installed with `pip install -e` stays invisible. Takes about a minute on 2 cores.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/audiodiag-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export AUDIODIAG_NUM_THREADS="${AUDIODIAG_NUM_THREADS:-2}"
# Data and configs from the user's environment must not leak into the check.
unset AUDIODIAG_DATA AUDIODIAG_CONFIG_DIR AUDIODIAG_LOG_DIR PYTHONPATH
export XDG_DATA_HOME="$WORK/xdg-data"

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "build the wheel"
# From a copy of the files git tracks or would track: setuptools' in-tree build/ folder can keep
# files that were since deleted and put them in the wheel.
SRC="$REPO"
if git -C "$REPO" rev-parse --git-dir > /dev/null 2>&1; then
  SRC="$WORK/src"
  mkdir -p "$SRC"
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
    | tar --create --null --files-from=- --ignore-failed-read 2> /dev/null) | tar -x -C "$SRC"
fi
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WORK/dist" "$SRC"
WHEEL="$(ls "$WORK"/dist/audiodiag-*.whl)"
ls -l "$WHEEL"

step "a clean environment"
# Without pip (ensurepip costs ~20 s): the outer pip installs into it with --python.
"$PYTHON" -m venv --without-pip "$WORK/venv"
ENV_PY="$WORK/venv/bin/python"
SITE="$("$ENV_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
DEPS="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$DEPS" > "$SITE/_audiodiag_smoke_deps.pth"
"$PYTHON" -m pip --python "$ENV_PY" install --quiet --no-deps --no-index "$WHEEL"

mkdir -p "$WORK/outside"
cd "$WORK/outside"
"$ENV_PY" - "$SITE" <<'EOF'
import sys
from pathlib import Path

import audiodiag
from audiodiag import paths

site = Path(sys.argv[1]).resolve()
where = Path(audiodiag.__file__).resolve()
assert site in where.parents, f"audiodiag imported from {where}, not from the wheel in {site}"
assert paths.CONF_DIR == site / "audiodiag" / "conf", paths.CONF_DIR
assert paths.DEMO_CORPUS_DIR == site / "audiodiag" / "demo_corpus", paths.DEMO_CORPUS_DIR
assert len(list(paths.DEMO_CORPUS_DIR.glob("*/*.flac"))) == 360
assert not (site / "audiodiag" / "conf" / "local").exists(), "conf/local/ leaked into the wheel"
assert site not in paths.DATA_DIR.resolve().parents, paths.DATA_DIR
print(f"audiodiag {where.parent}\ndata folder {paths.DATA_DIR}")
EOF

# Every file under the clean site-packages, with size and modification time.
listing() { (cd "$SITE" && find . -type f -printf '%p %s %T@\n' | sort); }
listing > "$WORK/site-before.txt"

step "python -m audiodiag.train trainer.fast_dev_run=true"
"$ENV_PY" -m audiodiag.train trainer.fast_dev_run=true hydra.run.dir="$WORK/runs/fast_dev_run"

step "a tiny training that leaves a checkpoint"
"$ENV_PY" -m audiodiag.train hydra.run.dir="$WORK/runs/tiny" \
  trainer.max_epochs=1 data.train_mixtures_per_epoch=16 data.val_mixtures=4 \
  data.num_workers=0 data.cache_audio=false test=false callbacks=minimal logger=none \
  trainer.num_sanity_val_steps=0 trainer.enable_progress_bar=false model.depth=1
CKPT="$(ls "$WORK"/runs/tiny/checkpoints/*.ckpt | grep -v last.ckpt | head -n 1)"

# Export and enhance must not warn about deprecated torch/torchaudio APIs (training does: see
# README "Export"), so deprecation warnings are errors there.
NO_DEPRECATIONS=(-W error::DeprecationWarning -W error::FutureWarning)

step "python -m audiodiag.export"
"$ENV_PY" "${NO_DEPRECATIONS[@]}" -m audiodiag.export ckpt="$CKPT" out="$WORK/model.pt2"

step "python -m audiodiag.enhance"
NOISY="$(ls "$SITE"/audiodiag/demo_corpus/spk11/*.flac | head -n 1)"
"$ENV_PY" "${NO_DEPRECATIONS[@]}" -m audiodiag.enhance model="$WORK/model.pt2" input="$NOISY" output="$WORK/enhanced.wav"
test -s "$WORK/enhanced.wav"

step "python -m audiodiag.enhance with the shipped model (no model=, no training)"
"$ENV_PY" -m audiodiag.enhance input="$NOISY" output="$WORK/enhanced_pretrained.wav"
test -s "$WORK/enhanced_pretrained.wav"

step "nothing written under site-packages"
listing > "$WORK/site-after.txt"
if ! diff -u "$WORK/site-before.txt" "$WORK/site-after.txt"; then
  echo "FAIL: the runs above wrote under $SITE" >&2
  exit 1
fi
if [ -n "$(ls -A "$WORK/outside")" ]; then
  echo "note: files written in the working folder: $(ls -A "$WORK/outside")"
fi
printf '\nwheel smoke test passed in %ss\n' "$SECONDS"
