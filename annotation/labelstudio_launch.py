"""Starts Label Studio inside its own venv (.venv-labelstudio); never imported by Cantolab itself.

`label-studio start` does the set-up we want (migrations, the service user and its token) and then
serves with Django's single-process development server. This launcher keeps that set-up and swaps
only the last step for gunicorn with several worker processes, through public hooks only:
- Label Studio spends ~30 ms of CPU on every saved annotation (ORM signals: project summary, state
  history, storages, webhooks); one process serializes that, workers spread it over the cores;
- the development server leaves Nagle's algorithm on a kept-alive connection (~40 ms stall per
  request); gunicorn's sync workers answer and close;
- SQLite runs in WAL mode (Label Studio does the same for AZURE_MOUNT_FIX, via Django's
  `connection_created` signal): each annotation commits several times and the default rollback
  journal fsyncs each commit. With synchronous=NORMAL an app crash loses nothing; an operating-system
  crash or power cut may lose the last commits.

It also enforces the isolation Cantolab builds on (README, "one organization per person"):
- a user's active organization is always one they are a member of. Open-source Label Studio lets a
  user PATCH `active_organization` on their own record to any organization id, and every project,
  task and annotation query is filtered by that field alone; the guard (a `pre_save` signal on User)
  puts it back to one of the user's own memberships;
- an object belongs to the caller's active organization or is refused. Most of Label Studio's
  queries are filtered by organization, but its object-permission check (`Project.has_permission`,
  which tasks, annotations and drafts defer to) assumes a single organization, so e.g. POSTing an
  annotation to another organization's task id was accepted; the check is extended to compare the
  organization (installed just before serving, in the process the workers fork from);
- a person who signs up through the invite link (which always joins the first organization) is
  moved at once into the organization `cantolab annotate setup` made for them, listed in the
  placement file (`--placement`, e-mail → organization id), so they never work in a shared one;
- gunicorn's control socket lives in this server's home (`--control-socket`), not in the shared
  ~/.gunicorn/gunicorn.ctl that a second server would take over.

Usage: python labelstudio_launch.py --workers N --sqlite-synchronous NORMAL --control-socket PATH
       --placement FILE start [label-studio args]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from django.db.backends.signals import connection_created
from django.db.models.signals import post_save, pre_save

SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


def _options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sqlite-synchronous", choices=SYNC_MODES, default="NORMAL")
    parser.add_argument("--control-socket", default=None)
    parser.add_argument("--placement", default=None)
    return parser.parse_known_args(argv)


def _tune_sqlite(synchronous: str):
    def tune(sender, connection, **kwargs):
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA synchronous={synchronous}")

    return tune


def _memberships(user_id: int) -> list[int]:
    from organizations.models import OrganizationMember

    return list(
        OrganizationMember.objects.filter(user_id=user_id, deleted_at__isnull=True).order_by("pk").values_list("organization_id", flat=True)
    )


def _guard_active_organization(sender, instance, **kwargs):
    """Never let a user's active organization be one they do not belong to."""
    if instance.pk is None or instance.active_organization_id is None:
        return
    orgs = _memberships(instance.pk)
    if instance.active_organization_id not in orgs:
        instance.active_organization_id = orgs[0] if orgs else None


def _placer(path: str):
    def place(sender, instance, created, **kwargs):
        """A roster member who joined another organization (the invite link) is moved into their own."""
        if not created:
            return
        try:
            with open(path) as fh:
                target = json.load(fh).get((instance.user.email or "").lower())
        except (OSError, ValueError):
            return
        if target is None or instance.organization_id == target:
            return
        from organizations.models import OrganizationMember
        from users.models import User

        OrganizationMember.objects.filter(pk=instance.pk).delete()
        OrganizationMember.objects.get_or_create(user_id=instance.user_id, organization_id=target)
        User.objects.filter(pk=instance.user_id).update(active_organization_id=target)

    return place


def _install_organization_check() -> None:
    from projects.models import Project

    single_org_check = Project.has_permission

    def has_permission(self, user) -> bool:
        if self.organization_id is not None and self.organization_id != getattr(user, "active_organization_id", None):
            return False
        return single_org_check(self, user)

    Project.has_permission = has_permission


def _serving(run):
    def serve(host: str, port: int) -> None:
        _install_organization_check()
        run(host, port)

    return serve


def _gunicorn_runner(workers: int, control_socket: str | None):
    def run(host: str, port: int) -> None:
        from django.core.wsgi import get_wsgi_application
        from django.db import connections
        from gunicorn.app.base import BaseApplication

        connections.close_all()  # no SQLite handle may cross the fork into the workers

        class LabelStudioApp(BaseApplication):
            def load_config(self):
                settings = {"bind": f"{host}:{port}", "workers": workers, "timeout": 300, "graceful_timeout": 10}
                if control_socket:
                    settings["control_socket"] = control_socket
                for key, value in settings.items():
                    self.cfg.set(key, value)

            def load(self):
                return get_wsgi_application()

        LabelStudioApp().run()

    return run


def main() -> None:
    opts, rest = _options(sys.argv[1:])
    os.umask(0o077)  # the database holds every token: readable by this user only (files 0600, folders 0700)
    connection_created.connect(_tune_sqlite(opts.sqlite_synchronous), weak=False)
    pre_save.connect(_guard_active_organization, sender="users.User", weak=False)
    if opts.placement:
        post_save.connect(_placer(opts.placement), sender="organizations.OrganizationMember", weak=False)
    import label_studio.server as ls_server

    run = _gunicorn_runner(opts.workers, opts.control_socket) if opts.workers > 0 else ls_server._app_run
    ls_server._app_run = _serving(run)  # the only step replaced: how it serves
    sys.argv = ["label-studio", *rest]
    sys.exit(ls_server.main())


if __name__ == "__main__":
    main()
