"""The web UI's pages over a seeded project, through the app in-process: what each role sees,
what the API refuses them, the filter language, downsampled charts, escaping, and errors as
pages. The same pages in a real browser: tests/e2e/test_ui_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="the server needs conveyor-mlops[server]")
pytest.importorskip("jinja2", reason="the web UI needs jinja2 (conveyor-mlops[server])")

from fastapi.testclient import TestClient

from conveyor.core.config import load_settings
from conveyor.server.app import create_app
from tests.suites.seed import ui_project

PROJECT = "alpha"
BASE = f"/ui/p/{PROJECT}"
POINTS = 5_000


@dataclass
class Site:
    app: Any
    ids: dict[str, str]

    def browser(self, who: str | None) -> TestClient:
        """A client holding ``who``'s session cookie (anonymous when None)."""
        client = TestClient(self.app, raise_server_exceptions=False, base_url="https://testserver")
        if who is not None:
            answer = client.post("/api/v1/login", json={"user": who, "password": f"{who}-pass"})
            assert answer.status_code == 200, answer.text
        return client


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root: Path = tmp_path_factory.mktemp("ui")
    app = create_app(load_settings(root, project=PROJECT))
    ids = ui_project(app.state.conveyor.workspace(PROJECT), points=POINTS)
    identity = app.state.conveyor.identity
    for name, role in (("vic", "viewer"), ("ed", "editor"), ("ann", "approver"), ("ada", "admin")):
        identity.add_user(name, password=f"{name}-pass")
        identity.grant(name, PROJECT, role)
    identity.add_user("out", password="out-pass")
    with TestClient(app):  # run the app's lifespan once for the module
        yield Site(app, ids)


def csrf(client: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies.get("conveyor_csrf", "")}


