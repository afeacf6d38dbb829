"""The team server: a rule for every route, every role against every route, projects that
isolate, the four-eyes rule through the API, audit of each change, and request hardening."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server needs conveyor-mlops[server]")

from fastapi.testclient import TestClient

from conveyor.core.config import load_settings
from conveyor.server.app import create_app
from conveyor.server.rules import PUBLIC, RULES, SERVER_ADMIN, USER
from conveyor.store.principal import ROLES, role_rank
from tests.fixtures.skops_files import skops_call

PROJECT = "alpha"


@dataclass
class Team:
    client: TestClient
    app: Any
    tokens: dict[str, str]  # role (or "outsider", "root") -> token

    def call(self, method: str, path: str, who: str | None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return self.client.request(method, path, headers=headers, **kw)


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    app = create_app(load_settings(tmp_path, project=PROJECT))
    identity = app.state.conveyor.identity
    tokens = {"root": identity.bootstrap("root")}
    for role in ROLES:
        identity.add_user(role)
        identity.grant(role, PROJECT, role)
        tokens[role] = identity.create_token(role)[1]
    identity.add_user("outsider")
    identity.grant("outsider", "beta", "admin")
    tokens["outsider"] = identity.create_token("outsider")[1]
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Team(client, app, tokens)


def _fill(path: str) -> str:
    values = {"project": PROJECT, "version": "1", "action": "pause", "kind": "run"}
    return re.sub(r"\{(\w+)(?::path)?\}", lambda m: values.get(m.group(1), "x" + m.group(1)), path)


def test_every_route_of_the_api_has_a_rule(team: Team) -> None:
    schema = team.client.get("/api/v1/openapi.json").json()
    served = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
    }
    declared = {(m, p.replace(":path}", "}")) for m, p in RULES}
    assert served == declared, "a route without a rule, or a rule without a route"
    for operations in schema["paths"].values():
        for op in operations.values():
            assert op["x-conveyor-rule"] in (*ROLES, SERVER_ADMIN, USER, PUBLIC)


@pytest.mark.parametrize(("method", "path"), sorted(RULES))
def test_each_role_against_each_route(team: Team, method: str, path: str) -> None:
    rule = RULES[(method, path)]
    url = _fill(path)
    body = {} if method in ("POST", "PUT") else None
    anonymous = team.call(method, url, None, json=body).status_code
    public = {"/api/v1/login": 422, "/api/v1/logout": 200}  # no credentials / no session
    assert anonymous == (public[path] if rule == PUBLIC else 401)
    for who in (*ROLES, "outsider", "root"):
        response = team.call(method, url, who, json=body)
        code = response.json().get("error", {}).get("code") if response.content else None
        if rule in ROLES:
            if who == "outsider":  # a role elsewhere: this project does not exist for them
                expect_refused = response.status_code == 404 and code == "conveyor.not_found"
                assert expect_refused, (who, response.status_code, response.text)
                continue
            allowed = who == "root" or role_rank(who) >= role_rank(rule)
        elif rule == PUBLIC:
            assert response.status_code == public[path]
            continue
        elif rule == SERVER_ADMIN:
            allowed = who == "root"
        else:
            assert rule == USER
            allowed = True
        if allowed:
            assert response.status_code not in (401, 403), (who, response.text)
            assert response.status_code < 500, (who, response.text)
        else:
            assert response.status_code == 403, (who, response.status_code, response.text)
            assert code == "conveyor.permission_denied"


def _batch(team: Team, who: str, project: str, run_id: str, experiment_id: str) -> Any:
    body = {
        "runs": [
            {
                "id": run_id,
                "experiment_id": experiment_id,
                "name": "r",
                "start_time": datetime.now(UTC).isoformat(),
            }
        ],
        "metrics": [[run_id, "auc", 0.9, 0, 1]],
    }
    return team.call("POST", f"/api/v1/projects/{project}/runs/batch", who, json=body)


def _run_in(team: Team, project: str, who: str) -> str:
    exp = team.call("PUT", f"/api/v1/projects/{project}/experiments/e", who).json()
    run_id = ("01" + uuid.uuid4().hex.upper())[:26]
    assert _batch(team, who, project, run_id, exp["id"]).status_code == 200
    return run_id


def test_project_writes_need_at_least_the_editor_role() -> None:
    reads = {  # queries sent as a body
        ("POST", "/api/v1/projects/{project}/runs/search"),
        ("POST", "/api/v1/projects/{project}/features/online"),
        ("POST", "/api/v1/projects/{project}/features/historical"),
    }
    for (method, path), rule in RULES.items():
        if "{project}" in path and method != "GET" and (method, path) not in reads:
            assert role_rank(rule) >= role_rank("editor"), (method, path, rule)


def test_a_project_hides_everything_from_other_projects(team: Team) -> None:
    secret = _run_in(team, PROJECT, "editor")
    team.call(
        "PUT",
        f"/api/v1/projects/{PROJECT}/artifacts/run/{secret}/a.txt",
        "editor",
        content=b"private",
    )
    own = _run_in(team, "beta", "outsider")
    beta_exp = team.call("GET", "/api/v1/projects/beta/experiments/e", "outsider").json()
    # Every route of project alpha answers 404 to someone with no role there.
    for method, path in sorted(RULES):
        if "{project}" in path:
            response = team.call(method, _fill(path), "outsider", json={})
            assert response.status_code == 404, (method, path, response.text)
    # Through their own project, alpha's objects do not exist either.
    base = "/api/v1/projects/beta"
    for url in (
        f"{base}/runs/{secret}",
        f"{base}/runs/{secret}/metrics/auc",
        f"{base}/artifacts/run/{secret}",
        f"{base}/artifacts/run/{secret}/a.txt",
    ):
        assert team.call("GET", url, "outsider").status_code == 404, url
    assert team.call("POST", f"{base}/runs/{secret}/delete", "outsider").status_code == 404
    write = {"metrics": [[secret, "auc", 0.1, 1, 1]], "tags": [[secret, "x", "y"]]}
    assert team.call("POST", f"{base}/runs/batch", "outsider", json=write).status_code == 404
    # Nor can a new run in beta take alpha's run id, experiment or parent.
    assert _batch(team, "outsider", "beta", secret, beta_exp["id"]).status_code == 404
    alpha_exp = team.call("GET", f"/api/v1/projects/{PROJECT}/experiments/e", "viewer").json()
    fresh = ("01" + uuid.uuid4().hex.upper())[:26]
    assert _batch(team, "outsider", "beta", fresh, alpha_exp["id"]).status_code == 404
    found = team.call("POST", f"{base}/runs/search", "outsider", json={}).json()
    assert [r["id"] for r in found["runs"]] == [own]
    lineage = team.call("GET", f"{base}/lineage/run/{secret}", "outsider").json()
    assert lineage["edges"] == []
    listed = team.call("GET", "/api/v1/projects", "outsider").json()["projects"]
    assert [p["name"] for p in listed] == ["beta"]


def test_a_token_made_for_one_project_sees_no_other(team: Team) -> None:
    identity = team.app.state.conveyor.identity
    identity.grant("editor", "beta", "editor")
    _, beta_only = identity.create_token("editor", project="beta")
    headers = {"Authorization": f"Bearer {beta_only}"}
    assert team.client.get(f"/api/v1/projects/{PROJECT}", headers=headers).status_code == 404
    assert team.client.get("/api/v1/projects/beta", headers=headers).status_code == 200


def test_a_viewer_cannot_write_and_a_disabled_user_cannot_call(team: Team) -> None:
    exp = team.call("PUT", f"/api/v1/projects/{PROJECT}/experiments/e", "viewer")
    assert exp.status_code == 403
    team.call("POST", "/api/v1/users/editor/disable", "root")
    refused = team.call("GET", f"/api/v1/projects/{PROJECT}", "editor")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "conveyor.unauthenticated"


def test_a_user_sets_their_own_password_and_an_admin_anyone_s(team: Team) -> None:
    body = {"password": "a new password"}
    assert (
        team.call("POST", "/api/v1/users/editor/password", "editor", json=body).status_code == 200
    )
    login = team.client.post("/api/v1/login", json={"user": "editor", **body})
    assert login.status_code == 200
    team.client.cookies.clear()
    other = team.call("POST", "/api/v1/users/editor/password", "viewer", json=body)
    assert other.status_code == 403
    assert team.call("POST", "/api/v1/users/viewer/password", "root", json=body).status_code == 200
    identity = team.app.state.conveyor.identity
    _, scoped = identity.create_token("editor", project=PROJECT)
    limited = team.client.post(
        "/api/v1/users/editor/password", json=body, headers={"Authorization": f"Bearer {scoped}"}
    )
    assert limited.status_code == 403


def test_an_administrator_cannot_disable_themselves(team: Team) -> None:
    refused = team.call("POST", "/api/v1/users/root/disable", "root")
    assert refused.status_code == 409
    assert "cannot disable yourself" in refused.json()["error"]["message"]
    assert team.call("GET", "/api/v1/whoami", "root").status_code == 200


def test_each_change_is_audited_with_actor_token_and_source(team: Team) -> None:
    run_id = _run_in(team, PROJECT, "editor")
    me = team.call("GET", "/api/v1/whoami", "editor").json()
    events = team.call(
        "GET", f"/api/v1/projects/{PROJECT}/audit", "admin", params={"object": f"run:{run_id}"}
    ).json()["events"]
    (created,) = [e for e in events if e["action"] == "run.create"]
    assert created["actor"] == "editor"
    assert created["token_id"] == me["token_id"]
    assert created["source"] == "testclient"
    run = team.call("GET", f"/api/v1/projects/{PROJECT}/runs/{run_id}", "viewer").json()
    assert run["user"] == "editor"  # the token's user, whatever the client claimed


def test_a_resent_batch_is_applied_once(team: Team) -> None:
    run_id = _run_in(team, PROJECT, "editor")
    body = {"metrics": [[run_id, "loss", float(i), i, 1000 + i] for i in range(100)]}
    headers = {
        "Authorization": f"Bearer {team.tokens['editor']}",
        "Idempotency-Key": "batch-0001",
    }
    url = f"/api/v1/projects/{PROJECT}/runs/batch"
    first = team.client.post(url, json=body, headers=headers).json()
    again = team.client.post(url, json=body, headers=headers).json()
    assert (first["applied"], again["applied"]) == (True, False)
    points = team.call("GET", f"/api/v1/projects/{PROJECT}/runs/{run_id}/metrics/loss", "viewer")
    assert len(points.json()["points"]) == 100


def test_promotion_needs_an_approver_who_did_not_ask(team: Team) -> None:
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from sklearn.linear_model import LogisticRegression

    import conveyor as cv
    from tests.suites.serving import training_data

    ws = team.app.state.conveyor.workspace(PROJECT)
    X, y = training_data()
    for _ in range(2):
        cv.models.log(LogisticRegression().fit(X, y), "churn", input_example=X[:5], workspace=ws)
    cv.models.require_approval("churn", ["champion"], workspace=ws)
    base = f"/api/v1/projects/{PROJECT}"
    moved = team.call("PUT", f"{base}/models/churn/aliases/champion", "admin", json={"version": 2})
    assert moved.status_code == 403  # protected: only through a request
    asked = team.call(
        "POST", f"{base}/models/churn/versions/2/promotions", "approver", json={"alias": "champion"}
    )
    assert asked.status_code == 201, asked.text
    request_id = asked.json()["id"]
    approve = f"{base}/promotions/{request_id}/approve"
    assert team.call("POST", approve, "editor", json={}).status_code == 403  # role
    own = team.call("POST", approve, "approver", json={})
    assert own.status_code == 403
    assert "second person" in own.json()["error"]["message"]
    decided = team.call("POST", approve, "admin", json={"comment": "ok"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["decided_by"] == "admin"
    model = team.call("GET", f"{base}/models/churn", "viewer").json()["model"]
    assert model["aliases"]["champion"] == 2


def test_errors_are_one_json_shape_and_answers_carry_security_headers(team: Team) -> None:
    missing = team.call("GET", "/api/v1/nothing-here", "viewer")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "conveyor.not_found"
    bad = team.call("POST", f"/api/v1/projects/{PROJECT}/runs/search", "viewer", json={"limit": 0})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "conveyor.invalid_argument"
    ok = team.call("GET", "/api/v1/whoami", "viewer")
    for header in ("x-content-type-options", "x-frame-options", "content-security-policy"):
        assert header in ok.headers
    garbage = team.client.post(
        f"/api/v1/projects/{PROJECT}/runs/batch",
        content=b"{not json",
        headers={"Authorization": f"Bearer {team.tokens['editor']}"},
    )
    assert garbage.status_code == 422


def test_artifact_names_cannot_leave_their_folder(team: Team) -> None:
    run_id = _run_in(team, PROJECT, "editor")
    for name in ("%2e%2e/%2e%2e/etc/passwd", "a/%2e%2e/%2e%2e/b", "/abs", "a\\..\\b"):
        url = f"/api/v1/projects/{PROJECT}/artifacts/run/{run_id}/{name}"
        response = team.call("PUT", url, "editor", content=b"x")
        assert response.status_code in (404, 422), (name, response.text)
        assert response.status_code != 200


def test_big_bodies_are_refused_before_they_are_read(tmp_path: Path) -> None:
    app = create_app(load_settings(tmp_path, project=PROJECT), auth=False, max_body=1000)
    local = {"base_url": "http://127.0.0.1:5000", "client": ("127.0.0.1", 40000)}
    with TestClient(app, **local) as client:
        response = client.post(
            f"/api/v1/projects/{PROJECT}/runs/search", content=b"{" + b" " * 5000 + b"}"
        )
        chunked = client.post(  # no Content-Length: counted as it arrives
            f"/api/v1/projects/{PROJECT}/runs/search",
            content=iter([b"{" + b" " * 600, b" " * 600 + b"}"]),
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "conveyor.payload_too_large"
    assert chunked.status_code == 413
    assert chunked.json()["error"]["code"] == "conveyor.payload_too_large"


def test_repeated_bad_tokens_are_rate_limited(team: Team) -> None:
    headers = {"Authorization": "Bearer cvt_" + "x" * 43}
    codes = [team.client.get("/api/v1/whoami", headers=headers).status_code for _ in range(25)]
    assert codes[0] == 401
    assert codes[-1] == 429


def test_a_browser_session_needs_the_csrf_token_for_changes(team: Team) -> None:
    team.client.base_url = "https://testserver"  # session cookies are Secure
    identity = team.app.state.conveyor.identity
    identity.set_password("editor", "long enough secret")
    wrong = team.client.post("/api/v1/login", json={"user": "editor", "password": "nope"})
    assert wrong.status_code == 401
    ok = team.client.post(
        "/api/v1/login", json={"user": "editor", "password": "long enough secret"}
    )
    assert ok.status_code == 200
    cookie = ok.headers["set-cookie"].lower()
    assert "conveyor_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "secure" in cookie
    csrf = ok.json()["csrf_token"]
    client = team.client  # keeps the cookies from here on
    assert client.get("/api/v1/whoami").json()["user"] == "editor"
    url = f"/api/v1/projects/{PROJECT}/experiments/from-browser"
    forged = client.put(url)
    assert forged.status_code == 403
    assert "CSRF" in forged.json()["error"]["message"]
    assert client.put(url, headers={"X-CSRF-Token": "guess"}).status_code == 403
    assert client.put(url, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.post("/api/v1/logout").status_code == 403  # no CSRF token: the session stays
    assert client.get("/api/v1/whoami").status_code == 200
    assert client.post("/api/v1/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    client.cookies.clear()
    assert client.get("/api/v1/whoami").status_code == 401


def test_a_nul_character_in_a_url_is_a_clear_422(team: Team) -> None:
    for url in ("/api/v1/projects/%00", f"/api/v1/projects/{PROJECT}/runs/x%00y"):
        answer = team.call("GET", url, "admin")
        assert answer.status_code == 422, url
        assert "NUL" in answer.json()["error"]["message"]


def test_the_database_refusing_a_nul_character_is_recognized() -> None:
    import sqlalchemy as sa

    from conveyor.server.app import _nul_refused

    refused = Exception("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    assert _nul_refused(sa.exc.DataError("INSERT ...", {}, refused))
    assert not _nul_refused(sa.exc.DataError("INSERT ...", {}, Exception("value too long")))

    class Untranslatable(Exception):  # psycopg's error for a \u0000 in a JSONB value
        sqlstate = "22P05"

    jsonb = Untranslatable("unsupported Unicode escape sequence")
    assert _nul_refused(sa.exc.DataError("INSERT ...", {}, jsonb))
    assert not _nul_refused(ValueError("NUL"))


def test_login_attempts_are_rate_limited(team: Team) -> None:
    body = {"user": "editor", "password": "wrong password"}
    codes = [team.client.post("/api/v1/login", json=body).status_code for _ in range(25)]
    assert codes[0] == 401
    assert codes[-1] == 429


def test_without_auth_only_this_machine_is_answered(tmp_path: Path) -> None:
    app = create_app(load_settings(tmp_path, project=PROJECT), auth=False)
    local = {"base_url": "http://127.0.0.1:5000", "client": ("127.0.0.1", 40000)}
    with TestClient(app, **local) as client:
        assert client.get("/api/v1/whoami").status_code == 200
        evil = {"Origin": "https://evil.example"}
        assert (
            client.post(f"/api/v1/projects/{PROJECT}/runs/search", headers=evil).status_code == 403
        )
        rebound = client.get("/api/v1/whoami", headers={"Host": "evil.example"})
        assert rebound.status_code == 403
        neighbour = {"Origin": "http://127.0.0.1:8888"}  # another program's page, same machine
        search = f"/api/v1/projects/{PROJECT}/runs/search"
        assert client.post(search, headers=neighbour, json={}).status_code == 403
        own = {"Origin": "http://127.0.0.1:5000"}
        assert client.post(search, headers=own, json={}).status_code == 200
    with TestClient(app, base_url="http://10.0.0.5:5000", client=("10.0.0.9", 1)) as client:
        assert client.get("/api/v1/whoami").status_code == 403


def test_a_project_token_cannot_make_itself_a_wider_one(team: Team) -> None:
    identity = team.app.state.conveyor.identity
    identity.grant("admin", "beta", "admin")
    _, scoped = identity.create_token("admin", project=PROJECT)
    _, scoped_root = identity.create_token("root", project=PROJECT)
    headers = {"Authorization": f"Bearer {scoped}"}
    made = team.client.post("/api/v1/tokens", json={"name": "wider"}, headers=headers)
    assert made.status_code == 201
    assert made.json()["project"] == PROJECT
    other = team.client.post(
        "/api/v1/tokens", json={"name": "x", "project": "beta"}, headers=headers
    )
    assert other.status_code == 403
    assert team.client.get("/api/v1/whoami", headers=headers).json()["roles"] == {PROJECT: "admin"}
    root_headers = {"Authorization": f"Bearer {scoped_root}"}
    assert team.client.get("/api/v1/users", headers=root_headers).status_code == 403
    assert team.client.get("/api/v1/audit", headers=root_headers).status_code == 403


def test_a_token_is_revoked_by_a_start_of_its_id_among_the_callers_own(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    identity = team.app.state.conveyor.identity
    chosen = iter(["01JAAAAAAA00000000000000E1", "01JAAAAAAA00000000000000E2"])
    monkeypatch.setattr("conveyor.store.identity.ids", SimpleNamespace(new_id=lambda: next(chosen)))
    identity.create_token("editor", "laptop")
    identity.create_token("viewer", "laptop")
    # An administrator sees both, and is told which they are.
    both = team.call("DELETE", "/api/v1/tokens/01JAAAAAAA", "root")
    assert both.status_code == 422, both.text
    assert "01JAAAAAAA00000000000000E1 (editor, 'laptop')" in both.text
    assert "01JAAAAAAA00000000000000E2 (viewer, 'laptop')" in both.text
    # The editor sees only their own token: the start is not ambiguous for them.
    mine = team.call("DELETE", "/api/v1/tokens/01jaaa", "editor")
    assert mine.status_code == 200, mine.text
    assert (mine.json()["id"], mine.json()["user"]) == ("01JAAAAAAA00000000000000E1", "editor")
    # Nor does the editor learn of another user's token.
    theirs = team.call("DELETE", "/api/v1/tokens/01JAAAAAAA00000000000000E2", "editor")
    assert theirs.status_code == 404, theirs.text
    assert team.call("DELETE", "/api/v1/tokens/01JAA", "root").status_code == 422


def test_an_alert_of_another_project_cannot_be_closed(team: Team) -> None:
    import sqlalchemy as sa

    from conveyor.store.metadata.schema import alerts
    from tests.suites.seed import open_alert

    ws = team.app.state.conveyor.workspace(PROJECT)
    with ws.metadata.transaction() as uow:
        open_alert(uow, ws.project.id, "A1")
    url = "/api/v1/projects/beta/alerts/A1/resolve"
    assert team.call("POST", url, "outsider").status_code == 404
    with ws.metadata.read() as conn:
        assert conn.execute(sa.select(alerts.c.status)).scalar_one() == "open"
    own = team.call("POST", f"/api/v1/projects/{PROJECT}/alerts/A1/resolve", "editor")
    assert own.status_code == 200


def test_a_batch_leaves_an_audit_event_per_run_with_its_tags(team: Team) -> None:
    run_id = _run_in(team, PROJECT, "editor")
    body = {"tags": [[run_id, "stage", "tuned"]], "params": [[run_id, "lr", "0.1"]]}
    assert (
        team.call("POST", f"/api/v1/projects/{PROJECT}/runs/batch", "editor", json=body).status_code
        == 200
    )
    events = team.call(
        "GET",
        f"/api/v1/projects/{PROJECT}/audit",
        "admin",
        params={"object": f"run:{run_id}", "action": "run.log"},
    ).json()["events"]
    assert events[0]["after"] == {"params": 1, "metrics": 0, "tags": {"stage": "tuned"}}


def test_uploads_check_size_and_media_type(tmp_path: Path) -> None:
    app = create_app(load_settings(tmp_path, project=PROJECT), max_artifact_bytes=1000)
    identity = app.state.conveyor.identity
    headers = {"Authorization": f"Bearer {identity.bootstrap('root')}"}
    with TestClient(app) as client:
        team = Team(client, app, {"root": headers["Authorization"][7:]})
        run_id = _run_in(team, PROJECT, "root")
        url = f"/api/v1/projects/{PROJECT}/artifacts/run/{run_id}/big.bin"
        assert client.put(url, content=b"x" * 2000, headers=headers).status_code == 413
        streamed = client.put(url, content=iter([b"x" * 600, b"x" * 600]), headers=headers)
        assert streamed.status_code == 413
        bad = client.put(url, content=b"x", params={"media_type": "text/\u20ac"}, headers=headers)
        assert bad.status_code == 422
        assert client.put(url, content=b"x" * 10, headers=headers).status_code == 200


def test_moving_an_alias_a_deployment_serves_needs_an_approver(team: Team) -> None:
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from sklearn.linear_model import LogisticRegression

    import conveyor as cv
    from conveyor.serving.deployment import deployment_service
    from tests.suites.serving import training_data

    ws = team.app.state.conveyor.workspace(PROJECT)
    X, y = training_data()
    for _ in range(2):
        cv.models.log(LogisticRegression().fit(X, y), "churn", input_example=X[:5], workspace=ws)
    cv.models.set_alias("churn", "staging", 1, workspace=ws)
    cv.models.set_alias("churn", "scratch", 1, workspace=ws)
    deployment_service(ws).create("web", "churn@staging")
    base = f"/api/v1/projects/{PROJECT}/models/churn/aliases"
    assert team.call("PUT", f"{base}/scratch", "editor", json={"version": 2}).status_code == 200
    served = team.call("PUT", f"{base}/staging", "editor", json={"version": 2})
    assert served.status_code == 403
    assert team.call("DELETE", f"{base}/staging", "editor").status_code == 403
    assert team.call("PUT", f"{base}/staging", "approver", json={"version": 2}).status_code == 200
    protect = f"/api/v1/projects/{PROJECT}/models/churn/protection"
    assert team.call("PUT", protect, "approver", json={"aliases": []}).status_code == 403
    assert team.call("PUT", protect, "admin", json={"aliases": []}).status_code == 200


def test_logout_ends_the_session_not_the_bearer_token(team: Team) -> None:
    team.client.base_url = "https://testserver"
    identity = team.app.state.conveyor.identity
    identity.set_password("editor", "long enough secret")
    login = {"user": "editor", "password": "long enough secret"}
    first = team.client.post("/api/v1/login", json=login).json()
    second = team.client.post("/api/v1/login", json=login).json()  # replaces the first
    sessions = [t for t in identity.list_tokens("editor") if t.name == "browser session"]
    assert [t.active for t in sessions] == [True, False]
    bearer = {"Authorization": f"Bearer {team.tokens['editor']}"}
    out = team.client.post(
        "/api/v1/logout", headers={**bearer, "X-CSRF-Token": second["csrf_token"]}
    )
    assert out.status_code == 200
    assert team.call("GET", "/api/v1/whoami", "editor").status_code == 200  # bearer still works
    assert not any(t.active for t in identity.list_tokens("editor") if t.name == "browser session")
    assert first["user"] == "editor"


def _upload(team: Team, who: str, spec: dict[str, Any], files: dict[str, bytes]) -> Any:
    import json

    parts = [("spec", ("spec.json", json.dumps(spec).encode(), "application/json"))]
    for i, name in enumerate(spec.get("files", [])):
        parts.append((f"file{i}", (name, files[name], "application/octet-stream")))
    headers = {"Authorization": f"Bearer {team.tokens[who]}"}
    url = f"/api/v1/projects/{PROJECT}/models/churn/versions"
    return team.client.post(url, files=parts, headers=headers)


class _Custom:  # a type no allow-list knows
    def __init__(self) -> None:
        self.k = 1


def _skops_model(extra: Any = None) -> tuple[bytes, dict[str, Any]]:
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from sklearn.linear_model import LogisticRegression

    from conveyor.models.flavors import get_flavor
    from tests.suites.serving import training_data

    X, y = training_data()
    model = LogisticRegression().fit(X, y)
    if extra is not None:
        model.extra_ = extra
    files, info = get_flavor("sklearn").save(model)
    return files["model.skops"], info


def _spec(info: dict[str, Any], **changes: Any) -> dict[str, Any]:
    spec = {
        "flavor": "sklearn",
        "info": info,
        "requirements": {"scikit-learn": "1.9.1"},
        "signature": None,
        "description": "",
        "run_id": None,
        "example_name": None,
        "files": ["model.skops"],
    }
    spec.update(changes)
    return spec


def test_an_upload_cannot_choose_what_loading_trusts(team: Team, tmp_path: Path) -> None:
    data, info = _skops_model()
    files = {"model.skops": data}
    assert _upload(team, "editor", _spec(info), files).status_code == 201
    widened = {**info, "trusted_types": [*info["trusted_types"], "builtins.exec"]}
    made = _upload(team, "editor", _spec(widened), files)
    assert made.status_code == 201
    from conveyor.models.service import model_service
    from conveyor.store.workspace import Workspace

    with Workspace(load_settings(tmp_path, project=PROJECT)) as ws:
        service = model_service(ws)
        stored = service.document(service.get(f"churn/{made.json()['version']}"))
    assert "builtins.exec" not in stored.info["trusted_types"]  # the claim is not kept
    # skops calls a trusted name with arguments from the file: a function of an allowed
    # package (here a harmless one) must not be trusted for it.
    called = skops_call("sklearn.utils", "check_random_state", [0])
    denied = _upload(team, "editor", _spec(info), {"model.skops": called})
    assert denied.status_code == 403
    assert "sklearn.utils.check_random_state" in denied.json()["error"]["message"]
    custom, custom_info = _skops_model(extra=_Custom())
    assert _upload(team, "editor", _spec(custom_info), {"model.skops": custom}).status_code == 403
    pickled = _spec(info, flavor="python")
    assert _upload(team, "editor", pickled, files).status_code == 403


def test_an_upload_spec_is_checked_before_anything_is_stored(team: Team) -> None:
    data, info = _skops_model()
    files = {"model.skops": data}
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    bad_specs = [
        _spec(info, requirements={"x\n--index-url http://evil/": "1"}),
        _spec(info, requirements={"numpy": "1.0\n--extra"}),
        _spec({**info, "deep": deep}),
        _spec(info, signature={"inputs": "x"}),
        _spec(info, example_name="conveyor-model.json"),
    ]
    for spec in bad_specs:
        response = _upload(team, "editor", spec, files)
        assert response.status_code == 422, (spec, response.text)
    assert team.call("GET", f"/api/v1/projects/{PROJECT}/models", "viewer").json()["models"] == []
    huge = team.call(
        "GET", f"/api/v1/projects/{PROJECT}/model-versions/churn/99999999999999999999", "viewer"
    )
    assert huge.status_code == 422


def test_a_version_a_deployment_follows_needs_an_approver(team: Team) -> None:
    import conveyor as cv
    from conveyor.serving.deployment import deployment_service

    data, info = _skops_model()
    files = {"model.skops": data}
    assert _upload(team, "editor", _spec(info), files).status_code == 201
    ws = team.app.state.conveyor.workspace(PROJECT)
    deployment_service(ws).create("web", "churn")  # follows the newest version
    assert _upload(team, "editor", _spec(info), files).status_code == 403
    assert _upload(team, "approver", _spec(info), files).status_code == 201
    assert [v.version for v in cv.models.versions("churn", workspace=ws)] == [2, 1]


def test_loopback_hosts_in_every_spelling_are_local(tmp_path: Path) -> None:
    app = create_app(load_settings(tmp_path, project=PROJECT), auth=False)
    with TestClient(app, base_url="http://127.0.0.1:5000", client=("127.0.0.1", 1)) as client:
        for host in ("[::1]", "[::1]:5000", "localhost.", "127.0.0.2:80", "LOCALHOST"):
            assert client.get("/api/v1/whoami", headers={"Host": host}).status_code == 200, host


def test_a_resumable_upload_appends_each_byte_once_and_checks_the_whole(team: Team) -> None:
    import hashlib

    run_id = _run_in(team, PROJECT, "editor")
    base = f"/api/v1/projects/{PROJECT}/uploads"
    body = b"0123456789"
    started = team.call("POST", base, "editor", json={"size": len(body)})
    assert started.status_code == 201, started.text
    url = f"{base}/{started.json()['id']}"

    def put(offset: int, data: bytes) -> Any:
        return team.call("PUT", url, "editor", params={"offset": offset}, content=data)

    assert put(0, body[:6]).json()["offset"] == 6
    assert put(0, body[:6]).json()["offset"] == 6  # resent after a lost answer: not again
    assert put(0, b"X" + body[1:6]).status_code == 409  # not what it holds: the file changed
    assert put(8, body[8:]).status_code == 409  # a gap
    assert put(6, body[6:] + b"!").status_code == 422  # past the size
    assert team.call("GET", url, "approver").status_code == 404  # someone else's upload
    done = {"run_id": run_id, "name": "digits.txt", "sha256": hashlib.sha256(body).hexdigest()}
    early = team.call("POST", f"{url}/artifact", "editor", json=done)
    assert early.status_code == 409  # 6 of 10 bytes
    assert put(4, body[4:]).json()["offset"] == 10  # overlapping the end: only the new bytes
    linked = team.call("POST", f"{url}/artifact", "editor", json=done)
    assert linked.status_code == 200, linked.text
    assert linked.json()["size"] == 10
    again = team.call("POST", f"{url}/artifact", "editor", json=done)  # the answer was lost
    assert again.json() == linked.json()
    got = team.call(
        "GET", f"/api/v1/projects/{PROJECT}/artifacts/run/{run_id}/digits.txt", "viewer"
    )
    assert got.content == body
    assert team.call("GET", url, "editor").status_code == 404  # the session is gone


def test_an_upload_whose_bytes_do_not_match_its_digest_is_not_linked(team: Team) -> None:
    run_id = _run_in(team, PROJECT, "editor")
    base = f"/api/v1/projects/{PROJECT}/uploads"
    url = f"{base}/{team.call('POST', base, 'editor', json={'size': 3}).json()['id']}"
    team.call("PUT", url, "editor", params={"offset": 0}, content=b"abc")
    wrong = {"run_id": run_id, "name": "x.bin", "sha256": "0" * 64}
    refused = team.call("POST", f"{url}/artifact", "editor", json=wrong)
    assert refused.status_code == 409
    assert "changed on the way" in refused.json()["error"]["message"]
    listed = team.call("GET", f"/api/v1/projects/{PROJECT}/artifacts/run/{run_id}", "viewer")
    assert listed.json()["artifacts"] == []
    assert team.call("GET", url, "editor").status_code == 404  # start again


def test_a_user_holds_a_bounded_number_of_unfinished_uploads(team: Team, tmp_path: Path) -> None:
    from conveyor.server.api_uploads import MAX_OPEN

    base = f"/api/v1/projects/{PROJECT}/uploads"
    ids = [
        team.call("POST", base, "editor", json={"size": 1}).json()["id"] for _ in range(MAX_OPEN)
    ]
    refused = team.call("POST", base, "editor", json={"size": 1})
    assert refused.status_code == 429
    assert team.call("POST", base, "admin", json={"size": 1}).status_code == 201  # another user
    assert team.call("DELETE", f"{base}/{ids[0]}", "editor").status_code == 200
    late = team.call("PUT", f"{base}/{ids[0]}", "editor", params={"offset": 0}, content=b"x")
    assert late.status_code == 404
    assert not list((tmp_path / ".conveyor" / "uploads").glob(f"{ids[0]}*"))  # not recreated
    assert team.call("POST", base, "editor", json={"size": 1}).status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/monitors", {"name": "m", "deployment": "d", "window": "9999999999999999999w"}),
        ("POST", "/monitors", {"name": "m", "deployment": "d", "window": "1000d"}),
        ("POST", "/monitors", {"name": "m", "deployment": "d", "schedule": "0 0 31 2 *"}),
        ("POST", "/monitors/m/run", {"start": "0001-01-01T00:00:00+01:00"}),
        ("POST", "/feature-views/materialize", {"end": "0001-01-01T00:00:00+01:00"}),
        ("POST", "/deployments/a%00b/labels", {"labels": [{"prediction_id": "p", "label": 1}]}),
        ("POST", "/deployments", '{"name": "d", "model": "m/1", "limits": {"max_p99_ms": 1e999}}'),
    ],
)
def test_out_of_range_input_is_refused_not_a_server_error(
    team: Team, method: str, path: str, body: dict[str, Any] | str
) -> None:
    sent = {"content": body, "headers": {"Content-Type": "application/json"}}
    if not isinstance(body, str):  # JSON itself cannot say infinity: that one is sent as text
        sent = {"json": body}
    url = f"/api/v1/projects/{PROJECT}{path}"
    headers = {"Authorization": f"Bearer {team.tokens['admin']}", **sent.pop("headers", {})}
    answer = team.client.request(method, url, headers=headers, **sent)
    assert answer.status_code == 422, answer.text


def test_only_a_server_administrator_adds_rules_that_call_webhooks(team: Team) -> None:
    url = f"/api/v1/projects/{PROJECT}/monitors/m/alert-rules"
    body = {"expression": "drift.share_drifted > 0.3", "notify": ["webhook:http://10.0.0.1/x"]}
    refused = team.call("POST", url, "admin", json=body)
    assert refused.status_code == 403
    assert "server administrator" in refused.json()["error"]["message"]
    assert team.call("POST", url, "root", json=body).status_code == 404  # allowed: no monitor m


def test_the_number_of_auth_attempts_a_minute_is_the_servers_to_set(tmp_path: Path) -> None:
    app = create_app(load_settings(tmp_path, project=PROJECT), auth_attempts=3)
    with TestClient(app, raise_server_exceptions=False) as client:
        codes = [
            client.get("/api/v1/whoami", headers={"Authorization": "Bearer cvt_wrong"}).status_code
            for _ in range(4)
        ]
    assert codes == [401, 401, 401, 429]


def test_the_processes_of_one_server_share_its_rate_limits(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, project=PROJECT)
    first, second = (create_app(settings, auth_attempts=3) for _ in range(2))  # two workers
    bad = {"Authorization": "Bearer cvt_wrong"}
    with (
        TestClient(first, raise_server_exceptions=False) as one,
        TestClient(second, raise_server_exceptions=False) as other,
    ):
        codes = [client.get("/api/v1/whoami", headers=bad).status_code for client in (one, other)]
        codes += [one.get("/api/v1/whoami", headers=bad).status_code for _ in range(2)]
        codes.append(other.get("/api/v1/whoami", headers=bad).status_code)
    assert codes == [401, 401, 401, 429, 429]  # three failures in all, then both refuse


def test_feature_definitions_sent_to_the_server_are_checked_one_by_one(team: Team) -> None:
    url = _fill("/api/v1/projects/{project}/feature-views")
    view = {
        "kind": "view",
        "name": "spend",
        "entities": [{"kind": "entity", "name": "customer", "keys": ["customer_id"]}],
        "source": {"kind": "dataset", "ref": "rows@1", "timestamp": "ts"},
        "features": [["spend", "float64"]],
        "ttl_s": None,
    }
    faults = {
        "definition 1 ('spend'): a view needs name": {**view, "features": [["spend"]]},
        "definition 1 ('spend'): Feature 'spend' has the type 'money'": {
            **view,
            "features": [["spend", "money"]],
        },
        "read with the server's own files": {
            **view,
            "source": {"kind": "sql", "query": "SELECT * FROM read_csv('/etc/passwd')"},
        },
        "on-demand views are code": {"kind": "on_demand", "name": "f", "entrypoint": "os:system"},
        "expected 'entity' or 'view'": {"kind": "table"},
    }
    entity = {"kind": "entity", "name": "customer", "keys": ["customer_id"]}
    for message, fault in faults.items():
        response = team.call("POST", url, "editor", json={"definitions": [entity, fault]})
        assert response.status_code == 422, (message, response.text)
        assert message in response.json()["error"]["message"], response.text
    unknown = team.call("POST", url, "editor", json={"definitions": [entity, view]})
    assert unknown.status_code == 404  # the dataset it reads must exist in this project
    assert "no dataset named 'rows'" in unknown.json()["error"]["message"]
    import pandas as pd

    from conveyor.data.service import data_service

    ws = team.app.state.conveyor.workspace(PROJECT)
    data_service(ws).add("rows", pd.DataFrame({"customer_id": [1], "ts": [1.0], "spend": [2.0]}))
    done = team.call("POST", url, "editor", json={"definitions": [entity, view]})
    assert done.status_code == 200, done.text
    assert [a["name"] for a in done.json()["applied"]] == ["customer", "spend"]


def test_a_policy_sent_to_the_server_is_checked_before_anything_is_imported(
    team: Team,
) -> None:
    team.app.state.conveyor.pipelines = ("flows",)  # conveyor server --pipelines
    url = _fill("/api/v1/projects/{project}/loop/policies")
    policy = {"name": "ct", "deployment": "prod", "pipeline": "flows.train:retrain"}
    nested: Any = "deep"
    for _ in range(40):
        nested = {"x": nested}
    faults = {
        "policy: not a policy (KeyError": {**policy, "triggers": [{"cron": "0 3 * * *"}]},
        "policy: not a policy (TypeError": {**policy, "colour": "red"},
        "package.module:name (not a file": {**policy, "pipeline": "/tmp/flows.py:retrain"},
        "no private module": {**policy, "pipeline": "flows.__main__:retrain"},
        "not in a package this server runs pipelines from": {**policy, "pipeline": "this:x"},
        "policy.executor is 'ray://": {**policy, "executor": "ray://203.0.113.9:10001"},
        "policy.params is 'x'; expected dict": {**policy, "params": "x"},
        "policy.triggers[0].monitor is [1]": {
            **policy,
            "triggers": [{"kind": "alert", "monitor": [1]}],
        },
        "policy nests deeper than": {**policy, "params": nested},
        "approval is 'auto' or 'required'": {**policy, "approval": "sometimes"},
    }
    for message, fault in faults.items():
        response = team.call("POST", url, "approver", json={"policy": fault})
        assert response.status_code == 422, (message, response.text)
        assert message in response.json()["error"]["message"], response.text
    missing = team.call("POST", url, "approver", json={"policy": policy})
    assert missing.status_code == 404  # checked now: the deployment it names must exist
    assert "prod" in missing.json()["error"]["message"]


def _parquet(frame: Any) -> bytes:
    import io

    out = io.BytesIO()
    frame.to_parquet(out, index=False)
    return out.getvalue()


def test_historical_reads_refuse_bad_rows_with_a_reason_not_a_server_error(team: Team) -> None:
    import json

    import pandas as pd

    from conveyor.data.service import data_service
    from conveyor.features import DatasetSource, Entity, FeatureView, Field
    from conveyor.features.service import feature_service

    ws = team.app.state.conveyor.workspace(PROJECT)
    day = pd.Timestamp("2026-01-02", tz="UTC")
    data_service(ws).add("rows", pd.DataFrame({"id": [1], "ts": [day], "spend": [2.0]}))
    customer = Entity("customer", key="id")
    view = FeatureView(
        name="spend",
        entities=[customer],
        source=DatasetSource("rows@latest", timestamp="ts"),
        features=[Field("spend")],
    )
    feature_service(ws).apply([customer, view])
    url = _fill("/api/v1/projects/{project}/features/historical")
    spec = json.dumps({"features": ["spend"]}).encode()

    def send(entities: bytes) -> Any:
        files = {"spec": ("spec.json", spec), "entities": ("e.parquet", entities)}
        return team.call("POST", url, "viewer", files=files)

    later = pd.Timestamp("2026-01-03", tz="UTC")
    good = send(_parquet(pd.DataFrame({"id": [1, 2], "event_timestamp": [later, later]})))
    assert good.status_code == 200, good.text
    assert pd.read_parquet(__import__("io").BytesIO(good.content))["spend"].tolist()[0] == 2.0
    faults = {
        "not a Parquet table": b"PAR1 this is not parquet",
        "holds VARCHAR values, but the source of feature view 'spend' keeps 'id' as": _parquet(
            pd.DataFrame({"id": ["one"], "event_timestamp": [later]})
        ),
        "a request takes at most 2,000,000 rows": _parquet(
            pd.DataFrame({"id": [1] * 2_000_001, "event_timestamp": [later] * 2_000_001})
        ),
    }
    for message, body in faults.items():
        response = send(body)
        assert response.status_code == 422, (message, response.text)
        assert message in response.json()["error"]["message"] + str(
            response.json()["error"].get("hint")
        ), response.text


def test_a_run_id_a_client_chooses_cannot_take_over_an_existing_run(team: Team) -> None:
    from conveyor.tracking.runs import tracker

    team.app.state.conveyor.pipelines = ("flows",)  # conveyor server --pipelines flows
    other = team.app.state.conveyor.workspace("beta")  # another project's tracked run
    with tracker(other).start_run("elsewhere") as run:
        pass
    url = _fill("/api/v1/projects/{project}/pipeline-runs")
    body = {"pipeline": "flows.train:retrain", "executor": "inline", "run_id": run.id}
    taken = team.call("POST", url, "editor", json=body)
    assert taken.status_code == 409, taken.text  # refused before anything is started
    assert f"The id {run.id} is taken" in taken.json()["error"]["message"]
    assert team.call("POST", url, "editor", json={**body, "executor": "ray"}).status_code == 422


def test_a_dataset_versions_listing_names_each_file_download_serves(
    team: Team, tmp_path: Path
) -> None:
    import hashlib

    from conveyor.data.service import data_service
    from conveyor.store.workspace import Workspace

    folder = tmp_path / "d"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "x.txt").write_bytes(b"ex")
    (folder / "y.bin").write_bytes(b"why")
    with Workspace.from_settings(tmp_path, project=PROJECT) as ws:
        version = data_service(ws).add("d", folder)
    url = f"/api/v1/projects/{PROJECT}/artifacts/dataset_version/{version.id}"
    listed = team.call("GET", url, "viewer").json()["artifacts"]
    names = [a["name"] for a in listed]
    assert {"files/a/x.txt", "files/y.bin", "manifest.json"} <= set(names)
    assert names == sorted(names)
    for a in listed:
        got = team.call("GET", f"{url}/{a['name']}", "viewer")
        assert got.status_code == 200, a["name"]
        assert hashlib.sha256(got.content).hexdigest() == a["digest"]
        assert len(got.content) == a["size"]


def test_dataset_version_ids_resolve_to_refs_within_the_project(team: Team, tmp_path: Path) -> None:
    import pandas as pd

    from conveyor.data.service import data_service
    from conveyor.store.workspace import Workspace

    with Workspace.from_settings(tmp_path, project=PROJECT) as ws:
        mine = data_service(ws).add("c", pd.DataFrame({"a": [1]}))
    with Workspace.from_settings(tmp_path, project="beta") as ws:
        theirs = data_service(ws).add("c", pd.DataFrame({"a": [2]}))
    url = f"/api/v1/projects/{PROJECT}/dataset-version-refs"
    found = team.call("GET", url, "viewer", params={"id": [mine.id, theirs.id, "nope"]})
    assert found.status_code == 200, found.text
    assert found.json() == {"refs": {mine.id: "c@1"}}  # beta's version is not alpha's to name
    too_many = team.call("GET", url, "viewer", params={"id": [f"x{i}" for i in range(101)]})
    assert too_many.status_code == 422
    assert team.call("GET", url, "outsider", params={"id": [mine.id]}).status_code in (403, 404)


def test_a_large_listing_comes_a_page_at_a_time(team: Team, tmp_path: Path) -> None:
    from conveyor.data.service import data_service
    from conveyor.store.workspace import Workspace

    folder = tmp_path / "d"
    folder.mkdir()
    for i in range(7):
        (folder / f"f{i}.txt").write_bytes(b"%d" % i)
    with Workspace.from_settings(tmp_path, project=PROJECT) as ws:
        version = data_service(ws).add("d", folder)
    url = f"/api/v1/projects/{PROJECT}/artifacts/dataset_version/{version.id}"
    whole = team.call("GET", url, "viewer").json()
    assert whole["next_after"] is None
    paged, after = [], None
    while True:
        params = {"limit": 3} if after is None else {"limit": 3, "after": after}
        page = team.call("GET", url, "viewer", params=params).json()
        assert len(page["artifacts"]) <= 3
        paged += page["artifacts"]
        after = page["next_after"]
        if after is None:
            break
    assert paged == whole["artifacts"]  # every name once, in order
    assert len(paged) == 8  # seven files and the manifest
    refused = team.call("GET", url, "viewer", params={"limit": 0})
    assert refused.status_code == 422


def test_a_dataset_version_whose_manifest_is_gone_still_lists_its_links(
    team: Team, tmp_path: Path
) -> None:
    from conveyor.data.service import data_service
    from conveyor.store.workspace import Workspace

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_bytes(b"ex")
    with Workspace.from_settings(tmp_path, project=PROJECT) as ws:
        version = data_service(ws).add("d", tmp_path / "d")
        ws.artifacts.delete(version.digest)
    url = f"/api/v1/projects/{PROJECT}/artifacts/dataset_version/{version.id}"
    listed = team.call("GET", url, "viewer")
    assert listed.status_code == 200, listed.text
    assert [a["name"] for a in listed.json()["artifacts"]] == ["manifest.json"]
