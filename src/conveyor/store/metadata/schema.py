"""The tables, as SQLAlchemy Core. Migrations under ``migrations/versions`` create them.

A test compares this metadata with what the migrations build, so the two cannot drift.
"""

from __future__ import annotations

import sqlalchemy as sa

from conveyor.store.metadata.types import JSONType, UTCDateTime

__all__ = [
    "alert_rules",
    "alerts",
    "artifact_links",
    "artifacts",
    "audit_events",
    "dataset_versions",
    "datasets",
    "deployment_revisions",
    "deployments",
    "entities",
    "experiments",
    "feature_view_versions",
    "feature_views",
    "idempotency_keys",
    "latest_metrics",
    "leases",
    "lineage_edges",
    "materializations",
    "metadata",
    "metrics",
    "model_alias_history",
    "model_aliases",
    "model_evaluations",
    "model_versions",
    "models",
    "monitor_results",
    "monitors",
    "params",
    "pipeline_runs",
    "pipelines",
    "projects",
    "promotion_requests",
    "role_bindings",
    "runs",
    "schedules",
    "step_runs",
    "tags",
    "tokens",
    "users",
    "webhook_deliveries",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = sa.String(26)
KIND = sa.String(64)
OBJECT_ID = sa.String(200)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("object_kind", KIND, nullable=False),
    sa.Column("object_id", OBJECT_ID, nullable=False),
    sa.Column("before", JSONType, nullable=True),
    sa.Column("after", JSONType, nullable=True),
    sa.Column("token_id", ID, nullable=True),  # the API token of the request (team server)
    sa.Column("source", sa.String(100), nullable=True),  # the client address of the request
    sa.Index(None, "object_kind", "object_id"),
    sa.Index(None, "at"),
    sa.Index(None, "actor"),
)

