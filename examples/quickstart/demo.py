"""The foundation, end to end: store data and results, record lineage and audit, inspect it.

Run with ``make demo`` (or ``python examples/quickstart/demo.py [FOLDER]``). It works in a
fresh project folder (default ``.demo/quickstart``) on the embedded default: SQLite metadata
and a local content-addressed artifact store, no server. Until the tracking, registry and
closed-loop issues land, this is the most complete job Conveyor runs.
"""

from __future__ import annotations

import csv
import io
import random
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import conveyor as cv

FOLDER = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".demo") / "quickstart"


def say(text: str) -> None:
    """Print one step of the demo."""
    print(f"\n== {text}")


def make_customers(n: int = 2000, seed: int = 7) -> bytes:
    """Return a small, deterministic customer table as CSV bytes."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["customer_id", "tenure_months", "monthly_spend", "support_calls", "churned"])
    for i in range(n):
        tenure = rng.randint(1, 72)
        spend = round(rng.uniform(10, 120), 2)
        calls = rng.randint(0, 9)
        risk = 0.6 * calls / 9 + 0.4 * (1 - tenure / 72)
        writer.writerow([f"c{i:05d}", tenure, spend, calls, int(rng.random() < risk)])
    return out.getvalue().encode()


def churn_rate_by_calls(data: bytes) -> dict[str, float]:
    """Return the observed churn rate for each number of support calls."""
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    totals: dict[str, list[int]] = {}
    for row in rows:
        totals.setdefault(row["support_calls"], []).append(int(row["churned"]))
    return {
        k: round(sum(v) / len(v), 3) for k, v in sorted(totals.items(), key=lambda kv: int(kv[0]))
    }


def cli(*args: str) -> None:
    """Run the conveyor command line in the demo folder, showing the command."""
    print(f"$ conveyor {' '.join(args)}")
    subprocess.run([sys.executable, "-m", "conveyor", *args], cwd=FOLDER, check=True)


def main() -> None:
    """Run the demo."""
    shutil.rmtree(FOLDER, ignore_errors=True)
    FOLDER.mkdir(parents=True)
    say(f"A new project in {FOLDER} (conveyor init)")
    cli("init", "--project", "churn")

    ws = cv.init(FOLDER)
    data = make_customers()
    dataset = cv.ObjectRef("dataset_version", "customers@1")
    analysis = cv.ObjectRef("run", "churn-by-support-calls")
    report = cv.ObjectRef("report", "churn-drivers@1")

    say("Store the dataset and the analysis result (content-addressed, verified on read)")
    stored = ws.log_artifact(data, dataset, "customers.csv")
    again = ws.log_artifact(data, cv.ObjectRef("dataset_version", "customers-copy@1"), "c.csv")
    print(f"customers.csv: {stored.size:,} bytes, sha256 {stored.digest[:16]}...")
    print(f"stored once: a second name for the same bytes shares digest {again.digest[:16]}...")
    rates = churn_rate_by_calls(data)
    ws.log_artifact(repr(rates).encode(), report, "churn_by_support_calls.txt")
    print(f"churn rate by support calls: {rates}")

    say("Record where things came from (lineage and audit commit in one transaction)")
    with ws.metadata.transaction(project_id=ws.project.id) as uow:
        uow.link(dataset, analysis, "used_by")
        uow.link(analysis, report, "produced")
        uow.audit("report.create", report, after={"rates": rates})

    say("What did the report come from?")
    cli("lineage", str(report), "--upstream")
    say("What came from the dataset?")
    cli("lineage", str(dataset), "--downstream")

    say("Who changed what (the audit log)")
    cli("audit", "--limit", "6")

    say("Integrity: every read is checked against the digest")
    with ws.open_artifact(dataset, "customers.csv") as f:
        assert f.read() == data
    print("customers.csv read back and verified")

    say("Garbage collection: unreferenced bytes go, referenced ones stay")
    orphan = ws.artifacts.put(b"scratch bytes nobody recorded")
    gc = ws.gc(grace=timedelta(0))
    print(
        f"deleted {len(gc.deleted)} unreferenced object(s) ({gc.bytes_freed} bytes); "
        f"orphan gone: {not ws.artifacts.exists(orphan.digest)}; "
        f"dataset kept: {ws.artifacts.exists(stored.digest)}"
    )

    say("The project at a glance")
    cli("info")
    ws.close()
    print(
        "\nDone. This demo ran Conveyor's foundation on the embedded default: a SQLite "
        "metadata store with migrations, a content-addressed artifact store, lineage, "
        f"audit and gc. Explore it yourself: cd {FOLDER} && conveyor --help"
    )


if __name__ == "__main__":
    main()
