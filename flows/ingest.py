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

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.exceptions import TerminationSignal
from prefect.futures import as_completed

from flows.artifacts import publish_ingest
from flows.runners import dask_address, pickle_by_reference, task_runner
from pipeline.audio import AudioError, sha256_file
from pipeline.dataset import Dataset
from pipeline.errors import ConfigError, InputError
from pipeline.ids import take_id_for_content
from pipeline.ingest import (
    IngestSettings,
    RejectLog,
    SourceProblem,
    TakeSource,
    check_settings,
    discover_takes,
    known_takes,
    plan_take,
    process_take,
    write_take,
)
from pipeline.leases import TakeLeases
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


# Set when a run is being stopped (SIGTERM, Ctrl-C): takes not yet transcribing give up at once
# instead of each transcribing in turn while the process waits for its worker threads.
STOPPING = threading.Event()


# After a SIGTERM, Prefect waits for the take being transcribed before it reports the crash and
# exits; a long take on a busy machine could hold the process for minutes. This bounds that wait.
# Cutting a take short is safe: its `takes` row is written last, so the next run redoes it.
SIGTERM_GRACE_SECONDS = 10.0


def _exit_after_grace(signum: int) -> None:
    def stop() -> None:
        time.sleep(SIGTERM_GRACE_SECONDS)
        os._exit(128 + int(signum))

    threading.Thread(target=stop, name="sigterm-grace", daemon=True).start()


class RunStopping(Exception):
    """The run is being stopped; this take is left for the next run (nothing of it was written)."""


def transcription_gate(limit: int) -> threading.BoundedSemaphore:
    with _GATES_LOCK:
        return _GATES.setdefault(limit, threading.BoundedSemaphore(limit))


@contextlib.contextmanager
def _gate(limit: int) -> Iterator[None]:
    with transcription_gate(limit):
        if STOPPING.is_set():
            raise RunStopping("the run is stopping")
        yield


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, PERMANENT_OS):
        return False
    return isinstance(exc, TRANSIENT) or (isinstance(exc, OSError) and not isinstance(exc, AudioError))


# A take whose task could not run or report (the Prefect API restarting, the object store away, a
# worker lost) is submitted again, this many times with a growing wait, before it counts as failed.
INFRA_RESUBMITS = 6  # waits 2, 4, 8, 16, 30, 30 s: ~90 s, a server restart on a busy machine


def is_infrastructure_error(exc: BaseException) -> bool:
    """The take never had a fair try: something it talks to was away, its input is not at fault.

    Prefect's task engine raises RuntimeError("Failed to reach API at …") when it cannot reach the
    server at a task's start; coming back from a Dask worker the exception has lost its cause, so
    its message is what tells it apart."""
    import httpx

    seen = exc
    while seen is not None:
        if isinstance(seen, (httpx.TransportError, ConnectionError, TimeoutError)):  # StoreUnavailableError is one
            return True
        if isinstance(seen, RuntimeError) and str(seen).startswith("Failed to reach API"):
            return True
        if type(seen).__name__ == "KilledWorker":  # distributed: the take's workers kept dying
            return True
        seen = seen.__cause__
    return False


def _retry_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 — the failed state re-raises its exception here
        return is_transient(exc)
    return False


def model_identity(settings: IngestSettings) -> str:
    """Which weights: the model files' size and mtime, so replaced weights invalidate the cache."""
    backend = check_settings(settings)  # bad settings or a missing model fail here, before the first take
    path = resolve_model(settings.model, backend)
    target = path / "model.bin" if path.is_dir() else path
    st = target.stat()
    return f"{settings.model}:{backend}:{st.st_size}:{int(st.st_mtime)}"


def _cache_key(context, parameters) -> str:
    text = (
        "|".join(str(parameters[k]) for k in ("sha256", "fingerprint", "model_identity", "dataset"))
        + "|"
        + str(parameters["source"].get("manifest"))
        + str(parameters["source"].get("labels"))
    )
    return "ingest-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def take_run_name(parameters: dict) -> str:
    """A task run is named after its take (and file), so the UI's run graph reads as a list of takes."""
    manifest = parameters.get("manifest") or parameters["source"].get("manifest") or {}
    take = manifest.get("take_id") or take_id_for_content(parameters["sha256"])
    return f"{take} ({Path(parameters['source']['path']).name})"


