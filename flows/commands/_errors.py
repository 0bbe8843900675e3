"""One way for a command to fail: the error's own message on stderr, exit code USER_ERROR_EXIT.

A `CantolabError` (bad input, bad settings, something missing) is the user's to fix, so it is
printed without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from pipeline.errors import USER_ERROR_EXIT, CantolabError

stderr = Console(stderr=True, soft_wrap=True)


def fail(problem: str | BaseException) -> NoReturn:
    """Print `error: <message>` on stderr (as plain text: paths may hold [brackets]) and exit USER_ERROR_EXIT."""
    stderr.print(Text.assemble(("error: ", "bold red"), str(problem)))
    raise typer.Exit(USER_ERROR_EXIT)


@contextlib.contextmanager
def user_errors(*also: type[BaseException]) -> Iterator[None]:
    """Turn a CantolabError (and the exception types in `also`) raised in the block into `fail`."""
    try:
        yield
    except (CantolabError, *also) as exc:
        fail(exc)
