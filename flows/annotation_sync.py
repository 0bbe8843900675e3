"""The annotation sync flow (Prefect), scheduled by `cantolab serve` every 30 minutes.

The work is annotation.sync.run_sync; Prefect adds retries when Label Studio is briefly away (the
run is resumable, so a retry simply carries on) and a concurrency limit of one (set by serve's
deployment), so two syncs never race on the same projects.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from annotation.client import ServerUnavailable, is_unavailable
from annotation.sync import SyncInterrupted, run_sync
from annotation.workspace import open_workspace
from pipeline.dataset import Dataset

RETRY_DELAYS = [30, 60]  # seconds before the 2nd and 3rd attempt: a Label Studio restart takes about that


class LabelStudioUnreachable(ServerUnavailable):
    """Label Studio did not answer (refused, timed out, 502-504): transient, so the task is retried.
    The message names the URL the sync used, which a bare ConnectError from the HTTP stack does not."""

    def __init__(self, url: str, cause: BaseException):
        what = (
            f"during {cause.stage!r}: {cause.__cause__ or cause}"
            if isinstance(cause, SyncInterrupted)
            else f"{type(cause).__name__}: {cause}"
        )
        super().__init__(
            f"Label Studio at {url} is unreachable ({what}); the sync is retried, and a later run resumes where this one stopped"
        )
        self.url = url


def _retry_if_unavailable(task, task_run, state) -> bool:
    try:
        state.result()
    except ServerUnavailable:
        return True
    except BaseException:  # noqa: BLE001 — other failures are bugs or bad settings: no retry
        return False
    return False


@task(name="annotation-sync", retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=_retry_if_unavailable)
def sync_task(dataset: str, settings_path: str | None, roster: str | None, document_root: str | None) -> dict:
    ws = open_workspace(settings_path, roster, document_root)
    srv = ws.local_server()  # a local server's tasks are read from its database in bulk
    try:
        report = run_sync(
            Dataset(dataset), ws.client, ws.settings, ws.roster, ws.projects(), ws.document_root,
            read_tasks=srv.read_tasks if srv else None,
        )  # fmt: skip
    except Exception as exc:
        if isinstance(exc, SyncInterrupted) or is_unavailable(exc):
            raise LabelStudioUnreachable(ws.settings.url, exc) from exc
        raise
    return report.as_dict()


@flow(name="annotation-sync", log_prints=False)
def annotation_sync_flow(
    dataset: str, settings_path: str | None = None, roster: str | None = None, document_root: str | None = None
) -> dict:
    """New clips → tasks for two annotators each; annotations → dataset; disagreements → adjudication; → labels."""
    logger = get_run_logger()
    report = sync_task(dataset, settings_path, roster, document_root)
    logger.info(
        "annotation sync: %d clips, tasks created %s, annotations %s, %d problems, labels %s, %d awaiting adjudication",
        report["clips"],
        report["tasks_created"],
        report["annotations"],
        len(report["problems"]),
        report["labels"],
        report["pending_adjudication"],
    )
    for who, progress in report["per_annotator"].items():
        logger.info("%s: %s", who, progress)
    for cid, why in report["exhausted"].items():
        logger.info("to the adjudicator alone: %s: %s", cid, why)
    for note in report["notes"]:
        logger.warning("%s", note)
    for p in report["problems"]:
        logger.warning("left out %s: %s (%s)", p["source"], p["reason"], p["details"])
    return report
