"""``--apply``: the chosen point into the entry's config.json, the old file kept beside it.

The batching fields and the instance count are the model's own and go into config.json, where the
server reads them on a load or at start. Workers, intra-op threads and batch shapes are the server
process's, for every model it serves: they are recorded under ``tuning`` and printed as the flags
to start ``cnnserve serve`` with, not applied.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cnnserve.client.channel import ClientError
from cnnserve.client.tune.results import Measured
from cnnserve.repository import CONFIG_FILE, RepositoryError, with_batching


def apply(entry: Path, measured: Measured, export_preferred: tuple[int, ...], tuning: dict[str, Any]) -> Path:
    """Write the chosen point into ``entry/config.json``; return the path the old one was kept at."""
    path = entry / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ClientError(f"--apply: cannot read {path}: {exc}") from None
    point = measured.point
    try:  # what the server will read must be what it accepts
        data = with_batching(data, path, max_batch_size=point.max_batch_size,
                             max_queue_delay_us=point.max_queue_delay_us,
                             preferred_batch_sizes=point.preferred_sizes(export_preferred),
                             instance_count=point.instances,
                             tuning={**tuning, "server_flags": point.process_flags()})  # fmt: skip
    except RepositoryError as exc:
        raise ClientError(f"--apply: the tuned config would not load: {exc}") from None
    kept = entry / f"{CONFIG_FILE}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.bak"
    shutil.copy2(path, kept)
    # Written beside and renamed over: a server polling the repository never reads half a file.
    staged = entry / f".{CONFIG_FILE}.tune-{os.getpid()}"
    staged.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(staged, path)
    return kept
