"""A team server as a team uses it: an administrator adds users and tokens from the CLI, an
editor logs runs and artifacts through it, the audit names who did what; tokens revoke."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server needs conveyor-mlops[server]")

from conveyor.testing.team import TeamServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    # Tests here make a user and a token or two each: more than 20 a minute from one address.
    with TeamServer(
        tmp_path_factory.mktemp("server"),
        auth_attempts=1000,
        pipelines="ct_flow,remote_flow,gone_flow",
    ) as running:
        yield running


def cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        env={**base, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def python(cwd: Path, env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_no_auth_is_refused_off_localhost(tmp_path: Path) -> None:
    result = cli(tmp_path, {}, "server", "--no-auth", "--host", "0.0.0.0")
    assert result.returncode == 1
    assert "--no-auth" in result.stderr
    assert "127.0.0.1" in result.stderr


def test_a_busy_or_impossible_port_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    import socket

    assert cli(tmp_path, {}, "init", "--project", "busy").returncode == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = cli(tmp_path, {}, "server", "--host", "127.0.0.1", "--port", str(port))
    assert taken.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in taken.stderr
    assert "cvt_" not in taken.stderr  # no administrator was made (and its token lost)
    beyond = cli(tmp_path, {}, "server", "--port", "99999")
    assert beyond.returncode == 2
    assert "99999" in beyond.stderr


def test_the_first_start_prints_an_administrator_token_once(server: TeamServer) -> None:
    assert server.admin_token.startswith("cvt_")
    assert server.log().count(server.admin_token) == 1


def test_an_admin_manages_users_and_tokens_and_an_editor_works_remotely(
    server: TeamServer, tmp_path: Path
) -> None:
    admin = server.client_env(server.admin_token, project="churn")
    assert cli(tmp_path, admin, "projects", "create", "churn").returncode == 0
    assert cli(tmp_path, admin, "users", "add", "ana").returncode == 0
    assert cli(tmp_path, admin, "users", "grant", "ana", "editor", "-p", "churn").returncode == 0
    created = cli(tmp_path, admin, "tokens", "create", "ana", "--name", "laptop")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("cvt_")
    listed = cli(tmp_path, admin, "tokens", "list", "--user", "ana", "--json")
    (info,) = json.loads(listed.stdout)
    assert info["name"] == "laptop"
    assert token not in listed.stdout

    ana = server.client_env(token, project="churn")
    logged = python(
        tmp_path,
        ana,
        "import conveyor as cv\n"
        "with cv.start_run('exp', name='first') as run:\n"
        "    cv.log_params({'lr': 0.1})\n"
        "    for i in range(500): cv.log_metric('loss', 1 / (i + 1))\n"
        "print(run.id)\n",
    )
    assert logged.returncode == 0, logged.stderr
    run_id = logged.stdout.strip()
    shown = json.loads(cli(tmp_path, ana, "runs", "show", run_id, "--json").stdout)
    assert shown["user"] == "ana"
    assert shown["params"] == {"lr": "0.1"}

    refused = cli(tmp_path, ana, "audit")
    assert refused.returncode == 1
    assert "needs admin" in refused.stderr
    audit = cli(tmp_path, admin, "audit", "--object", f"run:{run_id}")
    assert "ana" in audit.stdout
    assert "run.create" in audit.stdout
    assert "from 127.0.0.1" in audit.stdout
    events = json.loads(cli(tmp_path, admin, "audit", "--object", f"run:{run_id}", "--json").stdout)
    created = next(e for e in events if e["action"] == "run.create")
    assert (created["actor"], created["object"]) == ("ana", f"run:{run_id}")
    assert created["token_id"] == info["id"]

    revoked = cli(tmp_path, admin, "tokens", "revoke", info["id"])
    assert revoked.returncode == 0
    after = cli(tmp_path, ana, "runs", "list")
    assert after.returncode == 1
    assert "revoked" in after.stderr


def test_tokens_revoke_takes_a_unique_start_of_an_id(server: TeamServer, tmp_path: Path) -> None:
    admin = server.client_env(server.admin_token, project="revoking")
    assert cli(tmp_path, admin, "users", "add", "rex").returncode == 0
    secrets = [
        cli(tmp_path, admin, "tokens", "create", "rex", "--name", n).stdout.strip()
        for n in ("laptop", "ci")
    ]
    rex = server.client_env(secrets[0], project="revoking")
    listed = json.loads(cli(tmp_path, rex, "tokens", "list", "--json").stdout)
    ci, laptop = sorted(listed, key=lambda t: t["name"])
    shared = next(i for i, (a, b) in enumerate(zip(ci["id"], laptop["id"], strict=True)) if a != b)
    common = ci["id"][:shared]

    short = cli(tmp_path, rex, "tokens", "revoke", ci["id"][:5])
    assert (short.returncode, "at least 6 characters" in short.stderr) == (1, True), short.stderr
    none = cli(tmp_path, rex, "tokens", "revoke", "ZZZZZZZ")  # ULIDs of this era start 0-7
    assert (none.returncode, "No token id starts with 'ZZZZZZZ'" in none.stderr) == (1, True)
    both = cli(tmp_path, rex, "tokens", "revoke", common)
    if len(common) >= 6:  # ids made a second apart share their first 6-8 characters
        assert both.returncode == 1
        assert f"{ci['id']} (rex, 'ci')" in both.stderr
        assert f"{laptop['id']} (rex, 'laptop')" in both.stderr
    unique = ci["id"][: max(6, len(common) + 1)]
    done = cli(tmp_path, rex, "tokens", "revoke", unique.lower())
    assert done.returncode == 0, done.stderr
    assert f"Revoked token {ci['id']}." in done.stdout
    for output in (short, none, both, done):
        assert not any(secret in output.stdout + output.stderr for secret in secrets)
    states = {
        t["name"]: t["revoked_at"] for t in server.api("GET", "/api/v1/tokens?user=rex")["tokens"]
    }
    assert (states["ci"] is not None, states["laptop"]) == (True, None)


def test_info_shows_a_clients_settings_through_the_server(
    server: TeamServer, tmp_path: Path
) -> None:
    admin = server.client_env(server.admin_token, project="churn")
    cli(tmp_path, admin, "projects", "create", "churn")
    shown = cli(tmp_path, admin, "info", "--json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["project"] == "churn"
    assert info["counts"] is None  # the server's store is not this client's to count
    assert "log_uri" in info
    assert server.admin_token not in shown.stdout


def test_a_token_lifetime_must_be_positive_and_an_expired_token_is_listed_so(
    server: TeamServer, tmp_path: Path
) -> None:
    admin = server.client_env(server.admin_token, project="churn")
    assert cli(tmp_path, admin, "users", "add", "tim").returncode == 0
    zero = cli(tmp_path, admin, "tokens", "create", "tim", "--expires-in", "0s")
    assert zero.returncode == 1
    assert "positive lifetime" in zero.stderr
    assert (
        json.loads(cli(tmp_path, admin, "tokens", "list", "--user", "tim", "--json").stdout) == []
    )
    short = cli(tmp_path, admin, "tokens", "create", "tim", "--expires-in", "1s")
    assert short.returncode == 0, short.stderr
    deadline = time.monotonic() + 10
    while "expired" not in (
        listed := cli(tmp_path, admin, "tokens", "list", "--user", "tim").stdout
    ):
        assert time.monotonic() < deadline, listed
    assert "active" not in listed


def test_non_finite_metrics_round_trip_through_the_server(
    server: TeamServer, tmp_path: Path
) -> None:
    admin = server.client_env(server.admin_token, project="edge")
    assert cli(tmp_path, admin, "projects", "create", "edge").returncode == 0
    read = python(
        tmp_path,
        admin,
        "import conveyor as cv\n"
        "with cv.start_run('e') as run:\n"
        "    cv.log_metrics({'up': float('inf'), 'down': float('-inf'), 'gone': float('nan')})\n"
        "found = cv.search_runs('e')\n"
        "print(found['metrics.up'][0], found['metrics.down'][0], found['metrics.gone'][0])\n"
        "print(cv.get_metric_history(run.id, 'up')[0].value)\n",
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["inf", "-inf", "nan", "inf"]
    listed = cli(tmp_path, admin, "runs", "list", "-e", "e")
    assert listed.returncode == 0, listed.stderr
    assert "inf" in listed.stdout


def test_a_large_artifact_round_trips_without_being_held_in_memory(
    server: TeamServer, tmp_path: Path
) -> None:
    token = server.token_for("big", project="bigfiles", role="editor")
    env = server.client_env(token, project="bigfiles")
    size_mb = 160
    code = f"""
