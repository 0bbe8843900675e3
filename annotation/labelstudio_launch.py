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

Usage: python labelstudio_launch.py --workers N --sqlite-synchronous NORMAL start [label-studio args]
"""

from __future__ import annotations

import argparse
import sys

from django.db.backends.signals import connection_created

SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


def _options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sqlite-synchronous", choices=SYNC_MODES, default="NORMAL")
    return parser.parse_known_args(argv)


def _tune_sqlite(synchronous: str):
    def tune(sender, connection, **kwargs):
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA synchronous={synchronous}")

    return tune


def _gunicorn_runner(workers: int):
    def run(host: str, port: int) -> None:
        from django.core.wsgi import get_wsgi_application
        from django.db import connections
        from gunicorn.app.base import BaseApplication

        connections.close_all()  # no SQLite handle may cross the fork into the workers

        class LabelStudioApp(BaseApplication):
            def load_config(self):
                for key, value in {"bind": f"{host}:{port}", "workers": workers, "timeout": 300, "graceful_timeout": 10}.items():
                    self.cfg.set(key, value)

            def load(self):
                return get_wsgi_application()

        LabelStudioApp().run()

    return run


def main() -> None:
    opts, rest = _options(sys.argv[1:])
    connection_created.connect(_tune_sqlite(opts.sqlite_synchronous), weak=False)
    import label_studio.server as ls_server

    if opts.workers > 0:
        ls_server._app_run = _gunicorn_runner(opts.workers)  # the only step replaced: how it serves
    sys.argv = ["label-studio", *rest]
    sys.exit(ls_server.main())


if __name__ == "__main__":
    main()
