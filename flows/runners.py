"""Where a flow's tasks run: on a Dask cluster when one is configured, else on threads in-process.

`CANTOLAB_DASK_ADDRESS=tcp://host:8786` (set by `cantolab cluster env`, or on each Prefect worker)
sends the ingest's per-take tasks to the Dask workers through prefect-dask's DaskTaskRunner: each
Dask worker process loads the Whisper model once (pipeline.transcribe keeps it per process) and
writes its take's rows to the Delta dataset itself (concurrent keyed upserts, retried on conflict;
pipeline.dataset). Without it, tasks run on a thread pool in the flow's own process.

The variable is read when the flow's module is imported, i.e. once per flow-run process; a Prefect
process worker starts one per run, so changing it on a worker takes effect at the next run.
"""

from __future__ import annotations

import os
import sys

DASK_ADDRESS_VAR = "CANTOLAB_DASK_ADDRESS"


def dask_address() -> str | None:
    return os.environ.get(DASK_ADDRESS_VAR) or None


def task_runner():
    """DaskTaskRunner on the configured scheduler, else Prefect's default thread pool."""
    address = dask_address()
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner()


def pickle_by_reference(module: str, *names: str) -> None:
    """Let Dask pickle these Prefect tasks/flows' functions by reference (module + name).

    Dask ships a task, and the flow run's context that holds the flow, to its workers by pickling.
    After `@task`/`@flow`, `module.name` is the Prefect object, not its function, so cloudpickle
    would copy the function by value with every global it touches (locks, events: unpicklable, and
    a worker would get its own copies). A `__qualname__` of `name.fn` makes pickle find it as
    `module.name.fn`, the same function, imported from the installed package on the worker.
    (Deployments name the flow object by module path, `flows.ingest.ingest_flow`: flows.serve.)
    """
    namespace = sys.modules[module]
    for name in names:
        getattr(namespace, name).fn.__qualname__ = f"{name}.fn"
