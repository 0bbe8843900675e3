"""Annotation sync at scale against a real local Label Studio: 1,000 clips, 3 annotators, 2,000 tasks
and 2,000 annotations made through the API (each annotator with their own token, one POST per
annotation, a few client threads), export, agreement with bootstrap intervals, adjudication tasks.

Wall time per stage. `sync_cycle_s` is the pipeline's own work (both syncs: media, task import,
export, validation, adjudication tasks, labels; agreement; report) and should stay under 60 s on this
2-core machine. The 2,000 annotation POSTs stand in for the annotators' work and are reported apart:
Label Studio spends ~30 ms of CPU per annotation (ORM signals: project summary, state history,
storages, webhooks), so they are bound by the server's worker processes, not by this code.
`cycle_with_annotation_posts_s` is the whole cycle including those POSTs (the issue's figure)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from annotation.client import connect, invite_link, setup_projects
from annotation.labeling import choice_result
from annotation.report import compute, write_report
from annotation.server import LocalServer, free_port
from annotation.settings import AnnotationSettings, Roster
from annotation.sync import export_tasks, run_sync
from benchmarks.common import write_result
from pipeline.data import shared_data_dir
from pipeline.dataset import Dataset
from tests.annotation.ls_fixtures import signup

N_CLIPS = 1000
THREADS = 4


def _clip_rows(n: int) -> tuple[list[dict], str]:
    """Real recordings' FLAC bytes (RAVDESS songs, reused with distinct ids past 790); a tone if absent."""
    data = shared_data_dir()
    files = sorted((data / "ravdess_song").rglob("*.flac")) if data else []
    source = "ravdess_song FLAC files" if files else "synthetic 2 s tone (CANTOLAB_DATA absent)"
    if not files:
        from pipeline.audio import encode_flac

        t = np.arange(96_000) / 48_000
        tone = encode_flac((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    rows = []
    for i in range(n):
        audio = files[i % len(files)].read_bytes() if files else tone
        cid = "clip-" + hashlib.sha256(f"bench-{i}".encode()).hexdigest()[:16]
        rows.append(
            {
                "clip_id": cid,
                "take_id": f"take-bench-{i // 10}",
                "singer": f"s{i % 18}",
                "start_s": 0.0,
                "end_s": 2.39,
                "audio_flac": audio,
                "sample_rate": 48_000,
                "transcript": f"bench clip {i}",
                "language": "en",
            }
        )
    return rows, source


def main() -> dict:
    home = Path(tempfile.mkdtemp(prefix="cantolab-ls-bench-"))
    server = LocalServer(home=home, port=free_port())
    stages: dict[str, float] = {}
    try:
        t = time.perf_counter()
        server.start(wait_s=400)
        stages["server_start"] = time.perf_counter() - t
        token, _ = server.credentials()
        settings = AnnotationSettings(url=server.url, project_prefix="Bench")
        roster = Roster(("b-ann1@example.org", "b-ann2@example.org", "b-ann3@example.org"), "b-adj@example.org")
        service = connect(settings, token)
        t = time.perf_counter()
        projects = setup_projects(server, settings, roster, server.document_root / settings.media_subdir)
        link = invite_link(settings, token)
        users = {}
        for email in roster.everyone:  # each person signs up with their own password, as through `invite`
            session = signup(settings.url, email, f"bench-{email}", link)
            users[email] = {"token": session.get(f"{settings.url}/api/current-user/token", timeout=30).json()["token"]}
        stages["setup_projects_users"] = time.perf_counter() - t

        ds = Dataset(home / "dataset")
        rows, source = _clip_rows(N_CLIPS)
        ds.upsert("clips", rows)

        cycle0 = time.perf_counter()
        first = run_sync(ds, service, settings, roster, projects, server.document_root)
        stages["sync1_total"] = sum(first.seconds.values())
        for k, v in first.seconds.items():
            stages[f"sync1_{k}"] = v

        t = time.perf_counter()
        rng = np.random.default_rng(0)
        jobs = []
        for a, pid in projects.first.items():
            for task in export_tasks(projects.client_for(pid, settings, service), pid):
                jobs.append((a, task["id"], task["data"]["clip_id"]))
        styles, emotions = settings.labels.styles, settings.labels.emotions
        truth = {cid: (str(rng.choice(styles)), str(rng.choice(emotions))) for _, _, cid in jobs}
        # Each annotator's label: the clip's "true" label, replaced by a random one 10% (style) / 25% (emotion) of the time.
        chosen = [
            (
                a,
                tid,
                str(rng.choice(styles)) if rng.random() < 0.10 else truth[cid][0],
                str(rng.choice(emotions)) if rng.random() < 0.25 else truth[cid][1],
            )
            for a, tid, cid in jobs
        ]
        clients = {a: connect(settings, users[a]["token"]) for a in roster.annotators}

        def label(job):
            a, tid, s, e = job
            clients[a].annotations.create(id=tid, result=[choice_result("style", s), choice_result("emotion", e)])

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(label, chosen))
        stages["annotate_via_api"] = time.perf_counter() - t

        second = run_sync(ds, service, settings, roster, projects, server.document_root)
        stages["sync2_total"] = sum(second.seconds.values())
        for k, v in second.seconds.items():
            stages[f"sync2_{k}"] = v

        t = time.perf_counter()
        rep = compute(ds, settings.labels, n_boot=2000)
        stages["agreement"] = time.perf_counter() - t
        t = time.perf_counter()
        write_report(rep, home / "report")
        stages["report_markdown_png"] = time.perf_counter() - t
        cycle = time.perf_counter() - cycle0
        sync_cycle = stages["sync1_total"] + stages["sync2_total"] + stages["agreement"] + stages["report_markdown_png"]

        t = time.perf_counter()
        third = run_sync(ds, service, settings, roster, projects, server.document_root)
        stages["sync3_nothing_new"] = time.perf_counter() - t
        result = {
            "clips": N_CLIPS,
            "audio_source": source,
            "tasks_created": sum(first.tasks_created.values()),
            "annotations_made": len(jobs),
            "annotations_in_dataset": ds.count("annotations"),
            "adjudication_tasks": second.adjudication_created,
            "labels_agreed": second.agreed,
            "kappa": {f: {"kappa": fa.kappa, "ci95": list(fa.ci95)} for f, fa in rep.fields.items()},
            "third_sync_changed": third.changed,
            "client_threads": THREADS,
            "server_workers": server.workers,
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "stages_s": {k: round(v, 3) for k, v in stages.items()},
            "sync_cycle_s": round(sync_cycle, 2),
            "sync_cycle_under_60s": sync_cycle < 60,
            "annotation_posts_s": round(stages["annotate_via_api"], 2),
            "ms_per_annotation_post": round(1000 * stages["annotate_via_api"] / max(len(jobs), 1), 1),
            "cycle_with_annotation_posts_s": round(cycle, 2),
            "cycle_with_annotation_posts_under_60s": cycle < 60,
        }
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return write_result("annotation", result)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