import hashlib, os, resource
import conveyor as cv
path = "blob.bin"
with open(path, "wb") as f:
    for i in range({size_mb}):
        f.write(os.urandom(1 << 20))
with cv.start_run("files") as run:
    pass
ws = cv.workspace()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ws.log_artifact(path, run.ref, "data/blob.bin")
digest = hashlib.sha256()
with ws.open_artifact(run.ref, "data/blob.bin") as f:
    while chunk := f.read(1 << 20):
        digest.update(chunk)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
expected = hashlib.sha256(open(path, "rb").read()).hexdigest()
print(digest.hexdigest() == expected, (peak - base) // 1024)
"""
    before = _server_peak_mb(server)
    result = python(tmp_path, env, code)
    assert result.returncode == 0, result.stderr
    same, grew_mb = result.stdout.split()
    assert same == "True"
    assert int(grew_mb) < size_mb // 3, f"the client grew {grew_mb} MB for a {size_mb} MB file"
    assert _server_peak_mb(server) - before < size_mb // 3


def _server_peak_mb(server: TeamServer) -> int:
    assert server._proc is not None
    status = Path(f"/proc/{server._proc.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) // 1024


def test_digest_header_matches_content(server: TeamServer, tmp_path: Path) -> None:
    token = server.token_for("dig", project="digests", role="editor")
    env = server.client_env(token, project="digests")
    code = (
        "import conveyor as cv\n"
        "with cv.start_run('e') as run:\n"
        "    cv.log_text('hello', 'a.txt')\n"
        "print(run.id)\n"
    )
    run_id = python(tmp_path, env, code).stdout.strip()
    import httpx

    response = httpx.get(
        f"{server.url}/api/v1/projects/digests/artifacts/run/{run_id}/a.txt",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.content == b"hello"
    assert response.headers["x-conveyor-digest"] == (
        "sha256:" + hashlib.sha256(b"hello").hexdigest()
    )


def test_the_server_guide_example_runs_through_a_server(server: TeamServer, tmp_path: Path) -> None:
    import re

    guide = (Path(__file__).parents[2] / "docs" / "server.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", guide, flags=re.DOTALL)
    token = server.token_for("guide", project="guide", role="editor")
    env = server.client_env(token, project="guide")
    result = python(tmp_path, env, block + "\nprint(len(best), best['metrics.loss'].min())\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "0.001"]


TRAIN_TWO = """
import conveyor as cv
from sklearn.linear_model import LogisticRegression
from tests.suites.serving import training_data
X, y = training_data()
for c in (1.0, 0.5):
    with cv.start_run("train") as run:
        version = cv.models.log(LogisticRegression(C=c).fit(X, y), "churn", input_example=X[:5])
print(version.ref, run.id, version.run_id)
"""


def test_the_registry_works_through_the_server(server: TeamServer, tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    project = "registry"
    editor = server.client_env(server.token_for("eve", project=project), project=project)
    approver = server.client_env(
        server.token_for("abe", project=project, role="approver"), project=project
    )
    viewer = server.client_env(
        server.token_for("vic", project=project, role="viewer"), project=project
    )
    repo = str(Path(__file__).parents[2])
    trained = python(tmp_path, {**editor, "PYTHONPATH": repo}, TRAIN_TWO)
    assert trained.returncode == 0, trained.stderr
    ref, run_id, version_run = trained.stdout.split()
    assert ref == "churn/2"
    assert version_run == run_id  # the version names the run that logged it

    listed = cli(tmp_path, viewer, "models", "list")
    assert "churn" in listed.stdout
    assert cli(tmp_path, approver, "models", "protect", "churn", "champion").returncode == 1
    admin = server.client_env(server.admin_token, project=project)
    assert cli(tmp_path, admin, "models", "protect", "churn", "champion").returncode == 0
    moved = cli(tmp_path, editor, "models", "alias", "churn", "champion", "2")
    assert moved.returncode == 1
    assert "protected" in moved.stderr
    asked = python(
        tmp_path,
        editor,
        "import conveyor as cv\n"
        "r = cv.models.request_promotion('churn/2', 'champion')\n"
        "print(r.id, r.status)\n",
    )
    assert asked.returncode == 0, asked.stderr
    request_id, status = asked.stdout.split()
    assert status == "pending"
    assert cli(tmp_path, viewer, "models", "approve", request_id).returncode == 1
    approved = cli(tmp_path, approver, "models", "approve", request_id)
    assert approved.returncode == 0, approved.stderr

    loaded = python(
        tmp_path,
        {**viewer, "PYTHONPATH": repo},
        "import conveyor as cv\n"
        "from tests.suites.serving import training_data\n"
        "m = cv.models.load('churn@champion')\n"
        "print(m.version.ref, len(m.predict(training_data()[0][:4])))\n",
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["churn/2", "4"]
    history = cli(tmp_path, viewer, "models", "history", "churn")
    assert "abe" in history.stdout  # the approver moved it

    evaluated = python(tmp_path, {**editor, "PYTHONPATH": repo}, EVALUATE)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.split() == ["<frame>", "classification", "200", "eve"]
    listed = python(
        tmp_path,
        viewer,
        "import conveyor as cv\n"
        "print(*[(e.rows, e.created_by) for e in cv.models.evaluations('churn/2')])\n",
    )
    assert listed.stdout.strip() == "(200, 'eve')", listed.stderr
    card = cli(tmp_path, viewer, "models", "card", "churn/2")
    assert card.returncode == 0, card.stderr
    assert "churn/2" in card.stdout
    assert "accuracy" in card.stdout  # the card shows the evaluation recorded remotely
    compared = cli(tmp_path, viewer, "models", "compare", "churn/1", "churn/2", "--json")
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout)["b"]["ref"] == "churn/2"
    assert python(tmp_path, viewer, EVALUATE).returncode == 1  # recording one is an edit

    again = python(
        tmp_path,
        editor,
        "import conveyor as cv\n"
        "r = cv.models.request_promotion('churn/1', 'challenger')\n"
        "print(cv.models.withdraw(r.id).status)\n",
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "withdrawn"

    scored = python(
        tmp_path,
        {**editor, "PYTHONPATH": repo},
        "import conveyor as cv\n"
        "with cv.start_run('score') as run:\n"
        "    cv.models.load('churn@champion')\n"
        "print(run.id)\n",
    )
    assert scored.returncode == 0, scored.stderr
    upstream = cli(tmp_path, viewer, "lineage", f"run:{scored.stdout.strip()}")
    assert "model_version" in upstream.stdout
    assert "used_by" in upstream.stdout


EVALUATE = """
import conveyor as cv
from tests.suites.serving import training_data
X, y = training_data()
e = cv.models.evaluate("churn/2", X.assign(churned=y), target="churned", importance=False)
print(e.dataset, e.task, e.rows, e.created_by)
"""


ADD_DATA = """
import os
import shutil
import pandas as pd
import conveyor as cv
frame = pd.DataFrame({"age": range(50), "plan": ["basic", "pro"] * 25})
with cv.start_run("prep") as run:
    table = cv.data.add("customers", frame)
os.makedirs("photos/cats", exist_ok=True)
with open("photos/cats/a.txt", "w") as f:
    f.write("meow")
with open("photos/readme.md", "w") as f:
    f.write("# photos")
files = cv.data.add("photos", "photos")
with cv.start_run("train") as used:
    back = cv.data.load("customers@latest")
shown = (table.ref, table.kind, table.rows, files.ref, files.files, back.equals(frame))
print(*shown, run.id, used.id)
"""


def test_dataset_versions_work_through_the_server(server: TeamServer, tmp_path: Path) -> None:
    project = "datasets"
    editor = server.client_env(server.token_for("dee", project=project), project=project)
    viewer = server.client_env(
        server.token_for("val", project=project, role="viewer"), project=project
    )
    added = python(tmp_path, editor, ADD_DATA)
    assert added.returncode == 0, added.stderr
    *shown, run_id, used_id = added.stdout.split()
    assert shown == ["customers@1", "table", "50", "photos@1", "2", "True"]
    listed = cli(tmp_path, viewer, "data", "list")
    assert "customers" in listed.stdout
    assert "photos" in listed.stdout
    lineage = cli(tmp_path, viewer, "lineage", f"run:{run_id}", "--downstream")
    assert "dataset_version" in lineage.stdout
    read = cli(tmp_path, viewer, "lineage", f"run:{used_id}")  # upstream: what it read
    assert "dataset_version" in read.stdout
    assert "used_by" in read.stdout
    refused = python(
        tmp_path,
        viewer,
        "import conveyor as cv, pandas as pd\ncv.data.add('x', pd.DataFrame({'a': [1]}))\n",
    )
    assert refused.returncode == 1
    assert "needs editor" in refused.stderr


def test_diff_checkout_schemas_and_validation_work_through_the_server(
    server: TeamServer, tmp_path: Path
) -> None:
    project = "checks"
    editor = server.client_env(server.token_for("cleo", project=project), project=project)
    viewer = server.client_env(
        server.token_for("vic", project=project, role="viewer"), project=project
    )
    src = tmp_path / "src"
    src.mkdir()
    first = "id,spend\n" + "".join(f"{i},{i % 7}.5\n" for i in range(40))
    (src / "spend.csv").write_text(first)
    assert cli(tmp_path, editor, "data", "add", "spend", str(src)).returncode == 0
    (src / "spend.csv").write_text(first.replace("\n5,5.5\n", "\n5,900.0\n"))  # out of range
    assert cli(tmp_path, editor, "data", "add", "spend", str(src)).returncode == 0

    diff = cli(tmp_path, viewer, "data", "diff", "spend@1", "spend@2", "--json")
    assert diff.returncode == 0, diff.stderr
    assert json.loads(diff.stdout)["changed"] == ["spend.csv"]
    out = cli(tmp_path, viewer, "data", "checkout", "spend@1", str(tmp_path / "v1"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "v1" / "spend.csv").read_text() == first
    refused = cli(tmp_path, viewer, "data", "schema", "spend@1", "--infer")
    assert refused.returncode == 1  # saving a schema is an edit
    assert "needs editor" in refused.stderr
    inferred = cli(tmp_path, editor, "data", "schema", "spend@1", "--infer")
    assert inferred.returncode == 0, inferred.stderr
    assert "spend" in cli(tmp_path, viewer, "data", "schema", "spend@1").stdout
    assert cli(tmp_path, viewer, "data", "validate", "spend@1").returncode == 0
    failed = cli(tmp_path, viewer, "data", "validate", "spend@2", "--json")
    assert failed.returncode == 1
    assert {f["column"] for f in json.loads(failed.stdout)["failures"]} == {"spend"}


LARGE_TABLE = """
import hashlib, os
import pyarrow as pa, pyarrow.parquet as pq
import conveyor as cv
blob = os.urandom(72 * 2**20)  # one value, so the Parquet file is stored in chunks
pq.write_table(pa.table({"blob": [blob]}), "blob.parquet", compression="none")
v = cv.data.add("blobs", "blob.parquet")
back = cv.data.load("blobs@1")
out = cv.data.checkout("blobs@1", "restored")
same = (out / "blob.parquet").read_bytes() == open("blob.parquet", "rb").read()
print(v.ref, v.kind, back["blob"][0] == blob, same)
"""


def test_a_table_stored_in_chunks_loads_through_the_server(
    server: TeamServer, tmp_path: Path
) -> None:
    project = "chunks"
    editor = server.client_env(server.token_for("chuck", project=project), project=project)
    done = python(tmp_path, editor, LARGE_TABLE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["blobs@1", "table", "True", "True"]


def test_alerts_are_listed_and_closed_through_the_server(
    server: TeamServer, tmp_path: Path
) -> None:
    from conveyor.store.metadata.store import MetadataStore
    from tests.suites.seed import open_alert

    project = "watching"
    editor = server.client_env(server.token_for("otto", project=project), project=project)
    with MetadataStore(f"sqlite:///{server.root / '.conveyor' / 'conveyor.db'}") as store:
        project_id = store.get_project(project).id
        with store.transaction() as uow:
            open_alert(uow, project_id, "ALERT1", monitor="prod-watch", deployment="prod")
    listed = cli(tmp_path, editor, "alerts", "list")
    assert listed.returncode == 0, listed.stderr
    assert "ALERT1" in listed.stdout
    assert "prod-watch" in listed.stdout
    assert cli(tmp_path, editor, "monitor", "list").returncode == 0
    assert cli(tmp_path, editor, "alerts", "resolve", "ALERT1").returncode == 0
    after = json.loads(cli(tmp_path, editor, "alerts", "list", "--json").stdout)
    assert [a["status"] for a in after] == ["resolved"]


def test_pipeline_runs_logs_and_schedules_are_read_through_the_server(
    server: TeamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conveyor as cv
    from tests.fixtures import flows

    project = "pipes"
    editor = server.client_env(server.token_for("pia", project=project), project=project)
    viewer = server.client_env(
        server.token_for("val", project=project, role="viewer"), project=project
    )
    monkeypatch.chdir(tmp_path)  # where the flow looks for its fail-total file
    (tmp_path / "fail-total").touch()
    ws = cv.Workspace.from_settings(server.root, project=project)  # where the store is
    try:
        with pytest.raises(cv.PipelineFailed) as caught:
            flows.numbers.run(executor="inline", n=3, workspace=ws)
        cv.pipelines.schedule(flows.numbers, cron="0 3 * * *", name="nightly", workspace=ws)
    finally:
        ws.close()
    run_id = caught.value.run.id

    listed = cli(tmp_path, viewer, "pipeline", "list")
    assert listed.returncode == 0, listed.stderr
    assert run_id[-8:] in listed.stdout
    assert "FAILED" in listed.stdout
    shown = cli(tmp_path, viewer, "pipeline", "show", run_id[-8:])
    assert "✗ total" in shown.stdout, shown.stderr
    logged = cli(tmp_path, viewer, "pipeline", "logs", run_id[-8:], "total")
    assert logged.stdout.startswith("adding up 3 values\nabout to fail\n"), logged.stderr
    assert "nightly" in cli(tmp_path, viewer, "schedule", "list").stdout

    read = python(
        tmp_path,
        viewer,
        "import conveyor as cv\n"
        f"run = cv.pipelines.get_run({run_id!r})\n"
        "print(run.status, run.step('scale').status, run.step('scale').duration is not None)\n"
        "try:\n"
        "    run.outputs['scale']\n"
        "except cv.ConveyorError as e:\n"
        "    print(type(e).__name__)\n",
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["FAILED", "SUCCEEDED", "True", "InvalidArgumentError"]

    refused = cli(tmp_path, viewer, "pipeline", "cancel", run_id[-8:])
    assert refused.returncode == 1
    assert "editor" in refused.stderr  # a viewer may not cancel
    finished = cli(tmp_path, editor, "pipeline", "cancel", run_id[-8:])
    assert finished.returncode == 1
    assert "nothing to cancel" in finished.stderr
    shutil.copyfile(Path(flows.__file__), tmp_path / "flows.py")
    started = cli(tmp_path, editor, "pipeline", "run", "flows.py:numbers")
    assert started.returncode == 1
    assert "is defined in a file" in started.stderr  # the server runs installed packages
    assert "Running" not in started.stderr  # refused before saying it runs
    missing = cli(tmp_path, editor, "pipeline", "run", "not_installed.flows:numbers")
    assert missing.returncode == 1
    assert "--pipelines" in missing.stderr
    resumed = cli(tmp_path, editor, "pipeline", "resume", run_id[-8:])
    assert resumed.returncode == 1
    assert "is not in a package this server runs pipelines from" in resumed.stderr


def test_feature_views_are_read_through_the_server(
    server: TeamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    import conveyor as cv
    from conveyor.features import Entity, FeatureView, Field, ParquetSource
    from conveyor.features.service import feature_service

    project = "feats"
    viewer = server.client_env(
        server.token_for("fay", project=project, role="viewer"), project=project
    )
    editor = server.client_env(server.token_for("fez", project=project), project=project)
    day = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)]
    rows = {
        "customer_id": [1, 1, 2],
        "event_ts": day,
        "spend": [1.0, 2.0, 3.0],
        "visits": [4, 5, 6],
    }
    pd.DataFrame(rows).to_parquet(tmp_path / "rows.parquet")  # where the server reads it
    customer = Entity("customer", key="customer_id")
    view = FeatureView(
        name="activity",
        entities=[customer],
        source=ParquetSource(str(tmp_path / "rows.parquet")),
        features=[Field("spend", "float64")],
        ttl="7d",
    )
    ws = cv.Workspace.from_settings(server.root, project=project)  # where the store is
    try:
        feature_service(ws).apply([customer, view])
    finally:
        ws.close()

    listed = cli(tmp_path, viewer, "features", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [v["name"] for v in json.loads(listed.stdout)] == ["activity"]
    shown = cli(tmp_path, viewer, "features", "show", "activity")
    assert shown.returncode == 0, shown.stderr
    assert "activity (view) v1" in shown.stdout
    assert " fay" not in shown.stdout  # the version names who applied it: not the viewer

    end = ("--end", "2026-01-04T00:00:00")
    refused = cli(tmp_path, viewer, "features", "materialize", *end)
    assert refused.returncode == 1
    assert "editor" in refused.stderr  # an edit
    done = cli(tmp_path, editor, "features", "materialize", *end)
    assert done.returncode == 0, done.stderr
    assert "activity: 2 rows written" in done.stdout  # from the server's own source
    admin = server.client_env(server.admin_token, project=project)
    audit = cli(tmp_path, admin, "audit", "--actor", "fez")
    assert "feature_view.materialize" in audit.stdout, audit.stderr  # the caller, recorded
    online = cli(tmp_path, viewer, "features", "online", "-e", "customer_id=1", "-f", "spend")
    assert online.returncode == 0, online.stderr
    assert json.loads(online.stdout)["spend"] == 2.0
    pd.DataFrame({"customer_id": [1], "event_timestamp": day[2:]}).to_parquet(
        tmp_path / "e.parquet"
    )
    historical = cli(
        tmp_path, viewer, "features", "historical", "e.parquet", "-f", "spend", "-o", "t.parquet"
    )
    assert historical.returncode == 0, historical.stderr
    assert pd.read_parquet(tmp_path / "t.parquet")["spend"].tolist() == [2.0]  # as of day 3

    wider = FeatureView(  # a new version, applied where the store is, while the server runs
        name="activity",
        entities=[customer],
        source=ParquetSource(str(tmp_path / "rows.parquet")),
        features=[Field("spend", "float64"), Field("visits", "int64")],
        ttl="7d",
    )
    ws = cv.Workspace.from_settings(server.root, project=project)
    try:
        feature_service(ws).apply([customer, wider])
    finally:
        ws.close()
    again = cli(tmp_path, editor, "features", "materialize", "--end", "2026-01-05T00:00:00")
    assert again.returncode == 0, again.stderr
    visits = cli(tmp_path, viewer, "features", "online", "-e", "customer_id=1", "-f", "visits")
    assert visits.returncode == 0, visits.stderr
    assert json.loads(visits.stdout)["visits"] == 5  # the server read the new definition

    # A timestamp feature comes back through the server as a datetime, as embedded reads
    # give it (JSON carries it as text), and so do the event times.
    seen = [datetime(2026, 1, 1, 5), datetime(2026, 1, 1, 6), datetime(2026, 1, 2, 7)]
    pd.DataFrame({**rows, "seen": seen}).to_parquet(tmp_path / "rows.parquet")
    timed = FeatureView(
        name="activity",
        entities=[customer],
        source=ParquetSource(str(tmp_path / "rows.parquet")),
        features=[Field("spend", "float64"), Field("seen", "timestamp")],
        ttl="7d",
    )
    ws = cv.Workspace.from_settings(server.root, project=project)
    try:
        feature_service(ws).apply([customer, timed])
    finally:
        ws.close()
    again = cli(tmp_path, editor, "features", "materialize", "--end", "2026-01-06T00:00:00")
    assert again.returncode == 0, again.stderr
    monkeypatch.setenv("CONVEYOR_TOKEN", server.token_for("fay", project=project, role="viewer"))
    remote = cv.Workspace.from_settings(tmp_path, project=project, store_uri=server.url)
    try:
        found = feature_service(remote).online(
            {"customer_id": [1, 3]}, ["seen", "spend"], with_timestamps=True
        )
    finally:
        remote.close()
    assert found["seen"] == [seen[1], None]
    assert found["spend"] == [2.0, None]
    assert found["activity__event_ts"][0] == day[1]


def test_feature_definitions_apply_and_training_sets_build_through_the_server(
    server: TeamServer, tmp_path: Path
) -> None:
    import pandas as pd

    project = "feats-remote"
    editor = server.client_env(server.token_for("fia", project=project), project=project)
    viewer = server.client_env(
        server.token_for("fib", project=project, role="viewer"), project=project
    )
    day = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)]
    pd.DataFrame({"customer_id": [1, 1, 2], "event_ts": day, "spend": [1.0, 2.0, 3.0]}).to_parquet(
        tmp_path / "rows.parquet"
    )
    added = cli(tmp_path, editor, "data", "add", "spend-rows", "rows.parquet")
    assert added.returncode == 0, added.stderr
    (tmp_path / "defs.py").write_text(
        "from conveyor.features import DatasetSource, Entity, FeatureView, Field\n"
        "customer = Entity('customer', key='customer_id')\n"
        "spend = FeatureView(name='spend', entities=[customer],\n"
        "    source=DatasetSource('spend-rows@latest'), features=[Field('spend')], ttl='7d')\n"
    )
    refused = cli(tmp_path, viewer, "features", "apply", "defs.py")
    assert refused.returncode == 1
    assert "editor" in refused.stderr
    applied = cli(tmp_path, editor, "features", "apply", "defs.py")
    assert applied.returncode == 0, applied.stderr
    assert "view      spend v1 (new version)" in applied.stdout
    again = cli(tmp_path, editor, "features", "apply", "defs.py")
    assert "spend v1 (unchanged)" in again.stdout, again.stderr
    shown = cli(tmp_path, viewer, "features", "show", "spend")
    assert "fia" in shown.stdout, shown.stderr  # the version names who applied it
    admin = server.client_env(server.admin_token, project=project)
    audit = cli(tmp_path, admin, "audit", "--actor", "fia")
    assert "feature_entity.create" in audit.stdout, audit.stderr  # the entity too, once
    assert audit.stdout.count("feature_entity.create") == 1

    entities = pd.DataFrame(
        {"customer_id": [2, 1, 1], "event_timestamp": [day[2], day[0], day[2]]},
        index=[10, 20, 30],
    )
    code = (
        "import pandas as pd, conveyor as cv\n"
        "from conveyor.features.service import feature_service\n"
        f"e = pd.read_parquet({str(tmp_path / 'e.parquet')!r})\n"
        "t = feature_service().historical(e, ['spend'])\n"
        "print(t.index.tolist(), t['spend'].tolist())\n"
    )
    entities.to_parquet(tmp_path / "e.parquet")
    joined = python(tmp_path, viewer, code)
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.split("\n")[0] == "[10, 20, 30] [3.0, 1.0, 2.0]"  # order and index kept

    (tmp_path / "paths.py").write_text(
        "from conveyor.features import Entity, FeatureView, Field, ParquetSource\n"
        "c = Entity('customer', key='customer_id')\n"
        "v = FeatureView(name='files', entities=[c], source=ParquetSource('/etc/x.parquet'),\n"
        "    features=[Field('spend')])\n"
    )
    by_path = cli(tmp_path, editor, "features", "apply", "paths.py")
    assert by_path.returncode == 1
    assert "DatasetSource" in by_path.stderr  # nothing the server would read with its rights
    listed = cli(tmp_path, viewer, "features", "list", "--json")
    assert [v["name"] for v in json.loads(listed.stdout)] == ["spend"], listed.stderr


REMOTE_FLOW = """
import conveyor as cv


@cv.step
def double(x: int) -> int:
    print(f"doubling {x}")
    return 2 * x


@cv.step
def check(y: int) -> int:
    if y > 100:
        raise ValueError(f"{y} is too big")
    return y


@cv.pipeline(name="remote-flow")
def train(x: int = 3) -> None:
    check(double(x))


@cv.step
def unprotect(name: str) -> str:
    cv.models.require_approval(name, [])  # project admins only
    return name


@cv.pipeline(name="unguard")
def unguard(name: str = "m") -> None:
    unprotect(name)


@cv.step
def wait(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@cv.pipeline(name="linger")
def linger(seconds: float = 300.0) -> None:
    wait(seconds)
"""


def test_an_installed_pipeline_runs_on_the_server_and_is_followed_from_here(
    server: TeamServer, tmp_path: Path
) -> None:
    project = "flows"
    editor = server.client_env(server.token_for("pia", project=project), project=project)
    viewer = server.client_env(
        server.token_for("pio", project=project, role="viewer"), project=project
    )
    (tmp_path / "remote_flow.py").write_text(REMOTE_FLOW)  # the code, here and on the host
    (server.root / "remote_flow.py").write_text(REMOTE_FLOW)
    (tmp_path / "other_flow.py").write_text(REMOTE_FLOW)  # here only, and not allowed there
    (tmp_path / "gone_flow.py").write_text(REMOTE_FLOW)  # allowed there, but not installed
    run = ("pipeline", "run", "remote_flow:train", "--executor", "inline")

    refused = cli(tmp_path, viewer, *run)
    assert refused.returncode == 1
    assert "editor" in refused.stderr
    done = cli(tmp_path, editor, "pipeline", "run", "remote_flow:train", "-p", "x=4", "--json")
    assert done.returncode == 0, done.stderr  # the default executor: worker processes
    record = json.loads(done.stdout)
    assert record["status"] == "SUCCEEDED"
    assert record["params"] == {"x": 4}
    assert re.search(r"double\s+SUCCEEDED\s+\d+\.\d\ds", done.stderr), done.stderr
    logs = cli(tmp_path, viewer, "pipeline", "logs", record["id"], "double")
    assert "doubling 4" in logs.stdout, logs.stderr

    failed = cli(tmp_path, editor, *run, "-p", "x=60", "--json")
    assert failed.returncode == 1
    assert "120 is too big" in failed.stdout + failed.stderr
    fixed = REMOTE_FLOW.replace("if y > 100:", "if y > 1000:")
    (server.root / "remote_flow.py").write_text(fixed)  # the host's code, fixed
    resumed = cli(  # without the cache: still the run's own finished steps
        tmp_path, editor, "pipeline", "resume", json.loads(failed.stdout)["id"], "--no-cache"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"double\s+CACHED\s+from \w{6}", resumed.stderr), resumed.stderr
    assert re.search(r"check\s+SUCCEEDED", resumed.stderr), resumed.stderr
    (server.root / "remote_flow.py").write_text(REMOTE_FLOW)
    code = (
        "import remote_flow\n"
        "run = remote_flow.train.run(executor='inline', x=5)\n"
        "print(run.status, run.created_by)\n"
    )
    api = python(tmp_path, editor, code)
    assert api.returncode == 0, api.stderr
    assert api.stdout.split()[:2] == ["SUCCEEDED", "pia"]  # run as the caller
    by_file = cli(tmp_path, editor, "pipeline", "run", "remote_flow.py:train")
    assert by_file.returncode == 1
    assert "defined in a file" in by_file.stderr
    other = cli(tmp_path, editor, "pipeline", "run", "other_flow:train")
    assert other.returncode == 1
    assert "not in a package this server runs pipelines from" in other.stderr
    gone = cli(tmp_path, editor, "pipeline", "run", "gone_flow:train")
    assert gone.returncode == 1
    assert "did not start: error:" in gone.stderr  # the host's reason: it cannot import it

    model = (
        "import conveyor as cv\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "cv.models.log(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), 'm')\n"
    )
    assert python(tmp_path, editor, model).returncode == 0
    denied = cli(tmp_path, editor, "pipeline", "run", "remote_flow:unguard")
    assert denied.returncode == 1  # the run acts as its editor, in its worker too
    assert "PermissionDeniedError: 'pia' may not" in denied.stderr, denied.stderr

    import pandas as pd

    pd.DataFrame({"x0": [0.5]}).to_parquet(tmp_path / "rows.parquet")
    batch = ("predict", "m/1", "--input", "rows.parquet", "--output", "p.parquet")
    as_viewer = cli(tmp_path, {**viewer, "CONVEYOR_LOG_URI": str(tmp_path / "logs")}, *batch)
    assert as_viewer.returncode == 1
    assert "needs the editor role" in as_viewer.stderr  # said before predicting anything
    assert not (tmp_path / "p.parquet").exists()


def test_a_run_the_server_started_is_cancelled_once_its_token_is_revoked(
    server: TeamServer, tmp_path: Path
) -> None:
    import time

    project = "revoked"
    token = server.token_for("rex", project=project)
    editor = server.client_env(token, project=project)
    token_id = server.api("GET", "/api/v1/whoami", token)["token_id"]
    (tmp_path / "remote_flow.py").write_text(REMOTE_FLOW)
    (server.root / "remote_flow.py").write_text(REMOTE_FLOW)
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    follower = subprocess.Popen(  # follows the run from here until it ends
        [sys.executable, "-m", "conveyor", "pipeline", "run", "remote_flow:linger"],
        cwd=tmp_path,
        env={**base, **editor},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = f"/api/v1/projects/{project}/pipeline-runs?pipeline=linger"

    def linger_run(status: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            found = server.api("GET", runs)["runs"]
            if found and found[0]["status"] == status:
                return dict(found[0])
            time.sleep(0.2)
        return None

    try:
        running = linger_run("RUNNING")
        assert running is not None, "the run did not start"
        server.api("DELETE", f"/api/v1/tokens/{token_id}")
        killed = linger_run("KILLED")  # within a few seconds, not after its 300 s step
        assert killed is not None, server.api("GET", runs)
        assert killed["id"] == running["id"]
    finally:
        follower.kill()
        follower.wait()


def test_schedules_made_through_the_server_run_as_their_maker_while_they_may_write(
    server: TeamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    import conveyor as cv
    from conveyor.pipelines.schedules import Scheduler, get_schedule, list_schedules
    from conveyor.pipelines.service import step_log

    project = "timed"
    editor = server.client_env(server.token_for("sam", project=project), project=project)
    other = server.client_env(server.token_for("sue", project=project), project=project)
    viewer = server.client_env(
        server.token_for("vic", project=project, role="viewer"), project=project
    )
    (tmp_path / "remote_flow.py").write_text(REMOTE_FLOW)  # the code, here and on the host
    (server.root / "remote_flow.py").write_text(REMOTE_FLOW)
    (tmp_path / "gone_flow.py").write_text(REMOTE_FLOW)  # allowed there, but not installed
    create = ("schedule", "create", "remote_flow:train", "--cron", "0 3 * * *")

    refused = cli(tmp_path, viewer, *create)
    assert refused.returncode == 1
    assert "editor" in refused.stderr
    made = cli(tmp_path, editor, *create, "-p", "x=4", "-e", "inline", "--name", "nightly")
    assert made.returncode == 0, made.stderr
    assert "nightly" in made.stdout
    guard = ("schedule", "create", "remote_flow:unguard", "--cron", "0 4 * * *", "-e", "inline")
    assert cli(tmp_path, editor, *guard).returncode == 0
    model = (
        "import conveyor as cv\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "cv.models.log(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), 'm')\n"
    )
    assert python(tmp_path, editor, model).returncode == 0  # what unguard would unprotect
    gone = cli(tmp_path, editor, "schedule", "create", "gone_flow:train", "--cron", "0 3 * * *")
    assert gone.returncode == 1
    assert "cannot be used" in gone.stderr  # the host's reason: it cannot import it
    by_file = cli(
        tmp_path, editor, "schedule", "create", "remote_flow.py:train", "--cron", "* * * * *"
    )
    assert by_file.returncode == 1
    assert "defined in a file" in by_file.stderr
    listed = json.loads(cli(tmp_path, viewer, "schedule", "list", "--json").stdout)
    nightly = next(s for s in listed if s["name"] == "nightly")
    assert (nightly["pipeline"], nightly["params"], nightly["created_by"]) == (
        "remote-flow",
        {"x": 4},
        "sam",
    )
    assert nightly["owner_id"]

    # The scheduler on the server's host starts the due runs, each acting as sam.
    for key in [k for k in os.environ if k.startswith("CONVEYOR_")]:
        monkeypatch.delenv(key)
    ws = cv.Workspace.from_settings(server.root, project=project)
    try:
        ended: list[Any] = []
        scheduler = Scheduler(ws, on_end=lambda found, run: ended.append(run))
        # Just past each daily schedule's next run, and before the one after: a fixed
        # 'now + 25 h' held two runs of one schedule when the tests ran in the hour before
        # its time of day.
        due = max(s.next_run_at for s in list_schedules(workspace=ws)) + timedelta(minutes=1)
        assert len(scheduler.dispatch(now=due)) == 2  # as `scheduler run` does: side by side
        deadline = time.monotonic() + 120
        while scheduler.running and time.monotonic() < deadline:
            assert scheduler.dispatch(now=due) == []
            time.sleep(0.1)
        assert scheduler.running == {}, "the runs did not end within 120 s"
        assert scheduler.errors == {}
        runs = {run.pipeline: run for run in ended}
        assert runs["remote-flow"].status == "SUCCEEDED"
        assert (runs["remote-flow"].params, runs["remote-flow"].created_by) == ({"x": 4}, "sam")
        assert runs["unguard"].status == "FAILED"  # its step acts as sam, an editor
        log = step_log(runs["unguard"].id, "unprotect", workspace=ws)
        assert "PermissionDeniedError: 'sam' may not" in log

        later = due + timedelta(days=1)
        (server.root / "remote_flow.py").write_text("raise ImportError('broken on the host')\n")
        assert scheduler.tick(now=later) == []
        assert "broken on the host" in scheduler.errors["nightly"]
        assert get_schedule("nightly", workspace=ws).next_run_at <= later  # still due
        (server.root / "remote_flow.py").write_text(REMOTE_FLOW)
        scheduler._held.clear()  # its back-off after the import failure is over

        server.token_for("sam", project=project, role="viewer")  # sam may no longer write
        assert scheduler.tick(now=later) == []
        assert "'sam', who no longer holds the editor role" in scheduler.errors["nightly"]
    finally:
        ws.close()
    deleted = cli(tmp_path, other, "schedule", "delete", "nightly")
    assert deleted.returncode == 0, deleted.stderr
    left = json.loads(cli(tmp_path, viewer, "schedule", "list", "--json").stdout)
    assert [s["name"] for s in left] == ["unguard"]


def test_models_export_and_import_from_mlflow_through_the_server(
    server: TeamServer, tmp_path: Path
) -> None:
    pytest.importorskip("skl2onnx", reason="the ONNX export needs conveyor-mlops[onnx]")
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    from tests.unit.test_models_mlflow_import import mlflow_folder

    project = "exports"
    editor = server.client_env(server.token_for("exa", project=project), project=project)
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
    mlflow_folder(tmp_path / "mlflow-model", forest, X, "skops")
    imported = cli(tmp_path, editor, "models", "import-mlflow", "mlflow-model", "--name", "rf")
    assert imported.returncode == 0, imported.stderr
    assert "as rf/1 (sklearn" in imported.stdout
    assert "with its signature" in imported.stdout
    exported = cli(
        tmp_path, editor, "models", "export", "rf/1", "-o", "rf.onnx", "--register", "rf-onnx"
    )
    assert exported.returncode == 0, exported.stderr
    assert "Registered as rf-onnx/1." in exported.stdout
    assert (tmp_path / "rf.onnx").stat().st_size > 0
    shown = cli(tmp_path, editor, "models", "show", "rf-onnx/1", "--json")
    assert json.loads(shown.stdout)["flavor"] == "onnx", shown.stderr
    from conveyor.models.service import model_service
    from conveyor.store.records import ObjectRef

    ws = cv_workspace(server, project)  # the lineage, as the server's host sees it
    try:
        models = model_service(ws)
        edges = ws.metadata.lineage(
            ObjectRef("model_version", models.get("rf/1").id), direction="downstream"
        ).edges
        assert [(e.relation, e.dst.id) for e in edges] == [
            ("exported_as", models.get("rf-onnx/1").id)
        ]
    finally:
        ws.close()


def cv_workspace(server: TeamServer, project: str) -> Any:
    """The server's own stores, as its host sees them."""
    import conveyor as cv

    return cv.Workspace.from_settings(server.root, project=project)


LOOP_SETUP = """
import numpy as np, pandas as pd
import conveyor as cv
from sklearn.linear_model import LogisticRegression

def frame(n, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": b, "label": (a + b > 0).astype(int)})

old = frame(500, 0)
cv.data.add("train", old)
cv.data.add("holdout", frame(300, 2))
cv.models.log(LogisticRegression().fit(old[["a", "b"]], 1 - old["label"]), "churn",
              input_example=old[["a", "b"]][:5])
cv.models.set_alias("churn", "champion", 1)
cv.serving.deployments().create("prod", "churn@champion")
"""


def test_loop_policies_are_applied_and_triggered_through_the_server(
    server: TeamServer, tmp_path: Path
) -> None:
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    project = "loop-remote"
    approver = server.client_env(
        server.token_for("lia", project=project, role="approver"), project=project
    )
    editor = server.client_env(server.token_for("lea", project=project), project=project)
    viewer = server.client_env(
        server.token_for("lev", project=project, role="viewer"), project=project
    )
    setup = python(tmp_path, approver, LOOP_SETUP)
    assert setup.returncode == 0, setup.stderr
    # The pipeline is code the loop controller runs where the stores are: installed there.
    fixture = Path(__file__).parents[1] / "fixtures" / "loop_flow.py"
    shutil.copy(fixture, server.root / "ct_flow.py")
    policy = (
        "from conveyor.loop import Gate, Policy\n"
        "policy = Policy(name='churn-ct', deployment='prod', pipeline={pipeline!r},\n"
        "    executor='inline', gate=Gate(data='holdout@latest', checks=('signature',)),\n"
        "    rollout=None)\n"
    )
    (tmp_path / "policies.py").write_text(policy.format(pipeline="ct_flow:retrain"))
    (tmp_path / "by_path.py").write_text(policy.format(pipeline=f"{fixture}:retrain"))

    refused = cli(tmp_path, editor, "loop", "apply", "policies.py:policy")
    assert refused.returncode == 1
    assert "approver" in refused.stderr  # a policy releases models on its own: a release call
    by_path = cli(tmp_path, approver, "loop", "apply", "by_path.py:policy")
    assert by_path.returncode == 1
    assert "package.module:name (not a file" in by_path.stderr
    applied = cli(tmp_path, approver, "loop", "apply", "policies.py:policy")
    assert applied.returncode == 0, applied.stderr
    assert "Policy churn-ct applied for deployment prod" in applied.stdout
    idle = cli(tmp_path, viewer, "loop", "status")
    assert "idle" in idle.stdout, idle.stderr

    fired = cli(tmp_path, editor, "loop", "trigger", "churn-ct", "--reason", "new data")
    assert fired.returncode == 0, fired.stderr
    remote_tick = cli(tmp_path, editor, "loop", "tick")
    assert remote_tick.returncode == 1
    assert "does not run through a team server" in remote_tick.stderr
    host = {"CONVEYOR_PROJECT": project}  # the controller, on the server's host and stores
    tick = cli(server.root, host, "loop", "tick")
    assert tick.returncode == 0, tick.stderr
    assert "churn-ct: promoted:" in tick.stdout

    history = cli(tmp_path, viewer, "loop", "history", "churn-ct", "--json")
    kinds = [e["kind"] for e in json.loads(history.stdout)]
    assert kinds[:3] == ["applied", "triggered", "training"], history.stderr
    assert kinds[-1] == "promoted"
    code = (
        "import conveyor as cv\n"
        "(e,) = cv.loop.executions('churn-ct')\n"
        "print(e.state, e.trigger['reason'], e.created_at.tzinfo is not None)\n"
    )
    shown = python(tmp_path, viewer, code)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "promoted new data (via the API by lea) True"
    paused = cli(tmp_path, editor, "loop", "pause", "churn-ct")
    assert paused.returncode == 0, paused.stderr
    status = cli(tmp_path, viewer, "loop", "status", "churn-ct", "--json")
    (found,) = json.loads(status.stdout)
    assert found["paused"] is True
    assert found["last"]["state"] == "promoted"
    admin = server.client_env(server.admin_token, project=project)
    audit = cli(tmp_path, admin, "audit", "--actor", "lia")
    assert "loop.policy.create" in audit.stdout, audit.stderr


def test_reading_prediction_logs_remotely_names_where_they_are(
    server: TeamServer, tmp_path: Path
) -> None:
    env = server.client_env(server.token_for("lou", project="logs", role="viewer"), project="logs")
    code = "import conveyor as cv\ncv.serving.read_predictions('prod')\n"
    refused = python(tmp_path, env, code)
    assert refused.returncode == 1
    assert "Set CONVEYOR_LOG_URI" in refused.stderr  # not an empty frame from this machine
    (tmp_path / ".conveyor" / "logs").mkdir(parents=True)  # served here once: still not theirs
    assert python(tmp_path, env, code).returncode == 1
    (tmp_path / "logs").mkdir()
    found = python(tmp_path, {**env, "CONVEYOR_LOG_URI": str(tmp_path / "logs")}, code)
    assert found.returncode == 0, found.stderr


def test_a_large_artifact_resumes_where_the_server_holds_it(
    server: TeamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conveyor as cv
    from conveyor.core.errors import BackendUnavailableError
    from conveyor.store import workspace as wsmod
    from conveyor.tracking.runs import tracker

    monkeypatch.setenv("CONVEYOR_TOKEN", server.token_for("rex", project="resume"))
    monkeypatch.setattr(wsmod, "RESUMABLE_FROM", 1 << 20)  # 20 MiB: three chunks of 8 MiB
    monkeypatch.setattr(wsmod.time, "sleep", lambda seconds: None)
    data = os.urandom(20 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    ws = cv.Workspace.from_settings(tmp_path, project="resume", store_uri=server.url)
    client = ws.remote
    assert client is not None
    real = client.request
    offsets: list[int] = []

    def answer_lost_once(method: str, path: str, **kw: Any) -> Any:
        response = real(method, path, **kw)
        if method == "PUT" and "/uploads/" in path:
            offsets.append(kw["params"]["offset"])
            if len(offsets) == 2:  # the server took the chunk; its answer never came
                raise BackendUnavailableError("the connection dropped")
        return response

    monkeypatch.setattr(client, "request", answer_lost_once)
    try:
        with tracker(ws).start_run("big") as run:
            run.log_artifact(tmp_path / "big.bin")
        assert offsets == [0, 8 << 20, 16 << 20]  # resumed after the held chunk, none twice
        with ws.open_artifact(run.ref, "big.bin") as f:
            assert hashlib.sha256(f.read()).hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        ws.close()


def test_a_server_without_resumable_uploads_gets_the_file_in_one_request(
    server: TeamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conveyor as cv
    from conveyor.core.errors import NotFoundError
    from conveyor.store import workspace as wsmod
    from conveyor.tracking.runs import tracker

    monkeypatch.setenv("CONVEYOR_TOKEN", server.token_for("old", project="older"))
    monkeypatch.setattr(wsmod, "RESUMABLE_FROM", 1 << 10)
    (tmp_path / "f.bin").write_bytes(b"z" * 4096)
    ws = cv.Workspace.from_settings(tmp_path, project="older", store_uri=server.url)
    client = ws.remote
    assert client is not None
    real = client.send_json

    def older(method: str, path: str, *args: Any, **kw: Any) -> Any:
        if path.endswith("/uploads"):
            raise NotFoundError("No such route.")  # what a server before them answers
        return real(method, path, *args, **kw)

    monkeypatch.setattr(client, "send_json", older)
    try:
        with tracker(ws).start_run("old") as run:
            link = run.log_artifact(tmp_path / "f.bin")[0]
        assert link.size == 4096
    finally:
        ws.close()


def test_monitors_are_created_and_run_on_the_server(server: TeamServer, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import conveyor as cv
    from conveyor.testing import ModelServerClient

    project = "watched"
    editor = server.client_env(server.token_for("wes", project=project), project=project)
    viewer = server.client_env(
        server.token_for("wyn", project=project, role="viewer"), project=project
    )
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(0, 1, 2000), "b": rng.normal(0, 1, 2000)})
    moved = pd.DataFrame({"a": rng.normal(2, 1, 60), "b": rng.normal(0, 1, 60)})
    ws = cv.Workspace.from_settings(server.root, project=project)  # the server's own stores
    try:
        cv.data.add("train", train, workspace=ws)
        model = LogisticRegression().fit(train, (train["a"] > 0).astype(int))
        cv.models.log(model, "churn", input_example=train[:5], workspace=ws)
        cv.serving.deployments(ws).create("prod", "churn")
        with ModelServerClient(deployment="prod", workspace=ws) as client:  # logs where it serves
            ids = [
                i
                for start in range(0, 60, 5)
                for i in client.predict(moved.iloc[start : start + 5], name="prod")[
                    "prediction_ids"
                ]
            ]
    finally:
        ws.close()

    made = cli(tmp_path, editor, "monitor", "create", "prod-watch", "-d", "prod", "-r", "train@1")
    assert made.returncode == 0, made.stderr
    assert cli(tmp_path, viewer, "monitor", "run", "prod-watch").returncode == 1  # an edit
    ran = cli(tmp_path, editor, "monitor", "run", "prod-watch", "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["rows"] == 60
    assert result["drift"]["drifted_columns"] == ["a"]
    shown = cli(tmp_path, viewer, "monitor", "show", "prod-watch", "--json")
    assert [r["id"] for r in json.loads(shown.stdout)] == [result["id"]], shown.stderr
    report = cli(tmp_path, viewer, "monitor", "report", "prod-watch", "-o", "r.html")
    assert report.returncode == 0, report.stderr
    assert "DATA DRIFTED" in (tmp_path / "r.html").read_text()

    truth = (moved["a"] > 0).astype(int)
    pd.DataFrame({"prediction_id": ids[:40], "label": truth[:40]}).to_csv(tmp_path / "l.csv")
    labelled = cli(tmp_path, editor, "labels", "add", "l.csv", "-d", "prod")
    assert labelled.returncode == 0, labelled.stderr
    assert "Recorded 40 labels" in labelled.stdout
    audit = cli(tmp_path, server.client_env(server.admin_token, project=project), "audit")
    assert "labels.add" in audit.stdout, audit.stderr
    again = json.loads(cli(tmp_path, editor, "monitor", "run", "prod-watch", "--json").stdout)
    assert again["performance"]["labelled_rows"] == 40

    rule = ("monitor", "alert", "prod-watch", "drift.share_drifted > 0.3")
    assert "admin" in cli(tmp_path, editor, *rule).stderr  # the server would call its webhooks
    admin = server.client_env(server.admin_token, project=project)
    assert cli(tmp_path, admin, *rule).returncode == 0


def test_deployments_change_through_the_server_by_an_approvers_hand(
    server: TeamServer, tmp_path: Path
) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import conveyor as cv

    project = "deploys"
    editor = server.client_env(server.token_for("ted", project=project), project=project)
    approver = server.client_env(
        server.token_for("amy", project=project, role="approver"), project=project
    )
    X = np.random.default_rng(0).normal(size=(100, 2))
    ws = cv.Workspace.from_settings(server.root, project=project)
    try:
        for c in (1.0, 0.5):
            model = LogisticRegression(C=c).fit(X, (X[:, 0] > 0).astype(int))
            cv.models.log(model, "churn", input_example=X[:5], workspace=ws)
    finally:
        ws.close()

    made = cli(tmp_path, approver, "deploy", "create", "prod", "--model", "churn/1", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["revision"] == 1
    canary = ("deploy", "canary", "prod", "--model", "churn/2", "--weight", "10")
    refused = cli(tmp_path, editor, *canary)
    assert refused.returncode == 1
    assert "approver" in refused.stderr
    assert cli(tmp_path, approver, *canary).returncode == 0
    status = cli(tmp_path, editor, "deploy", "status", "prod", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert [(r["ref"], r["weight"]) for r in shown["routes"]] == [("churn/1", 90), ("churn/2", 10)]
    assert "No live figures" in status.stderr  # the logs are where the model servers write
    guard = python(  # what a model server's guard does through the server
        tmp_path,
        approver,
        "import conveyor as cv\n"
        "r = cv.serving.deployments().rollback_canary('prod', 'churn/2', 'error rate 30%')\n"
        "print(r.revision, r.change, r.created_by)\n",
    )
    assert guard.stdout.split() == ["3", "auto-rollback", "amy"], guard.stderr
    assert cli(tmp_path, approver, *canary).returncode == 0
    assert cli(tmp_path, approver, "deploy", "promote", "prod").returncode == 0
    back = cli(
        tmp_path,
        approver,
        "deploy",
        "rollback",
        "prod",
        "--to",
        "1",
        "--reason",
        "checking",
        "--json",
    )
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["revision"] == 6
    listed = cli(tmp_path, editor, "deploy", "list")
    assert "prod" in listed.stdout
    assert "amy" in listed.stdout  # changed by the approver, as the server saw them

    # A model server elsewhere serves the deployment: its plan and models through the server.
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    serving = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "serve", "--deployment", "prod", "--port", str(port)],
        cwd=tmp_path,
        env={**base, **editor},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert serving.poll() is None, serving.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the model server did not get ready"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/v1/models/prod/predict"
        answer = httpx.post(url, json={"instances": X[:2].tolist()}).json()
        assert answer["model_version"] == "churn/1"  # revision 6 serves what revision 1 did
    finally:
        serving.terminate()
        serving.communicate(timeout=30)
