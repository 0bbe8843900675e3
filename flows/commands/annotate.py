"""`cantolab annotate …`: the Label Studio side of the pipeline (server, setup, sync, report, predict-push)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from flows.commands._errors import fail, user_errors

console = Console()
annotate_app = typer.Typer(
    help="Double labeling in Label Studio: two independent annotators per clip, adjudication, Cohen's kappa.",
    no_args_is_help=True,
)
server_app = typer.Typer(
    help="A local Label Studio (from .venv-labelstudio); production can use any server via CANTOLAB_LS_URL.", no_args_is_help=True
)
annotate_app.add_typer(server_app, name="server")

HOME_OPT = typer.Option(
    None, "--home", help="Server home (data/, media/, log); default ~/.local/share/cantolab/labelstudio or CANTOLAB_LS_HOME."
)
PORT_OPT = typer.Option(None, "--port", "-p", help="Loopback port (start: default 8080; stop/status: the one recorded at start).")
SETTINGS_OPT = typer.Option(
    None, "--settings", help="Settings TOML: \\[labels] styles, emotions; \\[annotation] url, project_prefix (default $CANTOLAB_SETTINGS)."
)
ROSTER_OPT = typer.Option(
    None,
    "--roster",
    help='roster.toml: annotators = [...], adjudicator = "..." (default CANTOLAB_ROSTER or ~/.config/cantolab/roster.toml).',
)
ROOT_OPT = typer.Option(None, "--document-root", help="The server's LOCAL_FILES_DOCUMENT_ROOT (default: recorded by `server start`).")


def _server(home: Path | None, port: int | None):
    from annotation.server import DEFAULT_HOME, LocalServer

    return LocalServer(home=Path(home) if home else DEFAULT_HOME, port=port)  # no port: the one recorded at start


@contextlib.contextmanager
def _label_studio_errors(where: dict):
    """Settings problems and a Label Studio that is not answering are user errors with a clear message
    (no traceback). The body sets where["url"] once it knows which server it talks to."""
    from annotation.client import is_unavailable

    try:
        with user_errors(LookupError):
            yield
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        fail(
            f"Label Studio at {where.get('url', 'the configured URL')} is not answering ({type(exc).__name__}); "
            "start it with `cantolab annotate server start` or set CANTOLAB_LS_URL"
        )


@server_app.command("start")
def server_start(home: Path = HOME_OPT, port: int = PORT_OPT) -> None:
    """Start Label Studio on 127.0.0.1 and record its URL, token and document root in the secrets file."""
    from annotation.server import ServerError
    from annotation.settings import write_secrets

    srv = _server(home, port)
    with user_errors(ServerError), console.status("starting Label Studio (first start on a new data dir takes ~30-60 s)…"):
        pid = srv.start()
    token, _ = srv.credentials()
    path = write_secrets({"url": srv.url, "service_token": token, "document_root": str(srv.document_root)})
    console.print(f"Label Studio is up at [bold]{srv.url}[/] (pid {pid}); token and document root saved in {path}")


@server_app.command("stop")
def server_stop(home: Path = HOME_OPT, port: int = PORT_OPT) -> None:
    """Stop the local server started from this home (by its recorded PID)."""
    srv = _server(home, port)
    recorded = srv.read_state().get("pid")
    if srv.stop():
        console.print("stopped")
    elif recorded:
        console.print(f"not running (server.json named PID {recorded}, which is not this home's Label Studio; nothing was signalled)")
    else:
        console.print("not running")


@server_app.command("status")
def server_status(home: Path = HOME_OPT, port: int = PORT_OPT) -> None:
    """Is the local server running and answering?"""
    st = _server(home, port).status()
    for k, v in st.items():
        console.print(f"{k}: {v}")
    if not st["healthy"]:
        raise typer.Exit(1)


@annotate_app.command("setup")
def setup(
    settings: Path = SETTINGS_OPT,
    roster: Path = ROSTER_OPT,
    document_root: Path = ROOT_OPT,
    home: Path = HOME_OPT,
    replace_missing: bool = typer.Option(
        False, "--replace-missing", help="Give a person whose recorded project was deleted a new, empty one."
    ),
) -> None:
    """One organization per person on the roster, each annotator's project in theirs, the adjudication project in the adjudicator's."""
    from annotation.client import setup_projects

    where: dict = {}
    with _label_studio_errors(where):
        ws = _workspace(settings, roster, document_root)
        where["url"] = ws.settings.url
        srv = _server(home, None)
        if srv.url != ws.settings.url or srv.pid() is None:
            raise LookupError(
                f"setup creates organizations through the server's own Python, so it needs the local server of "
                f"{ws.settings.url} running from this home ({srv.home}); pass --home, or run setup on the server's machine"
            )
        projects = setup_projects(srv, ws.settings, ws.roster, ws.document_root / ws.settings.media_subdir, ws.recorded(), replace_missing)
        path = ws.record(projects)
    table = Table(title="Label Studio projects (one organization per person)")
    table.add_column("project")
    table.add_column("id", justify="right")
    table.add_column("who")
    for a, pid in projects.first.items():
        table.add_row("first round", str(pid), a)
    table.add_row("adjudication", str(projects.adjudication), ws.roster.adjudicator)
    console.print(table)
    console.print(f"project ids and each organization's service token recorded in {path} (mode 0600)")
    console.print("next: `cantolab annotate invite EMAIL` for each person, then `cantolab annotate sync DATASET`")


@annotate_app.command("invite")
def invite(
    email: str = typer.Argument(..., help="A person on the roster."),
    settings: Path = SETTINGS_OPT,
    roster: Path = ROSTER_OPT,
    document_root: Path = ROOT_OPT,
    expire: bool = typer.Option(False, "--expire", help="Retire the current sign-up link (after everyone has signed up)."),
) -> None:
    """Print the sign-up link to send to EMAIL: they choose their own password and land in their own organization."""
    from annotation.client import invite_link, require_roster_member, reset_invite

    where: dict = {}
    with _label_studio_errors(where):
        ws = _workspace(settings, roster, document_root)
        where["url"] = ws.settings.url
        if expire:
            reset_invite(ws.settings, ws.token)
            console.print("the sign-up link is retired; `invite` prints a new one")
            return
        email = require_roster_member(ws.roster, email)
        if ws.recorded() is None:
            raise LookupError("no projects yet: run `cantolab annotate setup` before inviting anyone")
        link = invite_link(ws.settings, ws.token)
    console.print(f"Send this to {email} (it is a sign-up link, not a password):\n")
    print(link)
    console.print(
        f"\n{email} opens it, signs up with exactly this e-mail and a password of their own choosing (nobody else "
        "sees it), and finds only their own queue. Retire the link with `--expire` once everyone has signed up."
    )


def _workspace(settings, roster, document_root):
    from annotation.workspace import open_workspace

    return open_workspace(settings, roster, document_root)


def _local(ws, home: Path | None):
    """The local server run from `home` when it is the workspace's server (its database can be read), else None."""
    return ws.local_server(home)


