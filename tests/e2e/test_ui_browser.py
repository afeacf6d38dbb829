"""The web UI in a real browser: Debian's headless chromium driven by Playwright against
``conveyor server`` on 127.0.0.1, over a store seeded with a project as a team has it.

Each page must load with no console error; the key flows are clicked through as a viewer and
as an approver; every page is saved as a screenshot (build/test-artifacts/ui, or
$CONVEYOR_TEST_ARTIFACTS/ui) and checked for being more than a blank page.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import conveyor as cv
from conveyor.store.identity import IdentityStore
from conveyor.testing.team import TeamServer
from tests.suites.seed import ui_project

pytest.importorskip("fastapi", reason="the server needs conveyor-mlops[server]")
playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORDS = {"vic": "viewer-pass-1", "ann": "approver-pass-1"}
REPO = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("CONVEYOR_TEST_ARTIFACTS", REPO / "build" / "test-artifacts")) / "ui"

if not os.path.exists(CHROMIUM):
    pytest.skip(
        "Debian's chromium is not installed (make test installs it where it may)",
        allow_module_level=True,
    )


@dataclass
class Site:
    url: str
    ids: dict[str, str]
    root: Path


@dataclass
class Visit:
    """A logged-in page and what its console reported as errors."""

    page: Any
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("ui")
    ws = cv.init(root, project="default")
    ids = ui_project(ws)
    identity = IdentityStore(ws.metadata)
    for name, role in (("vic", "viewer"), ("ann", "approver")):
        identity.add_user(name, password=PASSWORDS[name])
        identity.grant(name, "default", role)
    ws.close()
    with TeamServer(root) as server:
        yield Site(server.url, ids, root)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def logged_in(browser: Any, site: Site, name: str) -> Visit:
    """A page of a new browser context, logged in as ``name`` through the login form."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    visit = Visit(page)
    page.on("console", lambda m: m.type == "error" and visit.errors.append(f"{page.url}: {m.text}"))
    page.on("pageerror", lambda e: visit.errors.append(f"{page.url}: {e}"))
    page.goto(f"{site.url}/ui/p/default/runs")
    assert "/ui/login" in page.url  # sent to log in, and back after
    page.fill("#name", name)
    page.fill("#password", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/p/default/runs$"))
    return visit


def shot(page: Any, name: str) -> None:
    """Save a full-page screenshot and check the page drew something."""
    from io import BytesIO

    from PIL import Image

    SHOTS.mkdir(parents=True, exist_ok=True)
    data = page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    colours = Image.open(BytesIO(data)).convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None, f"{name}: more colours than a page has"
    assert len(colours) > 20, f"{name}: the screenshot is blank"


def test_every_page_loads_without_console_errors(browser: Any, site: Site) -> None:
    visit = logged_in(browser, site, "vic")
    page = visit.page
    base = f"{site.url}/ui/p/default"
    pages = {
        "home": base,
        "runs": f"{base}/runs",
        "run": f"{base}/runs/{site.ids['run']}",
        "models": f"{base}/models",
        "model": f"{base}/models/churn",
        "model-version": f"{base}/models/churn/versions/1",
        "model-compare": f"{base}/models/churn/compare?a=1&b=2",
        "features": f"{base}/features",
        "feature-view": f"{base}/features/spend_view",
        "pipelines": f"{base}/pipelines",
        "pipeline-run": f"{base}/pipelines/{site.ids['pipeline_run']}",
        "pipeline-step-log": f"{base}/pipelines/{site.ids['pipeline_run']}?log=_double",
        "datasets": f"{base}/datasets",
        "dataset": f"{base}/datasets/customers?version=2&against=1",
        "deployments": f"{base}/deployments",
        "deployment": f"{base}/deployments/prod",
        "monitor": f"{base}/monitors/prod-watch",
        "monitor-alerts": f"{base}/monitors/prod-drift",
        "monitor-report": f"{base}/monitors/prod-watch/report",
        "lineage": f"{base}/lineage/run/{site.ids['run']}",
    }
    for name, url in pages.items():
        response = page.goto(url)
        assert response is not None, name
        assert response.status == 200, (name, response.status)
        assert page.locator("h1").count() == 1, name
        shot(page, name)
    # at phone width the navigation and tables still fit the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/runs")
    shot(page, "runs-phone")
    page.close()
    assert visit.errors == []


def test_a_viewer_sees_no_approve_button_and_the_api_refuses_them(browser: Any, site: Site) -> None:
    page = logged_in(browser, site, "vic").page
    page.goto(f"{site.url}/ui/p/default/models/churn")
    assert page.get_by_text("waiting for an approver").count() == 1
    assert page.get_by_role("button", name="Approve").count() == 0
    status = page.evaluate(
        """async (id) => {
            const csrf = document.cookie.split("; ").find((c) => c.startsWith("conveyor_csrf="));
            const response = await fetch(`/api/v1/projects/default/promotions/${id}/approve`, {
                method: "POST",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf.split("=")[1]},
                body: "{}",
            });
            return response.status;
        }""",
        site.ids["request"],
    )
    assert status == 403
    page.close()


def test_an_approver_filters_compares_approves_and_rolls_back(browser: Any, site: Site) -> None:
    visit = logged_in(browser, site, "ann")
    page = visit.page
    base = f"{site.url}/ui/p/default"
    # filter the runs with the API's filter language
    page.fill("#filter", "metrics.auc > 0.72")
    page.click("form[role=search] button[type=submit]")
    assert page.locator("table.runs tbody tr").count() == 2
    # tick both and compare them: the differing params are highlighted, the charts drawn
    for box in page.locator("input[name=run]").all():
        box.check()
    page.get_by_role("button", name="Compare ticked runs").click()
    page.wait_for_url(re.compile(r".*/compare\?.*"))
    assert page.locator("h1").inner_text() == "Compare 2 runs"
    assert page.locator("tr.differs").count() >= 2  # C and depth differ
    assert page.locator("svg.chart polyline").count() >= 2
    shot(page, "compare")
    # a run's metric chart
    page.goto(f"{base}/runs/{site.ids['run']}")
    assert page.locator("figure svg.chart polyline").count() >= 1
    # approve the pending promotion: the alias moves
    page.goto(f"{base}/models/churn")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_selector(".flash:not([hidden])")
    assert "Approved" in page.locator(".flash").inner_text()
    assert "@champion → 2" in page.locator("main").inner_text()
    shot(page, "model-approved")
    # roll the deployment back (a confirmation first)
    page.goto(f"{base}/deployments/prod")
    revisions = page.locator("tbody tr").count()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Roll back to the previous revision").click()
    page.wait_for_selector(".flash:not([hidden])")
    assert page.locator("tbody tr").count() == revisions + 1
    assert "rolled back from the web UI" in page.locator("tbody tr").first.inner_text()
    # acknowledge the open alert from the monitor's page
    page.goto(f"{base}/monitors/prod-drift")
    page.get_by_role("button", name="Acknowledge").click()
    page.wait_for_selector(".flash:not([hidden])")
    assert page.locator("span.status-acknowledged").count() == 1
    # the lineage graph opens, and a node opens the graph around it
    page.goto(f"{base}/lineage/run/{site.ids['run']}")
    assert page.locator("svg.lineage-graph a").count() >= 3  # the run, its data, its model
    page.locator("svg.lineage-graph a", has_text="customers@1").click()
    page.wait_for_url(re.compile(r".*/lineage/dataset_version/.*"))
    assert page.locator("main h1").inner_text() == "Lineage of customers@1"
    page.locator("ol.edges a").first.click()
    assert page.locator("main h1").inner_text().startswith("Lineage of") or "/runs/" in page.url
    page.close()
    assert visit.errors == []


def test_live_sections_redraw_without_reloading_the_page(browser: Any, site: Site) -> None:
    visit = logged_in(browser, site, "vic")
    page = visit.page
    page.clock.install()
    url = f"{site.url}/ui/p/default/deployments/prod"
    page.goto(url)
    page.evaluate("document.body.dataset.marker = 'still the same page'")
    with page.expect_request(lambda r: r.url == url and r.resource_type == "fetch"):
        page.clock.run_for(16_000)  # the traffic section asks again after 15 s
    page.wait_for_function("document.querySelector('#traffic figure') !== null")
    assert page.evaluate("document.body.dataset.marker") == "still the same page"
    page.close()
    assert visit.errors == []


def test_a_running_pipelines_page_redraws_until_the_run_ends(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    import threading
    import time

    gate = tmp_path / "go"

    @cv.step
    def wait_for_the_gate(path: str) -> int:
        deadline = time.monotonic() + 60
        while not Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return 1

    @cv.pipeline(name="gated")
    def gated(path: str = "") -> None:
        wait_for_the_gate(path)

    ws = cv.Workspace.from_settings(site.root, project="default")
    runner = threading.Thread(
        target=lambda: gated.run(executor="inline", workspace=ws, path=str(gate))
    )
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not (runs := cv.pipelines.list_runs("gated", status="RUNNING", workspace=ws)):
            assert time.monotonic() < deadline, "the pipeline never started"
            time.sleep(0.05)
        visit = logged_in(browser, site, "vic")
        page = visit.page
        page.clock.install()
        url = f"{site.url}/ui/p/default/pipelines/{runs[0].id}"
        page.goto(url)
        assert page.locator("#run[data-refresh]").count() == 1
        assert "RUNNING" in page.locator("#run").inner_text()
        gate.touch()
        runner.join(timeout=60)
        with page.expect_request(lambda r: r.url == url and r.resource_type == "fetch"):
            page.clock.run_for(6_000)  # the section asks again after 5 s
        page.wait_for_selector("#run:not([data-refresh])", state="attached")
        assert "SUCCEEDED" in page.locator("#run").inner_text()
        page.close()
        assert visit.errors == []
    finally:
        gate.touch()
        runner.join(timeout=60)
        ws.close()
