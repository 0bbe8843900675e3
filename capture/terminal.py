"""Single keys from the terminal without echo, so a key pressed during a take leaves no trace.

While a `Keys` context is open the terminal is in cbreak mode with echo (and `^C` echo) off; keys
are read one at a time with a timeout. Ctrl-C still raises KeyboardInterrupt (ISIG stays on). The
old settings come back on exit, whatever happened. When stdin is not a terminal (a pipe in a
script), a line counts as one key: its first character, or Enter for an empty line.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
from collections.abc import Iterator

ENTER = "\n"


class Keys:
    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdin
        try:
            self.fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = -1
        self.tty = self.fd >= 0 and os.isatty(self.fd)
        self.eof = False
        self._saved = None

    def __enter__(self) -> Keys:
        if self.tty:
            self._saved = termios.tcgetattr(self.fd)
            self._quiet()
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def _quiet(self) -> None:
        attrs = termios.tcgetattr(self.fd)
        attrs[3] &= ~(termios.ECHO | termios.ICANON | termios.ECHOCTL)
        attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)

    def restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)

    def flush(self) -> None:
        """Forget keys typed ahead (e.g. while a take was being saved)."""
        if self.tty:
            termios.tcflush(self.fd, termios.TCIFLUSH)

    def key(self, timeout: float | None = None) -> str | None:
        """One key (Enter as "\\n"), or None after `timeout` seconds or at end of input."""
        if self.fd < 0 or self.eof:
            return None
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return None
        if self.tty:
            data = os.read(self.fd, 1)
            if not data:
                self.eof = True
                return None
            ch = data.decode(errors="replace")
            return ENTER if ch in "\r\n" else ch
        line = self.stream.readline()
        if not line:
            self.eof = True
            return None
        return line[0] if line.strip() else ENTER

    def line(self, prompt: str, out=None) -> str:
        """A line typed with echo (a note, a song title); the quiet mode comes back after it."""
        out = out or sys.stdout
        with self.echoing():
            out.write(prompt)
            out.flush()  # a prompt has no newline: without this it would not show
            text = self.stream.readline()
        if not text:
            self.eof = True
        return text.rstrip("\n")

    @contextlib.contextmanager
    def echoing(self) -> Iterator[None]:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
        try:
            yield
        finally:
            if self._saved is not None:
                self._quiet()