def test_an_anonymous_browser_is_sent_to_log_in_and_back(site: Site) -> None:
    answer = site.browser(None).get(f"{BASE}/runs?filter=x", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=%2Fui%2Fp%2Falpha%2Fruns%3Ffilter%3Dx"
    page = site.browser(None).get("/ui/login?next=//evil.example/x").text
    assert 'data-next="/ui/"' in page  # never sent off the site after logging in


def test_every_page_renders_for_a_viewer(site: Site) -> None:
    client = site.browser("vic")
    for path in (
        BASE,
        f"{BASE}/runs",
        f"{BASE}/runs/{site.ids['run']}",
        f"{BASE}/datasets",
        f"{BASE}/datasets/customers?version=2&against=1",
        f"{BASE}/features",
        f"{BASE}/features/spend_view",
        f"{BASE}/pipelines",
        f"{BASE}/pipelines/{site.ids['pipeline_run']}",
        f"{BASE}/models",
        f"{BASE}/models/churn",
        f"{BASE}/models/churn/versions/1",
        f"{BASE}/models/churn/compare?a=1&b=2",
        f"{BASE}/deployments",
        f"{BASE}/deployments/prod",
        f"{BASE}/monitors/prod-watch",
        f"{BASE}/lineage/dataset_version/{site.ids['dataset_version']}",
    ):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
        assert answer.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.text.count("<h1>") == 1, path


def test_a_project_is_shown_only_to_its_members(site: Site) -> None:
    answer = site.browser("out").get(BASE)
    assert answer.status_code == 404
    assert "No project called &#39;alpha&#39; that you can see" in answer.text
    assert answer.headers["content-type"].startswith("text/html")


def test_only_approvers_see_approve_buttons_and_the_api_refuses_the_others(site: Site) -> None:
    viewer = site.browser("vic")
    assert "Approve</button>" not in viewer.get(f"{BASE}/models/churn").text
    url = f"/api/v1/projects/{PROJECT}/promotions/{site.ids['request']}/approve"
    assert viewer.post(url, json={}, headers=csrf(viewer)).status_code == 403
    approver = site.browser("ann")
    page = approver.get(f"{BASE}/models/churn").text
    assert f'data-post="{url}"' in page
    assert approver.post(url, json={}).status_code == 403  # no CSRF token: refused
    assert approver.post(url, json={}, headers=csrf(approver)).status_code == 200
    page = approver.get(f"{BASE}/models/churn").text
    assert "@champion → 2" in page
    assert "Approve</button>" not in page  # decided


def test_the_requester_sees_withdraw_not_approve_on_their_own_request(site: Site) -> None:
    import conveyor as cv

    root = site.app.state.conveyor.workspace(PROJECT).settings.root
    ann = cv.Workspace.from_settings(root, project=PROJECT, actor="ann")
    try:
        own = cv.models.request_promotion("churn/1", "staging", workspace=ann)
    finally:
        ann.close()
    page = site.browser("ann").get(f"{BASE}/models/churn").text
    row = page.split(f'data-request="{own.id}"', 1)[1].split("</tr>", 1)[0]
    assert "/withdraw" in row
    assert "/approve" not in row
    assert "waiting for another approver" in row


def test_rollback_and_alert_buttons_follow_the_role(site: Site) -> None:
    assert "Roll back" not in site.browser("ed").get(f"{BASE}/deployments/prod").text
    assert "Roll back" in site.browser("ann").get(f"{BASE}/deployments/prod").text
    assert "Acknowledge" not in site.browser("vic").get(f"{BASE}/monitors/prod-drift").text
    assert "Acknowledge" in site.browser("ed").get(f"{BASE}/monitors/prod-drift").text


def test_the_runs_table_filters_orders_and_chooses_columns(site: Site) -> None:
    client = site.browser("vic")
    page = client.get(f"{BASE}/runs", params={"filter": "metrics.auc > 0.72"}).text
    assert re.findall(r">(logreg-c[\d.]+)</a>", page) == ["logreg-c10.0", "logreg-c1.0"]
    page = client.get(
        f"{BASE}/runs",
        params={"filter": "metrics.auc >= 0.7", "order": "metrics.auc asc", "columns": "params.C"},
    ).text
    assert re.findall(r">(logreg-c[\d.]+)</a>", page) == [
        "logreg-c0.1",
        "logreg-c1.0",
        "logreg-c10.0",
    ]
    assert '<th scope="col">params.C</th>' in page
    broken = client.get(f"{BASE}/runs", params={"filter": "metrics.auc >>> 1"})
    assert broken.status_code == 200  # the page stays, the filter's error is shown
    assert 'class="error" role="alert"' in broken.text


def test_a_long_metric_history_is_drawn_from_at_most_a_thousand_points(site: Site) -> None:
    page = site.browser("vic").get(f"{BASE}/runs/{site.ids['run']}").text
    lines = re.findall(r'<polyline[^>]*points="([^"]*)"', page)
    assert lines
    assert max(len(points.split()) for points in lines) <= 1000 < POINTS


def test_a_runs_artifacts_are_previewed(site: Site) -> None:
    client = site.browser("vic")
    page = client.get(f"{BASE}/runs/{site.ids['run']}").text
    assert "&#34;features&#34;" in page  # the JSON, pretty-printed and escaped
    assert "1 of" not in page
    assert re.search(r"(\d+) of 30 rows", page).group(1) == "20"  # type: ignore[union-attr]
    image = re.search(r'<img src="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    answer = client.get(image)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.content.startswith(b"\x89PNG")
    assert client.get(image.replace("spend.png", "config.json")).status_code == 404


def test_a_deployments_failed_requests_are_charted_per_model_version(site: Site) -> None:
    page = site.browser("vic").get(f"{BASE}/deployments/prod").text
    assert "failed requests per minute" in page
    assert re.search(r"churn/[12] 4xx refused", page)
    assert "No failed request" not in page


def test_a_pipeline_steps_log_is_shown_escaped(site: Site) -> None:
    url = f"{BASE}/pipelines/{site.ids['pipeline_run']}"
    client = site.browser("vic")
    assert 'href="?log=_double#log"' in client.get(url).text
    page = client.get(url, params={"log": "_double"}).text
    assert "doubling the spend of 400 customers &lt;b&gt;" in page
    assert client.get(url, params={"log": "nope"}).status_code == 404


def test_compare_highlights_differing_params(site: Site) -> None:
    client = site.browser("vic")
    runs = re.findall(r'name="run" value="([^"]+)"', client.get(f"{BASE}/runs").text)
    page = client.get(f"{BASE}/compare", params=[("run", r) for r in runs[-3:]]).text
    assert re.findall(r'<tr class="differs"><th scope="row">params\.(\w+)', page) == ["C", "depth"]
    assert "parallel coordinates" in page
    too_few = client.get(f"{BASE}/compare", params={"run": runs[0]})
    assert too_few.status_code == 422
    assert "Compare takes 2 to 20 runs" in too_few.text


def test_a_dataset_version_is_validated_on_request(site: Site) -> None:
    client = site.browser("vic")
    page = client.get(f"{BASE}/datasets/customers", params={"version": 2}).text
    assert "Validate this version" in page
    page = client.get(f"{BASE}/datasets/customers", params={"version": 2, "validate": "true"}).text
    assert 'status-failed">failed' in page  # spend grew past the range customers@1 allowed
    assert "<td>spend</td>" in page
    first = client.get(f"{BASE}/datasets/customers", params={"version": 1, "validate": "true"})
    assert 'status-finished">passed' in first.text
    assert "The pandera schema saved with this version" in first.text


def test_a_diff_shows_how_the_shares_of_categories_moved(site: Site) -> None:
    import conveyor as cv

    ws = site.app.state.conveyor.workspace(PROJECT)
    cv.data.add("plans", pd.DataFrame({"plan": ["basic", "pro"] * 5}), workspace=ws)
    cv.data.add("plans", pd.DataFrame({"plan": ["basic", "gold"] * 5}), workspace=ws)
    page = site.browser("vic").get(f"{BASE}/datasets/plans", params={"against": 1}).text
    assert '<td>gold (new)</td><td class="num">0.0%</td><td class="num">50.0%</td>' in page


def test_what_users_wrote_is_escaped(site: Site) -> None:
    page = site.browser("vic").get(f"{BASE}/runs").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_monitor_window_opens_its_own_report(site: Site) -> None:
    client = site.browser("vic")
    page = client.get(f"{BASE}/monitors/prod-watch").text
    link = re.search(r'href="([^"]+/report\?result=[^"]+)"', page).group(1)  # type: ignore[union-attr]
    report = client.get(link.replace("&amp;", "&"))
    assert report.status_code == 200
    assert "<svg" in report.text
    missing = client.get(f"{BASE}/monitors/prod-watch/report", params={"result": "nope"})
    assert missing.status_code == 404


def test_the_audit_page_is_for_project_admins(site: Site) -> None:
    assert site.browser("ann").get(f"{BASE}/audit").status_code == 403
    page = site.browser("ada").get(f"{BASE}/audit").text
    assert "models.alias" in page or "model" in page


def test_every_page_declares_who_may_see_it() -> None:
    from conveyor.server.rules import rule_of
    from conveyor.server.ui import router

    for route in router.routes:
        assert rule_of(route.endpoint) is not None, f"{route.path} declares no rule"


def test_lineage_shows_nothing_of_another_project(site: Site) -> None:
    import conveyor as cv
    from conveyor.store.workspace import use_workspace

    other = site.app.state.conveyor.workspace("beta")
    use_workspace(other)
    cv.data.add("secret-table", pd.DataFrame({"a": [1, 2]}))
    with cv.start_run(experiment="hidden") as run:
        cv.data.load("secret-table@1")
    page = site.browser("vic").get(f"{BASE}/lineage/run/{run.id}").text
    assert "secret-table" not in page
    assert page.count("nothing recorded") == 2


def test_a_schedules_run_shows_as_starting_until_it_is_recorded(site: Site) -> None:
    import conveyor as cv
    from conveyor.core import ids
    from conveyor.store.metadata.schema import schedules
    from tests.fixtures import flows

    ws = site.app.state.conveyor.workspace(PROJECT)
    made = cv.schedule(flows.chain, cron="0 3 * * *", name="ui-starting", workspace=ws)
    run_id = ids.new_id()
    with ws.metadata.transaction(project_id=ws.project.id) as uow:  # as a scheduler starting it
        uow.conn.execute(
            schedules.update().where(schedules.c.id == made.id).values(last_run_id=run_id)
        )
    client = site.browser("vic")
    listing = client.get(f"{BASE}/pipelines").text
    assert f'href="{BASE}/pipelines/{run_id}"' in listing
    starting = client.get(f"{BASE}/pipelines/{run_id}")
    assert starting.status_code == 200
    assert "Starting: schedule <strong>ui-starting</strong>" in starting.text
    assert 'data-refresh="5"' in starting.text
    assert client.get(f"{BASE}/pipelines/{ids.new_id()}").status_code == 404  # no one's run
