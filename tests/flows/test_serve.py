"""`cantolab serve`'s deployments, registered with a real Prefect server and read back from it:
ingest hourly, annotation sync every 30 minutes, retrain nightly at 03:00 (UTC), one run at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

EXPECTED = {"cantolab-ingest": "0 * * * *", "cantolab-annotation-sync": "*/30 * * * *", "cantolab-retrain": "0 3 * * *"}


def _registered(ids: dict) -> dict:
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return {name: await client.read_deployment(i) for name, i in ids.items()}

    return asyncio.run(read())


def _next_runs(cron: str, n: int, start: datetime) -> list[datetime]:
    """The server's own reading of a cron schedule (what its scheduler will create runs for)."""
    from prefect.server.schemas.schedules import CronSchedule

    dates = CronSchedule(cron=cron).get_dates(n=n, start=start)
    return list(asyncio.run(dates) if asyncio.iscoroutine(dates) else dates)


def test_registered_schedules_and_one_run_at_a_time(prefect_harness, tmp_path):
    from flows.serve import build_deployments

    deployments = build_deployments(str(tmp_path / "recordings"), str(tmp_path / "dataset"))
    ids = {d.name: d.apply() for d in deployments}
    assert set(ids) == set(EXPECTED)
    registered = _registered(ids)
    start = datetime(2026, 11, 28, 12, 10, tzinfo=UTC)
    for name, d in registered.items():
        (schedule,) = d.schedules
        assert schedule.active and schedule.schedule.cron == EXPECTED[name], (name, schedule)
        # concurrency 1: a slow run is never overlapped by the next tick
        assert d.global_concurrency_limit is not None and d.global_concurrency_limit.limit == 1, (name, d.global_concurrency_limit)
        assert d.parameters["dataset"] == str(tmp_path / "dataset")

    nightly = _next_runs(registered["cantolab-retrain"].schedules[0].schedule.cron, 3, start)
    assert [(t.day, t.hour, t.minute) for t in nightly] == [(29, 3, 0), (30, 3, 0), (1, 3, 0)]
    sync = _next_runs(registered["cantolab-annotation-sync"].schedules[0].schedule.cron, 4, start)
    assert [b - a for a, b in zip(sync, sync[1:])] == [timedelta(minutes=30)] * 3 and sync[0].minute == 30
    hourly = _next_runs(registered["cantolab-ingest"].schedules[0].schedule.cron, 3, start)
    assert [b - a for a, b in zip(hourly, hourly[1:])] == [timedelta(hours=1)] * 2
    assert registered["cantolab-ingest"].parameters["recordings"] == str(tmp_path / "recordings")
