"""Run every benchmark in bench/ with its defaults, one after the other (`make bench`).

    .venv/bin/python bench/run_all.py

Each `bench/*.py` script except this one (and helpers whose name starts with "_") runs with
the same Python, from the repository root; its output goes straight to the terminal. Exits
non-zero when any benchmark fails, after running them all.
"""

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def benchmarks() -> list[Path]:
    me = Path(__file__).resolve()
    return [
        path
        for path in sorted(BENCH.glob("*.py"))
        if path.resolve() != me and not path.name.startswith("_")
    ]


def main() -> int:
    scripts = benchmarks()
    if not scripts:
        print("run_all: no benchmark in bench/")
        return 0
    failed = []
    for script in scripts:
        name = script.relative_to(ROOT)
        print(f"=== {name}", flush=True)
        started = time.monotonic()
        returncode = subprocess.run([sys.executable, str(script)], cwd=ROOT, check=False).returncode
        elapsed = time.monotonic() - started
        status = "ok" if returncode == 0 else f"FAILED (exit {returncode})"
        print(f"=== {name}: {status} in {elapsed:.0f} s", flush=True)
        if returncode != 0:
            failed.append(str(name))
    print(f"run_all: {len(scripts) - len(failed)}/{len(scripts)} benchmarks ok", end="")
    print(f"; failed: {', '.join(failed)}" if failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
