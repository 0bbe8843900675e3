"""`dask worker --preload flows.dask_preload`: a Dask worker imports the ingest once, when it starts.

Without it a worker's first take also paid for importing Prefect, faster-whisper/CTranslate2 and
delta-rs (seconds on a small machine, and again after every restart by the nanny), inside the
measured ingest. The Whisper model itself is loaded by the first take and kept for the worker's
life (pipeline.transcribe shares loaded models per process). Dask imports this module in the nanny
too (to parse options), so the import here stays light and the work is in `dask_setup`, which runs
in the worker process only, before it registers with the scheduler.
"""

from __future__ import annotations

import importlib
import logging
import time

log = logging.getLogger("distributed.worker")  # the logger Dask writes to the worker log
MODULES = ("flows.ingest", "faster_whisper", "deltalake", "pipeline.transcribe.faster_backend")


def dask_setup(worker) -> None:
    started = time.perf_counter()
    for name in MODULES:
        importlib.import_module(name)
    log.info("cantolab: ingest imported in %.1f s", time.perf_counter() - started)