@task(
    name="ingest-take",
    task_run_name=take_run_name,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_transient,
    tags=["whisper"],
    persist_result=True,
)
def ingest_take(
    source: dict, sha256: str, dataset: str, settings: IngestSettings, fingerprint: str, model_identity: str, concurrency: int,
    known: bool = True, manifest: dict | None = None,
) -> dict:  # fmt: skip
    """One take end to end; bad input (InputError) becomes a reject (returned, not raised: nothing to retry).

    `manifest`: the source's manifest merged with what the dataset already knew of the take (its
    take id, metadata a re-ingest must not erase); the cache stays keyed on the source as found.
    `known=False` (not in the dataset when the run began) spares `write_take` a search for stale clips.
    """
    src = TakeSource(**source)
    if manifest is not None:
        src = replace(src, manifest=manifest)
    ds = Dataset(dataset)
    if STOPPING.is_set():
        raise RunStopping("the run is stopping")
    try:
        rows = process_take(src, sha256, settings, gate=_gate(concurrency))
    except InputError as exc:
        reason = exc.problem if isinstance(exc, AudioError) else str(exc)
        return {"status": "rejected", "source": src.path, "reason": reason, "details": f"{type(exc).__name__}; origin {src.origin}"}
    except OSError as exc:
        if is_transient(exc):
            raise  # retried
        return {"status": "rejected", "source": src.path, "reason": f"cannot read: {exc}", "details": f"origin {src.origin}"}
    written = write_take(ds, rows, known=known)
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
    skipped: int = 0  # being (or just) ingested by another run of the same dataset
    found_again: int = 0  # audio already in the dataset (by content): its take id and metadata kept
    clips: int = 0
    suspected_hallucinations: int = 0
    seconds: float = 0.0
    rejects: list[dict] = field(default_factory=list)
    takes: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)  # known takes whose metadata or audio this run changes
    skips: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _source_dict(src: TakeSource) -> dict:
    return {"path": src.path, "origin": src.origin, "manifest": src.manifest, "labels": src.labels, "guessed": src.guessed}


def _leases(dataset: Dataset) -> TakeLeases:
    return TakeLeases(dataset.local_path / ".ingest-leases" if dataset.local_path is not None else None)


def _cached_task(dataset: Dataset, refresh: bool):
    options = {"cache_policy": CacheKeyFnPolicy(cache_key_fn=_cache_key), "refresh_cache": refresh}
    if dataset.local_path is not None:
        cache = dataset.local_path / ".ingest-cache"
        options["cache_policy"] = options["cache_policy"].configure(key_storage=str(cache / "keys"))
        options["result_storage"] = cache / "results"
    return ingest_take.with_options(**options)


# Each take's upserts add one small data file per table, and each upsert scans its table's key
# columns: without compaction during the run, a take's writes cost more the more takes came before
# it (quadratic time, and memory that grows with the run). Compacting every this many takes keeps
# the number of files, and so each upsert's cost, bounded.
COMPACT_EVERY = 100
TABLES_WRITTEN = ("takes", "clips", "features", "labels", "rejects")


def in_flight_limit(transcribe_concurrency: int, takes: int = 0) -> int:
    """Takes submitted at once. On threads: enough to keep transcription busy, few enough that memory
    and a SIGTERM's wait (a thread pool finishes what was queued) do not grow with the number of takes.
    On Dask: every take at once (a few hundred bytes each): the scheduler queues them and hands a
    worker its next take as it finishes one, where a bounded window left each worker idle for a
    scheduler-to-flow-to-scheduler round trip per take; a stopped flow's client takes its queued
    tasks with it."""
    if dask_address():
        return max(takes, 1)
    return max(4, 2 * transcribe_concurrency)


