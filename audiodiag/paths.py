"""Where the package finds its configs and the bundled demo corpus, from any working directory."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# Hydra configs ship inside the package so `python -m audiodiag.train` works from any cwd.
CONF_DIR = PACKAGE_DIR / "conf"
REPO_ROOT = PACKAGE_DIR.parent
# The demo corpus is committed under data/ in the repository; AUDIODIAG_DATA overrides it.
DATA_DIR = Path(os.environ.get("AUDIODIAG_DATA", REPO_ROOT / "data"))
DEMO_CORPUS_DIR = DATA_DIR / "demo"
