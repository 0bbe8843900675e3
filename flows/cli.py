"""The `cantolab` command line: one entry point for every role."""

from __future__ import annotations

import importlib
import logging

import typer

app = typer.Typer(
    name="cantolab",
    help="Cantolab: studio takes → clean, transcribed, labelled clips → a style + emotion model.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)

# Each module adds its own commands; the order is the order of `cantolab --help`.
_COMMAND_MODULES = ("capture", "push", "ingest", "annotate", "model", "serve", "cluster", "dataset")


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"flows.commands.{_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"flows.commands.{_name}":
            raise
        continue
    _module.register(app)


if __name__ == "__main__":
    app()
