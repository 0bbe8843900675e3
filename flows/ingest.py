"""The ingest flow: new takes → validate → preprocess → transcribe → clips → dataset rows.

Prefect adds what a nightly, unattended run needs around the plain functions of pipeline.ingest:
- caching by content hash + settings + model (a re-run skips finished takes; the cache lives in
  the dataset folder, `.ingest-cache/`, so a fresh dataset never inherits a stale cache);
- retries for transient errors only (I/O hiccups, timeouts); bad input is rejected at once;
- a concurrency limit on transcription (in-process gate, plus the task tag `whisper` for a
  Prefect tag concurrency limit across workers);
- a take that fails goes to `rejects` with its reason; the flow finishes the rest and reports counts.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from prefect import flow, get_run_logger, task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.futures import as_completed

from pipeline.audio import AudioError
from pipeline.dataset import Dataset, add_reject
from pipeline.ingest import (
    IngestSettings,
    SourceProblem,
    TakeSource,
    discover_takes,
    file_sha256,
    process_take,
    take_id_of,
    write_take,
)
from pipeline.models_cache import ModelNotFoundError
from pipeline.objectstore import local_recordings
from pipeline.transcribe import resolve_model

TRANSIENT = (TimeoutError, ConnectionError, InterruptedError, BlockingIOError)
PERMANENT_OS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)

# In-process listeners (e.g. the CLI's progress bar): called with each finished take's summary.
PROGRESS_LISTENERS: list[Callable[[dict], None]] = []
_GATES: dict[int, threading.BoundedSemaphore] = {}
_GATES_LOCK = threading.Lock()


def quiet_run_logs() -> None:
    """Progress bars instead of a log line per task run (the runs stay in the Prefect UI)."""
    import logging

    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).setLevel(logging.WARNING)


def transcription_gate(limit: int) -> threading.BoundedSemaphore:
    with _GATES_LOCK:
        return _GATES.setdefault(limit, threading.BoundedSemaphore(limit))


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, PERMANENT_OS):
        return False
    return isinstance(exc, TRANSIENT) or (isinstance(exc, OSError) and not isinstance(exc, AudioError))


def _retry_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 — the failed state re-raises its exception here
        return is_transient(exc)
    return False


def model_identity(settings: IngestSettings) -> str:
    """Which weights: the model files' size and mtime, so replaced weights invalidate the cache."""
    backend = settings.backend if settings.backend != "auto" else "faster-whisper"
    try:
        path = resolve_model(settings.model, backend)
    except ModelNotFoundError:
        path = resolve_model(settings.model, "openai-whisper")
    target = path / "model.bin" if path.is_dir() else path
    st = target.stat()
    return f"{settings.model}:{backend}:{st.st_size}:{int(st.st_mtime)}"


def _cache_key(context, parameters) -> str:
    text = "|".join(
        str(parameters[k]) for k in ("sha256", "fingerprint", "model_identity", "dataset")
    ) + "|" + str(parameters["source"].get("manifest")) + str(parameters["source"].get("labels"))
    return "ingest-" + hashlib.sha256(text.encode()).hexdigest()[:32]


@task(
    name="ingest-take",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_transient,
    tags=["whisper"],
    persist_result=True,
)
def ingest_take(source: dict, sha256: str, dataset: str, settings: dict, fingerprint: str, model_identity: str, concurrency: int) -> dict:
    """One take end to end; bad input becomes a reject (returned, not raised: nothing to retry)."""
    src = TakeSource(**source)
    cfg = IngestSettings.from_dict(settings)
    ds = Dataset(dataset)
    try:
        rows = process_take(src, sha256, cfg, gate=transcription_gate(concurrency))
    except (AudioError, ValueError) as exc:
        reason = exc.problem if isinstance(exc, AudioError) else str(exc)
        add_reject(ds, "ingest", src.path, reason, details=f"{type(exc).__name__}; origin {src.origin}")
        return {"status": "rejected", "source": src.path, "reason": reason}
    except OSError as exc:
        if is_transient(exc):
            raise  # retried
        add_reject(ds, "ingest", src.path, f"cannot read: {exc}", details=f"origin {src.origin}")
        return {"status": "rejected", "source": src.path, "reason": str(exc)}
    written = write_take(ds, rows, source=src.path)
    return {
        "status": "ingested",
        "source": src.path,
        "take_id": rows.take["take_id"],
        "clips": len(rows.clips),
        "features": len(rows.features),
        "labels": len(rows.labels),
        "hallucinations": rows.hallucinations,
        "seconds": rows.seconds,
        "inserted": written,
        "transcripts": [c["transcript"] for c in rows.clips],
    }


