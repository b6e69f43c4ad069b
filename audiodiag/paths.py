"""Where the package finds its configs and the bundled demo corpus, from any working directory."""

from __future__ import annotations

import os
from pathlib import Path

import audiodiag.conf

PACKAGE_DIR = Path(__file__).resolve().parent
# conf/ (top level in the repository) installs as the package audiodiag.conf: found from any cwd,
# from an editable checkout and from a wheel alike.
CONF_DIR = Path(audiodiag.conf.__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
# The demo corpus is committed under data/ in the repository; AUDIODIAG_DATA overrides it.
DATA_DIR = Path(os.environ.get("AUDIODIAG_DATA", REPO_ROOT / "data"))
DEMO_CORPUS_DIR = DATA_DIR / "demo"