lineage_edges = sa.Table(
    "lineage_edges",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=True),
    sa.Column("src_kind", KIND, nullable=False),
    sa.Column("src_id", OBJECT_ID, nullable=False),
    sa.Column("dst_kind", KIND, nullable=False),
    sa.Column("dst_id", OBJECT_ID, nullable=False),
    sa.Column("relation", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("src_kind", "src_id", "dst_kind", "dst_id", "relation"),
    sa.Index(None, "dst_kind", "dst_id"),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("media_type", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

artifact_links = sa.Table(
    "artifact_links",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("digest", sa.String(64), sa.ForeignKey("artifacts.digest"), nullable=False),
    sa.Column("owner_kind", KIND, nullable=False),
    sa.Column("owner_id", OBJECT_ID, nullable=False),
    sa.Column("name", sa.String(1024), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("owner_kind", "owner_id", "name"),
    sa.Index(None, "digest"),
)

# -- tracking (revision 0003) ---------------------------------------------------------------

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("project_id", "name"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("start_time", UTCDateTime, nullable=False),
    sa.Column("end_time", UTCDateTime, nullable=True),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("parent_id", ID, nullable=True),
    sa.Column("git_commit", sa.String(64), nullable=True),
    sa.Column("git_branch", sa.String(250), nullable=True),
    sa.Column("git_dirty", sa.Boolean, nullable=True),
    sa.Column("command", sa.Text, nullable=False, server_default=""),
    sa.Column("python_version", sa.String(50), nullable=False, server_default=""),
    sa.Column("host", sa.String(250), nullable=False, server_default=""),
    sa.Column("environment_digest", sa.String(64), nullable=True),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sa.Index(None, "experiment_id", "start_time"),
    sa.Index(None, "project_id", "start_time", "id"),  # a project's runs, newest first
    sa.Index(None, "parent_id"),
)

# Key/value tables are clustered on their primary key in SQLite (WITHOUT ROWID), and their
# (key, value, run_id) indexes cover a search's filter, so a search reads indexes only.
params = sa.Table(
    "params",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Index(None, "key", "value", "run_id"),
    sqlite_with_rowid=False,
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Index(None, "key", "value", "run_id"),
    sqlite_with_rowid=False,
)

# Every point of every metric. NaN is stored as NULL (SQLite cannot store NaN). A point is
# unique, so a batch retried after a lost commit stores nothing twice.
metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("key", sa.String(250), nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Index(None, "run_id", "key", "step", "timestamp_ms", "value", unique=True),
)

# The value at the highest step of each metric of each run, kept for fast search and sort.
latest_metrics = sa.Table(
    "latest_metrics",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Index(None, "key", "value", "run_id"),
    sqlite_with_rowid=False,
)

# -- data versioning (revision 0004) --------------------------------------------------------

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("project_id", "name"),
)

dataset_versions = sa.Table(
    "dataset_versions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("dataset_id", ID, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # sha256 of the manifest: the identity of the content, the same for the same files.
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # "files" or "table"
    sa.Column("table_format", sa.String(16), nullable=True),
    sa.Column("files", sa.Integer, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=True),
    sa.Column("columns", JSONType, nullable=True),
    sa.Column("profile", JSONType, nullable=True),
    sa.Column("schema_digest", sa.String(64), nullable=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("source", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.UniqueConstraint("dataset_id", "version"),
    sa.Index(None, "dataset_id", "digest"),
)

# -- model registry (revision 0005) ---------------------------------------------------------

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False, server_default="0"),
    # Aliases that only an approved promotion request may move; NULL: none are protected.
    sa.Column("protected_aliases", JSONType, nullable=True),
    sa.UniqueConstraint("project_id", "name"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("model_id", ID, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # sha256 of the model document (flavor, files and their digests, signature, ...).
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("flavor", sa.String(64), nullable=False),
    sa.Column("signature", JSONType, nullable=True),
    sa.Column("requirements", JSONType, nullable=False),
    sa.Column("info", JSONType, nullable=False),
    sa.Column("run_id", ID, nullable=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="ready"),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.UniqueConstraint("model_id", "version"),
    sa.Index(None, "run_id"),
)

# Which version each alias points at now.
model_aliases = sa.Table(
    "model_aliases",
    metadata,
    sa.Column("model_id", ID, sa.ForeignKey("models.id"), primary_key=True),
    sa.Column("alias", sa.String(100), primary_key=True),
    sa.Column("version_id", ID, sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("set_at", UTCDateTime, nullable=False),
    sa.Column("set_by", sa.String(200), nullable=False),
)

# Every move of every alias: "which version was champion on date D" is a query over it.
model_alias_history = sa.Table(
    "model_alias_history",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("model_id", ID, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("alias", sa.String(100), nullable=False),
    sa.Column("version_id", ID, nullable=True),  # NULL: the alias was removed
    sa.Column("previous_version_id", ID, nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("request_id", ID, nullable=True),
    sa.Index(None, "model_id", "alias", "at"),
)

promotion_requests = sa.Table(
    "promotion_requests",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("model_id", ID, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("version_id", ID, sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("alias", sa.String(100), nullable=False),
    # The version the alias pointed at when the request was made (its checks compared with
    # it): approving fails if the alias has moved since.
    sa.Column("holder_version_id", ID, nullable=True),
    # pending, approved, rejected; applied (deferred, used), withdrawn (by its requester)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("checks", JSONType, nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("comment", sa.Text, nullable=False, server_default=""),
    sa.Column("decided_by", sa.String(200), nullable=True),
    sa.Column("decided_at", UTCDateTime, nullable=True),
    sa.Column("decision_comment", sa.Text, nullable=False, server_default=""),
    # Deferred: approving does not move the alias; whoever asked moves it later with this
    # request (the continuous-training loop approves a candidate before its canary).
    sa.Column("deferred", sa.Boolean, nullable=True),
    sa.Index(None, "model_id", "status"),
)

# An evaluation of a model version on labelled data (a dataset version, or a DataFrame).
model_evaluations = sa.Table(
    "model_evaluations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("version_id", ID, sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("dataset_version_id", ID, nullable=True),
    sa.Column("dataset", sa.String(250), nullable=False),
    sa.Column("target", sa.String(250), nullable=False),
    sa.Column("task", sa.String(32), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("metrics", JSONType, nullable=False),
    sa.Column("slices", JSONType, nullable=False),
    sa.Column("fairness", JSONType, nullable=False),
    sa.Column("importance", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Index(None, "version_id", "dataset_version_id"),
)

# One row per registry event and webhook URL: how its delivery ended.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, nullable=False),
    sa.Column("url", sa.String(500), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("payload", JSONType, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # delivered, failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("response_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Index(None, "project_id", "finished_at"),
)

# -- pipelines ---------------------------------------------------------------------------

pipelines = sa.Table(
    "pipelines",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("entrypoint", sa.String(500), nullable=False),  # module:attr or file.py:attr
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("project_id", "name"),
)

# A pipeline run; its id is also the id of its tracked run (the parent of its steps' runs).
pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("pipeline_id", ID, sa.ForeignKey("pipelines.id"), nullable=False),
    sa.Column("project_id", ID, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", JSONType, nullable=False),
    sa.Column("entrypoint", sa.String(500), nullable=False),
    sa.Column("executor", sa.String(200), nullable=False),
    sa.Column("resumed_from", ID, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("coordinator", sa.String(200), nullable=False, server_default=""),  # host:pid
    sa.Column("heartbeat_at", UTCDateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Index(None, "project_id", "started_at"),
    sa.Index(None, "pipeline_id", "started_at"),
)

# A step's run within a pipeline run; its id is also the id of the step's tracked run.
step_runs = sa.Table(
    "step_runs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("pipeline_run_id", ID, sa.ForeignKey("pipeline_runs.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),  # the call's name: train, train_2, ...
    sa.Column("step", sa.String(200), nullable=False),  # the step function's name
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("cache_key", sa.String(64), nullable=True),
    sa.Column("cached_from", ID, nullable=True),  # the step run whose outputs were reused
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("upstream", JSONType, nullable=False),  # names of the calls it waited for
    sa.Column("outputs", JSONType, nullable=True),
    sa.Column("reads", JSONType, nullable=True),  # dataset refs read and what they resolved to
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("pipeline_run_id", "name"),
    sa.Index(None, "cache_key"),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("pipeline", sa.String(200), nullable=False),
    sa.Column("entrypoint", sa.String(500), nullable=False),
    sa.Column("cron", sa.String(100), nullable=False),
    sa.Column("params", JSONType, nullable=False),
    sa.Column("executor", sa.String(200), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("catch_up", sa.Integer, nullable=False, server_default="1"),
    sa.Column("next_run_at", UTCDateTime, nullable=False),
    sa.Column("last_run_at", UTCDateTime, nullable=True),
    sa.Column("last_run_id", ID, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    # The user a schedule made through a team server runs as (None: made on the host).
    sa.Column("owner_id", ID, nullable=True),
    sa.UniqueConstraint("project_id", "name"),
)

# Leases: at most one holder at a time (the scheduler of a project holds one while it runs).
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(250), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

# Failed sign-ins and token creations per client address: a team server's rate limits,
# shared by all of its processes (conveyor.store.ratelimits).
rate_hits = sa.Table(
    "rate_hits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index(None, "key", "at"),
    sa.Index(None, "at"),
)

# -- features ------------------------------------------------------------------------------

entities = sa.Table(
    "entities",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("keys", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("project_id", "name"),
)

# Feature views and on-demand views (kind); each changed definition is a new version.
feature_views = sa.Table(
    "feature_views",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # view, on_demand
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("project_id", "name"),
)

feature_view_versions = sa.Table(
    "feature_view_versions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("view_id", ID, sa.ForeignKey("feature_views.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("definition", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.UniqueConstraint("view_id", "version"),
)

materializations = sa.Table(
    "materializations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("view_id", ID, sa.ForeignKey("feature_views.id"), nullable=False),
    sa.Column("version_id", ID, nullable=False),
    sa.Column("online_uri", sa.String(500), nullable=False),
    sa.Column("start_at", UTCDateTime, nullable=True),
    sa.Column("end_at", UTCDateTime, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # What the source read (files with size and mtime, or a dataset digest): the next
    # incremental run tells late rows by it.
    sa.Column("source_state", JSONType, nullable=True),
    sa.Index(None, "view_id", "end_at"),
)

# Deployments: a name for what a fleet of servers runs; each change is a new revision whose
# policy lists the routes (model reference, weight, role), the A/B key and canary limits.
deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("latest_revision", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("project_id", "name"),
)

deployment_revisions = sa.Table(
    "deployment_revisions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("deployment_id", ID, sa.ForeignKey("deployments.id"), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("policy", JSONType, nullable=False),
    sa.Column("change", sa.String(32), nullable=False),  # create, canary, ab, shadow, ...
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.UniqueConstraint("deployment_id", "revision"),
)

# Monitors watch a deployment's prediction log against a reference dataset version; each run
# stores its drift, quality, performance and service results.
monitors = sa.Table(
    "monitors",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("deployment", sa.String(100), nullable=False),
    sa.Column("reference", sa.String(300), nullable=False),
    sa.Column("window_seconds", sa.Integer, nullable=False),
    sa.Column("schedule", sa.String(100), nullable=True),
    sa.Column("next_run_at", UTCDateTime, nullable=True),  # scheduled monitors: when next due
    sa.Column("config", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.UniqueConstraint("project_id", "name"),
)

monitor_results = sa.Table(
    "monitor_results",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("monitor_id", ID, sa.ForeignKey("monitors.id"), nullable=False),
    sa.Column("start_at", UTCDateTime, nullable=False),
    sa.Column("end_at", UTCDateTime, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("labelled_rows", sa.BigInteger, nullable=False),
    sa.Column("dataset_drifted", sa.Boolean, nullable=True),
    sa.Column("share_drifted", sa.Float, nullable=True),
    sa.Column("result", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "monitor_id", "end_at"),
)

# Alert rules watch one field of a monitor's results; an alert is open while its rule holds.
alert_rules = sa.Table(
    "alert_rules",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("monitor_id", ID, sa.ForeignKey("monitors.id"), nullable=False),
    sa.Column("expression", sa.String(300), nullable=False),
    sa.Column("cooldown_seconds", sa.Integer, nullable=False),
    sa.Column("notify", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.UniqueConstraint("monitor_id", "expression"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("rule_id", ID, sa.ForeignKey("alert_rules.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open, acknowledged, resolved
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("result_id", ID, nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime, nullable=True),
    sa.Column("deliveries", JSONType, nullable=False),
    sa.Index(None, "rule_id", "status"),
)

# -- the closed loop -----------------------------------------------------------------------

# A continuous-training policy: its spec (triggers, gate, approval, rollout) and the cursors
# its triggers read from (next scheduled fire, newest monitor result and dataset version seen).
loop_policies = sa.Table(
    "loop_policies",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("deployment", sa.String(100), nullable=False),
    sa.Column("spec", JSONType, nullable=False),
    sa.Column("cursors", JSONType, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.UniqueConstraint("project_id", "name"),
)

# One execution of a policy, from its trigger to promoted / rejected / rolled_back / failed.
# (policy_id, trigger_key) is unique: one trigger never starts two executions.
loop_executions = sa.Table(
    "loop_executions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("policy_id", ID, sa.ForeignKey("loop_policies.id"), nullable=False),
    sa.Column("trigger_key", sa.String(200), nullable=False),
    sa.Column("trigger", JSONType, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # bumped by every move (compare-and-set)
    sa.Column("spec", JSONType, nullable=False),  # the policy as it was when it started
    sa.Column("pipeline_run_id", ID, nullable=True),
    sa.Column("previous_run_id", ID, nullable=True),  # the run a resume continues
    sa.Column("candidate", sa.String(200), nullable=True),
    sa.Column("champion", sa.String(200), nullable=True),
    sa.Column("request_id", ID, nullable=True),
    sa.Column("revision", sa.Integer, nullable=True),  # the deployment revision last written
    sa.Column("gate", JSONType, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("state_at", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("policy_id", "trigger_key"),
    sa.Index(None, "policy_id", "state"),
)

# What happened, with reasons: triggers (also those ignored), state changes, decisions.
loop_events = sa.Table(
    "loop_events",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("policy_id", ID, sa.ForeignKey("loop_policies.id"), nullable=False),
    sa.Column("execution_id", ID, nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", JSONType, nullable=False),
    sa.Index(None, "policy_id", "at"),
)


# -- the team server: who may do what ------------------------------------------------------

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200), nullable=True),  # argon2id, for browser login
    sa.Column("is_admin", sa.Boolean, nullable=False),  # server-wide: users, projects, audit
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("disabled_at", UTCDateTime, nullable=True),
)

# API tokens: only the SHA-256 of the secret is kept (the secret is 256 random bits, shown once).
tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(12), nullable=False),  # shown in listings to tell them apart
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=True),  # NULL: any
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
)

role_bindings = sa.Table(
    "role_bindings",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("project_id", ID, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # viewer, editor, approver, admin
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("user_id", "project_id"),
)

# A remote write batch's key, stored in the batch's own transaction: a retried batch whose
# first attempt committed is recognised and not applied twice.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("project_id", ID, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, index=True),
)
