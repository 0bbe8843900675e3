"""Where benchmark results go and how they are written."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from pipeline.fsio import atomic_write_text

RESULTS = Path(os.environ.get("CANTOLAB_BENCH_DIR", "bench-results"))


def write_result(name: str, result: dict) -> dict:
    result = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / f"{name}.json", json.dumps(result, indent=2, default=str))
    return result
