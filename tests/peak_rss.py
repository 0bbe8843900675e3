"""Peak memory of a piece of code run in a fresh interpreter, measured where it cannot be inflated.

`wait4`'s ru_maxrss (and the child's own getrusage) carry over the high-water mark of the process
that forked it, so a child of a grown pytest process reports pytest's size; /proc/self/status's
VmHWM belongs to the new program's own address space only.
"""

from __future__ import annotations

import subprocess
import sys

_REPORT = "\nimport re as _re\nprint('VMHWM_KB', _re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"


def peak_rss_mb(code: str, timeout: float = 600) -> tuple[int, str, float]:
    """Run `code` with `python -c`; its exit status, output (without the report line) and peak RSS in MB."""
    proc = subprocess.run([sys.executable, "-c", code + _REPORT], capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    lines = out.splitlines()
    peak = next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VMHWM_KB ")), float("nan"))
    return proc.returncode, "\n".join(line for line in lines if not line.startswith("VMHWM_KB ")), peak
