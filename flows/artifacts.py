"""What a run decided, as Prefect artifacts: the scheduler's UI shows a table and a summary per run
instead of one log line each.

- `cantolab-ingest`: one row per take the run looked at (file, take, clips, cached, reject reason);
- `cantolab-retrain`: the decision, both models' scores per task, the test singers and where the
  model now lives (folder, MLflow version).

Artifacts are kept per key, newest first, in the UI's Artifacts page and on each flow run; a run
outside Prefect (no flow run) publishes nothing.
"""

from __future__ import annotations

from pathlib import Path

INGEST_KEY = "cantolab-ingest"
RETRAIN_KEY = "cantolab-retrain"


def ingest_rows(report: dict) -> list[dict]:
    """The ingest report as table rows: ingested takes first (in the order they finished), then
    rejects and skips. Every row has the same columns (the UI draws one table)."""
    rows = [
        {"file": Path(t["source"]).name, "take": t["take_id"], "clips": t["clips"], "cached": t["cached"], "reject reason": ""}
        for t in report.get("takes", [])
    ]
    rows += [
        {"file": Path(r["source"]).name or r["source"], "take": "", "clips": 0, "cached": False, "reject reason": f"{r['stage']}: {r['reason']}"}
        for r in report.get("rejects", [])
    ]  # fmt: skip
    rows += [
        {"file": Path(s["source"]).name, "take": s.get("take_id", ""), "clips": 0, "cached": False, "reject reason": f"skipped: {s['reason']}"}
        for s in report.get("skips", [])
    ]  # fmt: skip
    return rows


def ingest_description(report: dict) -> str:
    return (
        f"{report['discovered']} discovered, {report['ingested']} ingested ({report['cached']} from cache), "
        f"{report['rejected']} rejected, {report['skipped']} skipped, {report['clips']} clips"
    )


def retrain_markdown(decision: dict, models_dir: str) -> str:
    """Decision, per-task scores of both models side by side, test singers, where the model is."""
    champion = decision.get("champion")
    kept = decision["decision"] != "promote"
    folder = f"{models_dir.rstrip('/')}/{decision.get('promoted_as') or decision['challenger']}"  # a path or an s3:// URL
    lines = [
        f"# Retrain: {decision['decision']}",
        "",
        decision["reason"],
        "",
        f"| task | challenger {decision['metric']} | champion {decision['metric']} |",
        "|---|---|---|",
    ]
    ch_metrics, cp_metrics = decision.get("challenger_metrics") or {}, decision.get("champion_metrics") or {}
    for task in sorted(set(ch_metrics) | set(cp_metrics)):
        lines.append(f"| {task} | {_score(ch_metrics.get(task))} | {_score(cp_metrics.get(task))} |")
    lines.append(f"| **mean** | **{decision['challenger_score']:.4f}** | **{_fmt(decision.get('champion_score'))}** |")
    lines += [
        "",
        f"- test singers ({decision.get('n_test_clips', 0)} clips): {', '.join(decision.get('test_singers') or []) or '(none)'}",
        f"- champion before this run: {champion or '(none)'}",
        f"- {'challenger kept beside the champion' if kept else 'new champion'}: `{folder}`",
        f"- models folder: `{models_dir}` (champion.json, decisions.jsonl)",
    ]
    if decision.get("model_version"):
        lines.append(f"- MLflow model version {decision['model_version']} (run {decision.get('mlflow_run_id')})")
    return "\n".join(lines) + "\n"


def _score(metrics: dict | None) -> str:
    return f"{metrics['macro_f1']:.4f} (n={metrics['n']})" if metrics else "–"


def _fmt(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "–"


def publish_ingest(report: dict) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(ingest_rows(report), key=INGEST_KEY, description=ingest_description(report))


def publish_retrain(decision: dict, models_dir: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        retrain_markdown(decision, models_dir), key=RETRAIN_KEY, description=f"{decision['decision']}: {decision['challenger']}"
    )
