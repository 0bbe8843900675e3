"""Run every benchmark (or those named on the command line) and list where results went."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time

import benchmarks
from benchmarks.common import RESULTS


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in argv] or names
    failed = []
    for name in wanted:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            result = importlib.import_module(f"benchmarks.{name}").main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"!! {name} failed: {exc!r}", flush=True)
            failed.append(name)
            continue
        print(json.dumps(result, indent=2, default=str)[:4000])
        print(f"-- {name} took {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"results in {RESULTS.resolve()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