def _task_locks(ws, projects, home: Path | None) -> dict[str, int] | None:
    """Per person: tasks locked (opened, not yet labeled) in their project. Label Studio's API does not
    expose locks, so they are read from the database of a local server run from `home`; None otherwise."""
    from annotation.server import ServerError

    srv = _local(ws, home)
    if srv is None:
        return None
    owners = {**{pid: a for a, pid in projects.first.items()}, projects.adjudication: ws.roster.adjudicator}
    try:
        found = srv.task_locks(list(owners))
    except ServerError as exc:
        console.print(f"[yellow]task locks not read[/]: {exc}")
        return None
    return {owners[pid]: sum(by.values()) for pid, by in found.items()}


def _print_progress(rep, locks: dict[str, int] | None) -> None:
    table = Table(title="Per person")
    for col in ("person", "tasks", "done", "skipped", "waiting", "locked"):
        table.add_column(col, justify="left" if col == "person" else "right")
    for who, p in rep.per_annotator.items():
        locked = "n/a" if locks is None else str(locks.get(who, 0))
        table.add_row(who, *(str(p[k]) for k in ("tasks", "done", "skipped", "waiting")), locked)
    console.print(table)
    if locks is None:
        console.print(
            "locked: n/a (Label Studio's API does not report task locks; they are read from the database of a local "
            "server started with `cantolab annotate server start`, pass its --home)"
        )
    else:
        console.print("locked: of the waiting tasks, those opened by their owner and not yet submitted or skipped")


