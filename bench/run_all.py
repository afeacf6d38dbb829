"""Run every benchmark script in bench/ (this one excepted), passing the extra arguments on."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """Return the benchmark scripts to run, sorted by name."""
    return sorted(
        p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    """Run each script with this interpreter; return 1 if any of them failed."""
    failed = []
    for script in scripts():
        print(f"[run_all] {script.name} {' '.join(argv)}".rstrip(), file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        code = subprocess.run([sys.executable, str(script), *argv], check=False).returncode
        took = time.perf_counter() - t0
        print(f"[run_all] {script.name} exited {code} after {took:.0f} s", file=sys.stderr)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"[run_all] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
