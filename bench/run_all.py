"""Run every benchmark in bench/ with its defaults, one after the other (`make bench`).

    .venv/bin/python bench/run_all.py

Each `bench/*.py` script except this one (and helpers whose name starts with "_") runs with
the same Python, from the repository root; its output goes straight to the terminal. Exits
non-zero when any benchmark fails, after running them all. A script listed in ARGUMENTS gets
those arguments instead of its defaults.
"""

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Arguments for `make bench`, where a script's defaults would take too long.
ARGUMENTS = {
    # 100k members: about 1 minute of seeding, then the chain. Its default, 1M members (the
    # figure the README quotes), seeds for about 10 minutes and runs the chain for much longer.
    "nightly_members.py": ["--members", "100000"],
}


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
        print(f"=== {name} {' '.join(ARGUMENTS.get(script.name, []))}".rstrip(), flush=True)
        started = time.monotonic()
        command = [sys.executable, str(script), *ARGUMENTS.get(script.name, [])]
        returncode = subprocess.run(command, cwd=ROOT, check=False).returncode
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
