"""Reading what a run published back through the Prefect client, as the UI does."""

from __future__ import annotations

import asyncio


def latest_artifact(key: str, api: str | None = None):
    """The newest artifact with this key, and the task runs of the flow run that published it
    (on the server at `api`, else the one this process is set up for)."""
    import contextlib

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import ArtifactSort

    async def read():
        async with get_client() as client:
            (art,) = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC, limit=1
            )
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[art.flow_run_id])))
            return art, runs

    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}) if api else contextlib.nullcontext():
        return asyncio.run(read())
