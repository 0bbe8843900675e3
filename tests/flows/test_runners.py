"""What Dask needs from the ingest module: its task and flow functions travel by reference, and
deployments load the flow object (not its function) from the installed package's module path."""

from __future__ import annotations

import pickle

import cloudpickle
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.task_runners import ThreadPoolTaskRunner

from flows import ingest
from flows.runners import DASK_ADDRESS_VAR, task_runner


def test_ingest_functions_pickle_by_reference():
    for obj in (ingest.ingest_take, ingest.ingest_flow, ingest._cached_task(ingest.Dataset("s3://bucket/ds"), True)):
        data = cloudpickle.dumps(obj.fn)
        assert len(data) < 200, "pickled by value (with the module's locks and events)"
        assert pickle.loads(data) is obj.fn


def test_deployments_load_the_flow_from_the_module_path(tmp_path):
    from flows.serve import build_deployments

    entrypoints = {d.name: d.entrypoint for d in build_deployments(str(tmp_path), str(tmp_path), work_pool="cantolab")}
    assert entrypoints["cantolab-ingest"] == "flows.ingest.ingest_flow"
    for entrypoint in entrypoints.values():
        assert isinstance(load_flow_from_entrypoint(entrypoint), Flow), entrypoint


def test_threads_unless_a_scheduler_is_named(monkeypatch):
    monkeypatch.delenv(DASK_ADDRESS_VAR, raising=False)
    assert isinstance(task_runner(), ThreadPoolTaskRunner)
    monkeypatch.setenv(DASK_ADDRESS_VAR, "tcp://127.0.0.1:1")
    from prefect_dask import DaskTaskRunner

    runner = task_runner()
    assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://127.0.0.1:1"