@dataclass
class IngestReport:
    discovered: int = 0
    ingested: int = 0
    cached: int = 0
    rejected: int = 0
    clips: int = 0
    suspected_hallucinations: int = 0
    seconds: float = 0.0
    rejects: list[dict] = field(default_factory=list)
    takes: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _source_dict(src: TakeSource) -> dict:
    return {"path": src.path, "origin": src.origin, "manifest": src.manifest, "labels": src.labels}


def _cached_task(dataset: Dataset, refresh: bool):
    options = {"cache_policy": CacheKeyFnPolicy(cache_key_fn=_cache_key), "refresh_cache": refresh}
    if dataset._local:
        cache = Path(dataset._base) / ".ingest-cache"
        options["cache_policy"] = options["cache_policy"].configure(key_storage=str(cache / "keys"))
        options["result_storage"] = cache / "results"
    return ingest_take.with_options(**options)


@flow(name="ingest", description="Recordings → takes, transcribed clips, encoder features, imported labels, rejects.")
def ingest_flow(
    recordings: str,
    dataset: str,
    import_csv: str | None = None,
    settings: dict | None = None,
    transcribe_concurrency: int = 1,
) -> dict:
    logger = get_run_logger()
    cfg = IngestSettings.from_dict(settings)
    ds = Dataset(dataset)
    recordings = local_recordings(recordings)  # an s3:// root is mirrored to a local folder first
    identity = model_identity(cfg)  # a missing model fails here, once, with how to provide it
    sources, problems = discover_takes(recordings, import_csv, cfg)
    report = IngestReport(discovered=len(sources))
    for problem in problems:
        add_reject(ds, problem.stage, problem.source, problem.reason)
        report.rejects.append({"stage": problem.stage, "source": problem.source, "reason": problem.reason})
    done_takes = {k[0] for k in ds.keys("takes")}
    fingerprint = cfg.fingerprint()
    futures = {}
    for src in sources:
        try:
            sha = file_sha256(src.path)
        except OSError as exc:
            problems.append(SourceProblem("ingest", src.path, f"cannot read: {exc}"))
            add_reject(ds, "ingest", src.path, f"cannot read: {exc}")
            report.rejects.append({"stage": "ingest", "source": src.path, "reason": str(exc)})
            continue
        # A take missing from the dataset is redone even when the cache says it was finished.
        runner = _cached_task(ds, refresh=take_id_of(src, sha) not in done_takes)
        fut = runner.submit(_source_dict(src), sha, dataset, cfg.to_dict(), fingerprint, identity, transcribe_concurrency)
        futures[fut] = src
    for fut in as_completed(list(futures)):
        src = futures[fut]
        try:
            result = fut.result()
        except Exception as exc:  # noqa: BLE001 — failed after its retries: quarantine, carry on
            reason = f"failed after retries: {type(exc).__name__}: {exc}"
            add_reject(ds, "ingest", src.path, reason)
            result = {"status": "rejected", "source": src.path, "reason": reason}
        if result["status"] == "rejected":
            report.rejects.append({"stage": "ingest", "source": src.path, "reason": result["reason"]})
        else:
            cached = bool(getattr(fut.state, "name", "") == "Cached")
            report.ingested += 1
            report.cached += int(cached)
            report.clips += result["clips"]
            report.suspected_hallucinations += result["hallucinations"]
            report.seconds += result["seconds"]
            report.takes.append({k: result[k] for k in ("source", "take_id", "clips", "hallucinations", "transcripts")} | {"cached": cached})
        for listener in list(PROGRESS_LISTENERS):
            listener(result)
    report.rejected = len(report.rejects)
    for table in ("takes", "clips", "features", "labels", "rejects"):
        ds.compact(table)  # one part per table again, instead of one per take
    logger.info(
        "ingest: %d discovered, %d ingested (%d from cache), %d rejected, %d clips, %d suspected hallucinations",
        report.discovered, report.ingested, report.cached, report.rejected, report.clips, report.suspected_hallucinations,
    )  # fmt: skip
    return report.to_dict()