@annotate_app.command("sync")
def sync(
    dataset: str = typer.Argument(..., help="Dataset folder (local path or fsspec URL)."),
    settings: Path = SETTINGS_OPT,
    roster: Path = ROSTER_OPT,
    document_root: Path = ROOT_OPT,
    home: Path = HOME_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the sync report as JSON."),
) -> None:
    """One sync now (without Prefect): clips → tasks, annotations → dataset, disagreements → adjudication, labels."""
    from annotation.sync import SyncInterrupted, run_sync
    from pipeline.dataset import Dataset

    where: dict = {}
    try:
        with _label_studio_errors(where):
            ws = _workspace(settings, roster, document_root)
            where["url"] = ws.settings.url
            projects = ws.projects()
            with console.status("syncing with Label Studio…"):
                srv = _local(ws, home)  # a local server's tasks are read from its database in bulk
                report = run_sync(
                    Dataset(dataset),
                    ws.client,
                    ws.settings,
                    ws.roster,
                    projects,
                    ws.document_root,
                    read_tasks=srv.read_tasks if srv else None,
                )
            locks = _task_locks(ws, projects, home)
    except SyncInterrupted as exc:
        fail(exc)
    for who, p in report.per_annotator.items():
        p["locked"] = None if locks is None else locks.get(who, 0)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
        return
    console.print(
        f"clips {report.clips}; tasks created {sum(report.tasks_created.values())} ({report.reassigned} after a skip); "
        f"annotations {report.annotations}; skipped {report.skipped}; "
        f"labels {report.labels} (agreed {report.agreed}, adjudicated {report.adjudicated}); "
        f"adjudication tasks +{report.adjudication_created}; awaiting adjudication {report.pending_adjudication}; "
        f"waiting for a second label {report.incomplete}; imported labels kept {report.kept_imported}",
        markup=False,
    )
    _print_progress(report, locks)
    for cid, why in report.exhausted.items():
        console.print(f"to the adjudicator alone: {cid}: {why}", markup=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    for p in report.problems:
        console.print(f"[yellow]left out[/] {p.source}: {p.reason} ({p.details})")


@annotate_app.command("status")
def status(
    settings: Path = SETTINGS_OPT,
    roster: Path = ROSTER_OPT,
    document_root: Path = ROOT_OPT,
    home: Path = HOME_OPT,
) -> None:
    """Per person: done, skipped, waiting, locked, read from the server now (writes nothing)."""
    from annotation.sync import SyncReport, queue_progress

    where: dict = {}
    with _label_studio_errors(where):
        ws = _workspace(settings, roster, document_root)
        where["url"] = ws.settings.url
        projects = ws.projects()
        srv = _local(ws, home)
        read = srv.read_tasks if srv else None
        rep = SyncReport(per_annotator=queue_progress(ws.client, ws.settings, ws.roster, projects, read), notes=list(projects.notes))
        locks = _task_locks(ws, projects, home)
    _print_progress(rep, locks)
    for note in rep.notes:
        console.print(f"note: {note}", markup=False)


@annotate_app.command("report")
def report(
    dataset: str = typer.Argument(..., help="Dataset folder."),
    out: Path = typer.Option(Path("annotation-report"), "--out", "-o", help="Folder for agreement.md, PNG heatmaps and agreement.json."),
    settings: Path = SETTINGS_OPT,
    n_boot: int = typer.Option(2000, "--bootstrap", help="Bootstrap resamples for the 95% intervals."),
) -> None:
    """Cohen's kappa per field and annotator pair (bootstrap 95% CI), confusion, per-class agreement, style × emotion."""
    from annotation.report import compute, write_report
    from annotation.settings import AnnotationSettings
    from pipeline.dataset import Dataset

    rep = compute(Dataset(dataset), AnnotationSettings.load(settings).labels, n_boot=n_boot)
    path = write_report(rep, out)
    if rep.n_pairs == 0:
        console.print("no clip has two first-round labels yet: kappa is undefined until annotators have labeled")
    for f, fa in rep.fields.items():
        console.print(
            f"{f}: kappa {fa.kappa:.3f} (95% CI {fa.ci95[0]:.3f} to {fa.ci95[1]:.3f}), observed agreement {fa.observed:.3f}, n={fa.n}",
            markup=False,
        )
    console.print(f"report: {path}")


@annotate_app.command("predict-push")
def predict_push(
    model: str = typer.Argument(..., help="Model run folder (models/<run>) to predict every clip with."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset folder with the clips."),
    predictions: Path = typer.Option(
        None, "--predictions", help="JSON list of {clip_id, style_probs, emotion_probs} instead of running MODEL."
    ),
    settings: Path = SETTINGS_OPT,
    roster: Path = ROSTER_OPT,
    document_root: Path = ROOT_OPT,
) -> None:
    """Push predictions as pre-annotations to the first-round projects, most uncertain clips first."""
    from annotation.predict_push import Prediction, push_predictions
    from pipeline.dataset import Dataset

    with user_errors():
        ws = _workspace(settings, roster, document_root)
    ds = Dataset(dataset)
    try:
        with user_errors(json.JSONDecodeError, FileNotFoundError):
            if predictions:
                rows = json.loads(Path(predictions).read_text())
            else:
                from model.predict import predict_clips

                rows = predict_clips(model, ds)
            preds = [Prediction(r["clip_id"], r["style_probs"], r["emotion_probs"]) for r in rows]
    except KeyError as exc:
        fail(f"predictions lack {exc.args[0]}: pre-annotations need both style and emotion probabilities")
    projects = ws.projects()
    n = push_predictions(
        [(projects.client_for(pid, ws.settings, ws.client), pid) for pid in projects.first.values()], preds, model_version=Path(model).name
    )
    console.print(f"pushed {n} pre-annotations; open the tab 'Most uncertain first' in each project")


def register(app: typer.Typer) -> None:
    app.add_typer(annotate_app, name="annotate")
