"""Hypothesis keeps no example database here (``database=None`` in every property), but it still
caches its Unicode tables and the constants it reads from the source under a storage folder,
``.hypothesis/`` in the working directory by default: point it at the temporary folder instead, so
a run leaves nothing in the checkout."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "cnnserve-hypothesis")
