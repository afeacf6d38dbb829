"""Experiment tracking as users rely on it, written once; run on SQLite and PostgreSQL.

A subclass provides the ``store_uri`` fixture.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import conveyor as cv
from conveyor.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from conveyor.store.workspace import Workspace


class TrackingSuite:
    @pytest.fixture
    def ws(self, store_uri: str, tmp_path: Path):  # type: ignore[no-untyped-def]
        ws = cv.init(tmp_path, project="tracking", store_uri=store_uri, actor="ada")
        yield ws
        ws.close()

    # -- runs ------------------------------------------------------------------------------

    def test_a_run_records_what_it_logged(self, ws: Workspace) -> None:
        with cv.start_run(experiment="churn", name="rf-baseline", tags={"team": "risk"}) as run:
            cv.log_params({"n_estimators": 200, "max_depth": 8})
            cv.log_metric("auc", 0.91, step=3)
            cv.log_metrics({"loss": 0.3, "f1": 0.8}, step=3)
            cv.set_tags({"stage": "baseline"})
        got = cv.get_run(run.id)
        assert (got.name, got.experiment, got.status, got.user) == (
            "rf-baseline",
            "churn",
            cv.RunStatus.FINISHED,
            "ada",
        )
        assert got.params == {"n_estimators": "200", "max_depth": "8"}
        assert got.metrics == {"auc": 0.91, "loss": 0.3, "f1": 0.8}
        assert got.tags == {"team": "risk", "stage": "baseline"}
        assert got.end_time is not None
        assert got.end_time >= got.start_time
        assert got.python_version
        assert got.host
        assert got.environment_digest

    def test_a_run_whose_body_raises_is_failed_with_its_traceback(self, ws: Workspace) -> None:
        started: list[cv.ActiveRun] = []

        def train() -> None:
            with cv.start_run(experiment="e") as run:
                started.append(run)
                cv.log_metric("before", 1.0)
                _ = 1 / 0

        with pytest.raises(ZeroDivisionError):
            train()
        (run,) = started
        assert cv.get_run(run.id).status is cv.RunStatus.FAILED
        with ws.open_artifact(run.ref, "traceback.txt") as f:
            assert "ZeroDivisionError" in f.read().decode()

    def test_ctrl_c_marks_the_run_killed(self, ws: Workspace) -> None:
        with pytest.raises(KeyboardInterrupt), cv.start_run(experiment="e") as run:
            raise KeyboardInterrupt
        assert cv.get_run(run.id).status is cv.RunStatus.KILLED

    def test_sys_exit_zero_inside_a_run_is_a_success(self, ws: Workspace) -> None:
        with pytest.raises(SystemExit), cv.start_run(experiment="e") as run:
            raise SystemExit(0)
        assert cv.get_run(run.id).status is cv.RunStatus.FINISHED
        with pytest.raises(SystemExit), cv.start_run(experiment="e") as failed:
            raise SystemExit(2)
        assert cv.get_run(failed.id).status is cv.RunStatus.FAILED

    def test_nested_runs_know_their_parent(self, ws: Workspace) -> None:
        with cv.start_run(experiment="tune") as parent:
            with cv.start_run(name="trial-0") as child:
                assert cv.active_run() is child
            assert cv.active_run() is parent
            other = cv.start_run(experiment="tune", parent=child.id)
            other.end()
        assert cv.get_run(child.id).parent_id == parent.id
        assert cv.get_run(child.id).experiment == "tune"
        assert cv.get_run(other.id).parent_id == child.id
        assert cv.active_run() is None

    def test_a_parent_given_by_id_must_exist_and_gives_its_experiment(self, ws: Workspace) -> None:
        with cv.start_run(experiment="tune") as parent:
            pass
        with pytest.raises(NotFoundError, match="no-such-run"):
            cv.start_run(parent="no-such-run")
        assert cv.active_run() is None
        child = cv.start_run(parent=parent.id)  # an ended run, by its id
        child.end()
        got = cv.get_run(child.id)
        assert (got.parent_id, got.experiment) == (parent.id, "tune")

    def test_end_run_ends_the_innermost_run(self, ws: Workspace) -> None:
        run = cv.start_run(experiment="e")
        cv.end_run(status="KILLED")
        assert cv.get_run(run.id).status is cv.RunStatus.KILLED
        with pytest.raises(ConflictError, match="has ended"):
            run.log_metric("late", 1.0)

    # -- bad input -------------------------------------------------------------------------

    def test_logging_outside_a_run_says_to_start_one(self, ws: Workspace) -> None:
        with pytest.raises(ConflictError, match="start_run"):
            cv.log_metric("auc", 0.9)

    def test_a_non_numeric_metric_names_its_key(self, ws: Workspace) -> None:
        with cv.start_run(experiment="e"):
            with pytest.raises(InvalidArgumentError, match="'auc' must be a number"):
                cv.log_metric("auc", "high")
            with pytest.raises(InvalidArgumentError, match="'ok' must be a number"):
                cv.log_metric("ok", True)

    @pytest.mark.parametrize("key", ["", "a" * 251, "bad\nkey", "semi;colon", "/abs", "a/../b"])
    def test_bad_keys_are_refused_with_the_rule(self, ws: Workspace, key: str) -> None:
        with cv.start_run(experiment="e"), pytest.raises(InvalidArgumentError, match="key"):
            cv.log_metric(key, 1.0)

    def test_a_param_cannot_change_value(self, ws: Workspace) -> None:
        with cv.start_run(experiment="e") as run:
            cv.log_param("lr", 0.1)
            cv.log_param("lr", 0.1)  # the same value again is fine
            with pytest.raises(ConflictError, match=r"'lr'.*'0\.1'.*'0\.2'"):
                cv.log_param("lr", 0.2)
        assert cv.get_run(run.id).params == {"lr": "0.1"}

    def test_out_of_range_steps_values_and_times_are_refused_where_logged(
        self, ws: Workspace
    ) -> None:
        with cv.start_run(experiment="e") as run:
            with pytest.raises(InvalidArgumentError, match="must fit in 64 bits"):
                cv.log_metric("a", 1.0, step=2**63)
            with pytest.raises(InvalidArgumentError, match="too large to store"):
                cv.log_metric("a", 10**400)
            with pytest.raises(InvalidArgumentError, match="seconds since the epoch"):
                cv.log_metric("a", 1.0, timestamp=float("inf"))
            cv.log_metric("a", 2.0, step=np.int64(7))  # NumPy integers are integers
        assert [(p.step, p.value) for p in cv.get_metric_history(run.id, "a")] == [(7, 2.0)]
        assert cv.get_run(run.id).status is cv.RunStatus.FINISHED

    def test_the_experiment_comes_from_conveyor_experiment_unless_empty(
        self, ws: Workspace, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CONVEYOR_EXPERIMENT", "from-env")
        with cv.start_run() as named:
            pass
        monkeypatch.setenv("CONVEYOR_EXPERIMENT", "")
        with cv.start_run() as unnamed:
            pass
        assert cv.get_run(named.id).experiment == "from-env"
        assert cv.get_run(unnamed.id).experiment == "default"

    def test_a_nul_character_is_refused_where_it_is_logged(self, ws: Workspace) -> None:
        with pytest.raises(InvalidArgumentError, match="NUL"):
            cv.start_run(experiment="e", name="r\x00n")
        with cv.start_run(experiment="e") as run:
            with pytest.raises(InvalidArgumentError, match="NUL"):
                cv.log_param("p", "a\x00b")
            with pytest.raises(InvalidArgumentError, match="NUL"):
                cv.set_tag("t", "a\x00b")
            cv.log_param("p", "ab")
        assert cv.get_run(run.id).params == {"p": "ab"}

    def test_non_finite_metrics_are_stored_as_given(self, ws: Workspace) -> None:
        with cv.start_run(experiment="e") as run:
            cv.log_metrics({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")})
        got = cv.get_run(run.id).metrics
        assert math.isnan(got["nan"])
        assert (got["inf"], got["ninf"]) == (float("inf"), float("-inf"))

    # -- metrics ---------------------------------------------------------------------------

    def test_steps_count_up_by_default_and_history_is_exact(self, ws: Workspace) -> None:
        with cv.start_run(experiment="e") as run:
            for i in range(5):
                cv.log_metric("loss", 1.0 / (i + 1))
            cv.log_metric("loss", 0.01, step=10)
            cv.log_metric("loss", 0.02)  # continues after the highest step
        history = cv.get_metric_history(run.id, "loss")
        assert [p.step for p in history] == [0, 1, 2, 3, 4, 10, 11]
        assert history[-1].value == 0.02
        assert cv.get_run(run.id).metrics["loss"] == 0.02

    def test_the_latest_value_is_the_highest_step_not_the_last_logged(self, ws: Workspace) -> None:
        with cv.start_run(experiment="e") as run:
            cv.log_metric("acc", 0.9, step=5)
            cv.flush()
            cv.log_metric("acc", 0.1, step=2)  # a late, older point
        assert cv.get_run(run.id).metrics["acc"] == 0.9

    def test_long_histories_downsample_on_request(self, ws: Workspace) -> None:
        with cv.start_run(experiment="e") as run:
            for i in range(10_000):
                cv.log_metric("loss", float(i), step=i)
        assert len(cv.get_metric_history(run.id, "loss")) == 10_000
        sampled = cv.get_metric_history(run.id, "loss", max_points=100)
        assert len(sampled) == 100
        assert (sampled[0].step, sampled[-1].step) == (0, 9_999)
        assert len(cv.get_metric_history(run.id, "loss", max_points=9_999)) == 9_999
        assert [p.step for p in sampled] == sorted(p.step for p in sampled)

    # -- artifacts -------------------------------------------------------------------------

    def test_artifacts_of_every_kind(self, ws: Workspace, tmp_path: Path) -> None:
        plots = tmp_path / "plots"
        (plots / "sub").mkdir(parents=True)
        (plots / "roc.png").write_bytes(b"\x89PNG")
        (plots / "sub" / "pr.png").write_bytes(b"\x89PNG2")
        frame = pd.DataFrame({"id": [1, 2], "error": [0.1, 0.5]})
        with cv.start_run(experiment="e") as run:
            cv.log_artifact(plots)
            cv.log_artifact(plots / "roc.png", "single/roc.png")
            cv.log_dict({"a": 1}, "config.json")
            cv.log_dict({"a": 1}, "config.yaml")
            cv.log_text("hello", "notes.txt")
            cv.log_table(frame, "errors.parquet")
        names = [a.name for a in ws.list_artifacts(run.ref)]
        assert names == [
            "config.json",
            "config.yaml",
            "errors.parquet",
            "notes.txt",
            "plots/roc.png",
            "plots/sub/pr.png",
            "single/roc.png",
        ]
        with ws.open_artifact(run.ref, "errors.parquet") as f:  # a forward-only stream
            assert pd.read_parquet(io.BytesIO(f.read())).equals(frame)
        with ws.open_artifact(run.ref, "config.yaml") as f:
            assert f.read() == b"a: 1\n"

    def test_a_matplotlib_figure_is_stored_as_png(self, ws: Workspace) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        with cv.start_run(experiment="e") as run:
            link = cv.log_figure(fig, "roc.png")
        plt.close(fig)
        assert link.media_type == "image/png"
        with ws.open_artifact(run.ref, "roc.png") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # -- search ----------------------------------------------------------------------------

    @pytest.fixture
    def grid(self, ws: Workspace) -> list[str]:
        ids = []
        for depth in (4, 8, 12):
            for n in (100, 200):
                with cv.start_run(
                    experiment="grid", name=f"rf-{depth}-{n}", tags={"team": "Risk"}
                ) as run:
                    cv.log_params({"max_depth": depth, "n_estimators": n})
                    cv.log_metric("auc", round(0.80 + depth / 100 + n / 10_000, 4))
                    cv.log_metric("val auc", round(0.7 + depth / 100, 4))
                ids.append(run.id)
        with cv.start_run(experiment="other", name="lonely") as run:
            cv.log_metric("auc", 0.99)
        return ids

    def test_search_returns_a_frame_with_one_row_per_run(
        self, ws: Workspace, grid: list[str]
    ) -> None:
        frame = cv.search_runs(experiment="grid")
        assert len(frame) == 6
        assert list(frame.columns[:6]) == [
            "run_id",
            "experiment",
            "name",
            "status",
            "start_time",
            "end_time",
        ]
        assert {"params.max_depth", "metrics.auc", "metrics.val auc", "tags.team"} <= set(
            frame.columns
        )
        assert set(frame["run_id"]) == set(grid)

    def test_search_filters_and_orders(self, ws: Workspace, grid: list[str]) -> None:
        frame = cv.search_runs(
            experiment="grid",
            filter="metrics.auc > 0.9 and params.max_depth = '12'",
            order_by=["metrics.auc desc"],
        )
        assert list(frame["name"]) == ["rf-12-200", "rf-12-100"]

    @pytest.mark.parametrize(
        ("expression", "names"),
        [
            ("params.max_depth != '8' and params.n_estimators = 100", {"rf-4-100", "rf-12-100"}),
            ("metrics.auc <= 0.86", {"rf-4-100", "rf-4-200"}),
            ("metrics.auc >= 0.93", {"rf-12-100", "rf-12-200"}),
            ("metrics.auc < 0.851", {"rf-4-100"}),
            ("metrics.auc = 0.9", {"rf-8-200"}),
            ('metrics."val auc" = 0.78', {"rf-8-100", "rf-8-200"}),
            ("metrics.`val auc` > 0.8", {"rf-12-100", "rf-12-200"}),
            (
                "params.max_depth IN ('4', '12') and params.n_estimators NOT IN ('100')",
                {"rf-4-200", "rf-12-200"},
            ),
            ("attributes.name LIKE 'rf-1%'", {"rf-12-100", "rf-12-200"}),
            ("attributes.name LIKE 'RF-1%'", set()),
            ("attributes.name ILIKE 'RF-1%'", {"rf-12-100", "rf-12-200"}),
            ("tags.team = 'risk'", set()),
            ("tags.team ILIKE 'risk'", {f"rf-{d}-{n}" for d in (4, 8, 12) for n in (100, 200)}),
            (
                "(params.max_depth = '4' or params.max_depth = '12')"
                " and params.n_estimators = '200'",
                {"rf-4-200", "rf-12-200"},
            ),
            ("metrics.missing > 0", set()),
            (
                "status = 'finished' and params.max_depth = '8' and params.n_estimators = '100'",
                {"rf-8-100"},
            ),
        ],
    )
    def test_the_filter_language(
        self, ws: Workspace, grid: list[str], expression: str, names: set[str]
    ) -> None:
        found = cv.search_runs(experiment="grid", filter=expression, output="list")
        assert {r.name for r in found} == names

    def test_search_across_experiments_and_with_or_on_missing_metrics(
        self, ws: Workspace, grid: list[str]
    ) -> None:
        found = cv.search_runs(filter="metrics.auc > 0.95 or params.max_depth = '4'", output="list")
        assert {r.name for r in found} == {"lonely", "rf-4-100", "rf-4-200"}

    def test_order_by_attributes_and_params(self, ws: Workspace, grid: list[str]) -> None:
        found = cv.search_runs(
            experiment="grid",
            order_by=["params.n_estimators", "attributes.name desc"],
            output="list",
        )
        assert [r.name for r in found] == [
            "rf-8-100",
            "rf-4-100",
            "rf-12-100",
            "rf-8-200",
            "rf-4-200",
            "rf-12-200",
        ]

    def test_pages_follow_each_other_without_gaps(self, ws: Workspace, grid: list[str]) -> None:
        seen: list[str] = []
        token = None
        while True:
            page = cv.search_runs(
                experiment="grid", order_by="metrics.auc", limit=4, page_token=token, output="list"
            )
            seen += [r.id for r in page]
            token = page.next_page_token
            if token is None:
                break
        assert sorted(seen) == sorted(grid)
        assert len(seen) == 6

    def test_pages_do_not_shift_when_runs_are_added_meanwhile(
        self, ws: Workspace, grid: list[str]
    ) -> None:
        first = cv.search_runs(experiment="grid", limit=3, output="list")
        with cv.start_run(experiment="grid", name="newcomer"):
            cv.log_metric("auc", 0.5)
        second = cv.search_runs(
            experiment="grid", limit=3, page_token=first.next_page_token, output="list"
        )
        assert {r.id for r in first} | {r.id for r in second} == set(grid)
        assert "newcomer" not in {r.name for r in second}

    def test_pages_over_nulls_and_ties_cover_every_run_once(
        self, ws: Workspace, grid: list[str]
    ) -> None:
        with cv.start_run(experiment="grid", name="no-auc"):
            pass
        seen: list[str] = []
        token = None
        while True:
            page = cv.search_runs(
                experiment="grid",
                order_by=["params.n_estimators desc", "metrics.auc"],
                limit=2,
                page_token=token,
                output="list",
            )
            seen += [r.name for r in page]
            token = page.next_page_token
            if token is None:
                break
        assert len(seen) == len(set(seen)) == 7
        assert seen[-1] == "no-auc"  # runs without the key come last

    def test_a_token_from_another_search_is_refused(self, ws: Workspace, grid: list[str]) -> None:
        page = cv.search_runs(experiment="grid", limit=2, output="list")
        with pytest.raises(InvalidArgumentError, match="belongs to a different search"):
            cv.search_runs(
                experiment="grid", filter="metrics.auc > 0", page_token=page.next_page_token
            )
        with pytest.raises(InvalidArgumentError, match="not one that search_runs returned"):
            cv.search_runs(experiment="grid", page_token="garbage")

    def test_deleted_runs_leave_searches_until_restored(
        self, ws: Workspace, grid: list[str]
    ) -> None:
        cv.delete_run(grid[0])
        assert grid[0] not in set(cv.search_runs(experiment="grid")["run_id"])
        assert list(cv.search_runs(experiment="grid", view="deleted")["run_id"]) == [grid[0]]
        assert cv.get_run(grid[0]).deleted
        cv.restore_run(grid[0])
        assert grid[0] in set(cv.search_runs(experiment="grid")["run_id"])
        actions = [e.action for e in ws.metadata.audit_log(obj=cv.ObjectRef("run", grid[0]))]
        assert actions[:2] == ["run.restore", "run.delete"]

    @pytest.mark.parametrize(
        ("expression", "message"),
        [
            (
                "metrics.auc",
                "expected a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE, IN) after "
                "'metrics.auc' at column 12",
            ),
            ("metrics.auc > ", "expected a number or a quoted string after 'metrics.auc >'"),
            ("foo.bar = 1", "unknown field 'foo' at column 1"),
            ("metrics.auc > 'high'", "is a metric; compare it with a number"),
            ("params.depth > 3", "is text; compare it with =, !=, LIKE, ILIKE or IN"),
            ("attributes.color = 'red'", "unknown attribute 'color'"),
            ("(metrics.auc > 1", "expected ')'"),
        ],
    )
    def test_filter_errors_say_what_and_where(
        self, ws: Workspace, grid: list[str], expression: str, message: str
    ) -> None:
        with pytest.raises(InvalidArgumentError, match=_literal(message)):
            cv.search_runs(filter=expression)

    @pytest.mark.parametrize(
        "attack",
        [
            "params.max_depth = '8'' OR 1=1 --'",
            "params.max_depth = '8; DROP TABLE runs; --'",
            "metrics.`auc) OR 1=1 --` > 0",
            'tags.team = "x\\" OR \\"1\\"=\\"1"',
            "params.max_depth IN ('4'); DELETE FROM runs; --')",
        ],
    )
    def test_injection_strings_are_data_or_errors_never_sql(
        self, ws: Workspace, grid: list[str], attack: str
    ) -> None:
        try:
            found = cv.search_runs(filter=attack, output="list")
        except InvalidArgumentError:
            found = []
        assert len(found) == 0
        assert len(cv.search_runs(experiment="grid")) == 6

    def test_an_unknown_experiment_is_not_found(self, ws: Workspace, grid: list[str]) -> None:
        with pytest.raises(NotFoundError, match="No experiment called 'nope'"):
            cv.search_runs(experiment="nope")

    # -- durability ------------------------------------------------------------------------

    def test_logging_returns_before_storing_and_flush_stores(self, ws: Workspace) -> None:
        with cv.start_run(experiment="e") as run:
            started = time.perf_counter()
            for i in range(1000):
                cv.log_metric("x", float(i))
            assert time.perf_counter() - started < 5  # no round trip per call
            cv.flush()
            assert len(cv.get_metric_history(run.id, "x")) == 1000


def _run_row(ws: Workspace, run_id: str) -> dict:
    import sqlalchemy as sa

    from conveyor.store.metadata.schema import runs

    with ws.metadata.read() as conn:
        return dict(conn.execute(sa.select(runs).where(runs.c.id == run_id)).one()._mapping)


def _literal(text: str) -> str:
    import re

    return re.escape(text)


class TrackingRobustnessSuite(TrackingSuite):
    """Failure paths the review found: partial input, retries, ties, parallel autolog."""

    def test_a_bad_param_in_a_dict_logs_none_of_it(self, ws: Workspace) -> None:
        with cv.start_run(experiment="e") as run:
            with pytest.raises(InvalidArgumentError, match="key"):
                cv.log_params({"a": 1, "bad key;": 2, "c": 3})
            cv.log_params({"a": 1, "c": 3})
        assert cv.get_run(run.id).params == {"a": "1", "c": "3"}

    def test_a_batch_written_twice_stores_nothing_twice(self, ws: Workspace) -> None:
        from conveyor.core.clock import utcnow
        from conveyor.tracking.runs import tracker
        from conveyor.tracking.store import CreateRun, EndRun, LogMetric, LogParam, SetTag

        with cv.start_run(experiment="e") as template:
            pass
        cv.flush()
        store = tracker().store
        row = {**_run_row(ws, template.id), "id": "01JZZZZZZZZZZZZZZZZZZZZZZZ"}
        fresh, old = row["id"], template.id
        batch = [
            CreateRun(row),
            LogParam(fresh, "p", "1"),
            SetTag(fresh, "t", "x"),
            LogMetric(fresh, "m", 0.5, 0, 1000),
            EndRun(fresh, cv.RunStatus.FINISHED, utcnow()),
            LogParam(old, "q", "2"),
            LogMetric(old, "m", 0.5, 0, 1000),
        ]
        store.write(batch)
        store.write(batch)  # as after a commit whose acknowledgement was lost
        for run_id in (fresh, old):
            assert len(cv.get_metric_history(run_id, "m")) == 1
        assert cv.get_run(fresh).params == {"p": "1"}
        assert cv.get_run(old).params == {"q": "2"}
        events = [e.action for e in ws.metadata.audit_log(obj=cv.ObjectRef("run", fresh))]
        assert sorted(events) == ["run.create", "run.end"]

    def test_a_failed_statistics_refresh_does_not_resend_the_batch(
        self, ws: Workspace, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from conveyor.tracking import store as tracking_store

        monkeypatch.setattr(tracking_store, "_FIRST_ANALYZE", 1)

        def broken(tables: list[str]) -> None:
            raise RuntimeError("analyze failed")

        monkeypatch.setattr(ws.metadata, "analyze", broken)
        with cv.start_run(experiment="e") as run:
            for i in range(5):
                cv.log_metric("x", float(i))
        cv.flush()  # no error: statistics are an optimization
        assert len(cv.get_metric_history(run.id, "x")) == 5

    def test_points_at_the_same_step_agree_between_latest_and_history(self, ws: Workspace) -> None:
        with cv.start_run(experiment="e") as run:
            cv.log_metric("x", 1.0, step=3, timestamp=100.0)
            cv.flush()
            cv.log_metric("x", 2.0, step=3, timestamp=50.0)  # older, arrives later
            cv.log_metric("y", 1.0, step=3, timestamp=50.0)
            cv.log_metric("y", 2.0, step=3, timestamp=100.0)  # newer, same batch
        history = cv.get_metric_history(run.id, "x")
        got = cv.get_run(run.id).metrics
        assert history[-1].value == got["x"] == 1.0
        assert cv.get_metric_history(run.id, "y")[-1].value == got["y"] == 2.0

    def test_parallel_trials_are_each_autologged(self, ws: Workspace) -> None:
        pytest.importorskip("optuna")
        pytest.importorskip("sklearn")
        from sklearn.datasets import load_breast_cancer
        from sklearn.tree import DecisionTreeClassifier

        x, y = load_breast_cancer(return_X_y=True)
        cv.autolog()
        try:

            def objective(params: dict) -> float:
                model = DecisionTreeClassifier(max_depth=params["d"]).fit(x, y)
                return float(model.score(x, y))

            result = cv.tune(objective, {"d": (1, 6)}, n_trials=8, parallel=4, experiment="t")
        finally:
            cv.autolog(disable=True)
        trials = cv.search_runs(
            experiment="t", filter="attributes.name LIKE 'trial-%'", output="list"
        )
        assert len(trials) == result.n_trials == 8
        assert all("training_accuracy" in t.metrics for t in trials)