@flow(
    name="ingest",
    description="Recordings → takes, transcribed clips, encoder features, imported labels, rejects.",
    task_runner=task_runner(),  # Dask workers when CANTOLAB_DASK_ADDRESS is set, threads otherwise (flows.runners)
)
def ingest_flow(
    recordings: str,
    dataset: str,
    import_csv: str | None = None,
    settings: dict | None = None,
    transcribe_concurrency: int = 1,
) -> dict:
    logger = get_run_logger()
    started = time.time()
    STOPPING.clear()
    cfg = IngestSettings.from_dict(settings)  # validated once here; tasks get the typed settings
    ds = Dataset(dataset)
    recordings = local_recordings(recordings)  # an s3:// root is mirrored to a local folder first
    identity = model_identity(cfg)  # a missing model fails here, once, with how to provide it
    sources, problems = discover_takes(recordings, import_csv, cfg)
    report = IngestReport(discovered=len(sources))
    rejects = RejectLog(ds)
    pending: dict = {}  # future -> (planned take, its lease, how to submit it again)
    resubmits: dict[str, int] = {}  # take id -> times submitted again after an infrastructure error

    def reject(stage: str, source: str, reason: str, details: str = "") -> None:
        rejects.add(stage, source, reason, details)
        report.rejects.append({"stage": stage, "source": source, "reason": reason})

    try:
        if import_csv is not None:  # rows of this CSV rejected by an earlier run and fixed since (e.g. a label now in [labels])
            current = {(p.stage, p.source) for p in problems}
            prefix = f"{Path(import_csv).name}:"
            stale = [k for k in ds.keys("rejects") if k[0] == "import" and k[1].startswith(prefix) and k not in current]
            if stale:
                ds.delete("rejects", stale)
        for problem in problems:
            reject(problem.stage, problem.source, problem.reason)
        by_id, by_sha = known_takes(ds)
        fingerprint = cfg.fingerprint()
        seen_id: dict = {}
        seen_sha: dict = {}
        limit = in_flight_limit(transcribe_concurrency, len(sources))
        leases = _leases(ds)

        def collect(fut) -> None:
            planned, lease, again = pending.pop(fut)
            src = planned.source
            try:
                result = fut.result()
            except ConfigError:
                raise  # a bad setting: stop the run rather than quarantine every take
            except Exception as exc:  # noqa: BLE001 — failed after its retries: quarantine, carry on
                tries = resubmits.get(planned.take_id, 0)
                if tries < INFRA_RESUBMITS and is_infrastructure_error(exc):
                    resubmits[planned.take_id] = tries + 1
                    wait = min(2 ** (tries + 1), 30)
                    logger.warning(
                        "take %s (%s): %s: %s — submitted again in %d s (%d/%d)",
                        planned.take_id, src.path, type(exc).__name__, exc, wait, tries + 1, INFRA_RESUBMITS,
                    )  # fmt: skip
                    time.sleep(wait)
                    pending[again()] = (planned, lease, again)
                    return
                result = {"status": "rejected", "source": src.path, "reason": f"failed after retries: {type(exc).__name__}: {exc}"}
            if result["status"] == "rejected":
                reject("ingest", src.path, result["reason"], result.get("details", ""))
            else:
                cached = bool(getattr(fut.state, "name", "") == "Cached")
                lease.finished(sha256=planned.sha256, fingerprint=fingerprint, take_id=planned.take_id)
                rejects.clear(src.path)
                report.ingested += 1
                report.cached += int(cached)
                report.found_again += int(planned.known is not None)
                if planned.changed:
                    report.changed.append({"take_id": planned.take_id, "source": src.path, "fields": planned.changed})
                report.clips += result["clips"]
                report.suspected_hallucinations += result["hallucinations"]
                report.seconds += result["seconds"]
                report.takes.append(
                    {k: result[k] for k in ("source", "take_id", "clips", "hallucinations", "transcripts")} | {"cached": cached}
                )
                if report.ingested % COMPACT_EVERY == 0:
                    for table in TABLES_WRITTEN[:-1]:  # rejects are written in batches (RejectLog)
                        ds.compact(table)
            lease.release()
            for listener in list(PROGRESS_LISTENERS):
                listener(result)

        def skip(planned, reason: str) -> None:
            report.skipped += 1
            report.skips.append({"source": planned.source.path, "take_id": planned.take_id, "reason": reason})
            for listener in list(PROGRESS_LISTENERS):
                listener({"status": "skipped", "source": planned.source.path, "reason": reason})

        for src in sources:
            try:
                sha = sha256_file(src.path)
            except OSError as exc:
                reject("ingest", src.path, f"cannot read: {exc}")
                continue
            planned = plan_take(src, sha, by_id, by_sha, seen_id, seen_sha)
            if isinstance(planned, SourceProblem):
                reject(planned.stage, planned.source, planned.reason)
                for listener in list(PROGRESS_LISTENERS):
                    listener({"status": "rejected", "source": src.path, "reason": planned.reason})
                continue
            # Leased while in flight: another ingest of this dataset skips the take instead of redoing it.
            lease = leases.acquire(planned.take_id)
            if not lease.held:
                skip(planned, "in progress in another ingest of this dataset")
                continue
            known = planned.take_id in by_id
            done = lease.record or {}
            if not known and (done.get("sha256"), done.get("fingerprint")) == (sha, fingerprint) and done.get("done_at", 0) >= started:
                lease.release()
                skip(planned, "ingested by another ingest of this dataset while this one ran")
                continue
            # A take missing from the dataset is redone even when the cache says it was finished.
            runner = _cached_task(ds, refresh=not known)
            args = (_source_dict(planned.source), sha, dataset, cfg, fingerprint, identity, transcribe_concurrency, known, planned.manifest)
            again = lambda runner=runner, args=args: runner.submit(*args)  # noqa: E731
            pending[again()] = (planned, lease, again)
            while len(pending) >= limit:
                collect(next(as_completed(list(pending))))
        while pending:
            collect(next(as_completed(list(pending))))
    except BaseException as exc:  # SIGTERM (Prefect's TerminationSignal), Ctrl-C: let waiting takes give up
        STOPPING.set()
        if isinstance(exc, TerminationSignal):
            _exit_after_grace(exc.signal)
        raise
    finally:
        for _, lease, _ in pending.values():
            lease.release()
        rejects.flush()  # what was decided is kept even when the run is cut short
    report.rejected = len(report.rejects)
    for table in TABLES_WRITTEN:
        ds.compact(table)  # one part per table again (files of ~64 MB), instead of one per take
    logger.info(
        "ingest: %d discovered, %d ingested (%d from cache, %d found again, %d changed), %d rejected, %d skipped (another run), %d clips, %d suspected hallucinations",
        report.discovered, report.ingested, report.cached, report.found_again, len(report.changed), report.rejected,
        report.skipped, report.clips, report.suspected_hallucinations,
    )  # fmt: skip
    result = report.to_dict()
    publish_ingest(result)  # the per-take table in the Prefect UI (Artifacts, and on this flow run)
    return result


pickle_by_reference(__name__, "ingest_take", "ingest_flow")  # Dask ships them to its workers
