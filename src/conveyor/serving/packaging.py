"""Packaging: a Dockerfile and Kubernetes manifests for serving one model version.

``build`` writes, under ``out``:

- ``Dockerfile``: a slim Python base, the model's pinned requirements, a non-root user, a
  HEALTHCHECK on ``/readyz``, and ``conveyor serve`` as the command;
- ``requirements.txt``: Conveyor with its serving extra plus the model's own pins;
- ``workspace/``: with ``bake=True`` (the default), a project holding only this model
  version (as ``NAME@serving``), so the image needs no store at run time; with ``bake=False``
  the container reads the version from the team's stores (``CONVEYOR_STORE_URI``,
  ``CONVEYOR_ARTIFACT_URI``), pinned by its digest;
- ``k8s/deployment.yaml``, ``k8s/service.yaml``, ``k8s/hpa.yaml``: a Deployment with
  readiness and liveness probes and resource requests, a Service, an autoscaler.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conveyor._version import __version__
from conveyor.core.errors import InvalidArgumentError
from conveyor.models.service import model_service
from conveyor.store.workspace import Workspace

__all__ = ["BuildResult", "build"]

PORT = 8080
UID = 10001  # numeric, so Kubernetes can check runAsNonRoot
MARKER = ".conveyor-build"
HEALTH_URL = f"http://127.0.0.1:{PORT}/readyz"
SERVING_ALIAS = "serving"


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What ``build`` wrote."""

    out: Path
    model: str
    digest: str
    image: str
    files: list[str] = field(default_factory=list)
    baked: bool = True
    #: What the image still needs that build could not put in it (say so before it ships).
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "model": self.model,
            "digest": self.digest,
            "image": self.image,
            "files": self.files,
            "baked": self.baked,
            "warnings": self.warnings,
        }


def _k8s_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return (cleaned or "model")[:50]


def build(
    ws: Workspace,
    ref: str,
    out: str | os.PathLike[str],
    *,
    bake: bool = True,
    image: str | None = None,
    replicas: int = 2,
    max_replicas: int = 10,
    cpu: str = "500m",
    memory: str = "512Mi",
    python: str = "3.11",
    optimize: str = "none",
    trust: bool = False,
    force: bool = False,
) -> BuildResult:
    """Write the Dockerfile, requirements, (baked) workspace and manifests for ``ref``."""
    models = model_service(ws)
    version = models.get(ref)
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        if not force:
            raise InvalidArgumentError(
                f"{target} exists and is not empty.",
                hint="Choose another --out, or pass --force to replace an earlier build.",
            )
        if not (target / MARKER).is_file():
            raise InvalidArgumentError(
                f"{target} is not a folder conveyor build wrote (it has no {MARKER}); "
                "--force replaces only those.",
                hint="Choose another --out.",
            )
    name = _k8s_name(version.name)
    image = image or f"{name}:{version.version}"
    staging = target.with_name(f".{target.name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    files: list[str] = []

    def write(rel: str, text: str) -> None:
        path = staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        files.append(rel)

    write(MARKER, f"{version.ref} {version.digest}\n")
    serve_ref = f"{version.name}@{SERVING_ALIAS}" if bake else version.ref
    from conveyor.models.flavors import get_flavor

    flavor = get_flavor(version.flavor)
    if flavor.executes_code and not trust:
        raise InvalidArgumentError(
            f"{version.ref} is a {version.flavor} model ({flavor.code_reason}): the image would "
            "run code from it at start.",
            hint="Pass --trust if you trust it; the image then serves it with --trust.",
        )
    if bake:
        _bake(ws, version.ref, staging / "workspace", trust=trust)
        files.append("workspace/")
    requirements = _requirements(version.requirements)
    write("requirements.txt", "\n".join(requirements) + "\n")
    write(
        "Dockerfile",
        _dockerfile(python, serve_ref, bake, optimize, version.digest, flavor.executes_code),
    )
    write(".dockerignore", "**/__pycache__\n*.pyc\n.git\n")
    labels = {"app.kubernetes.io/name": name, "conveyor.dev/model": version.ref.replace("/", "-")}
    write(
        "k8s/deployment.yaml", _dump(_deployment(name, image, labels, replicas, cpu, memory, bake))
    )
    write("k8s/service.yaml", _dump(_service(name, labels)))
    write("k8s/hpa.yaml", _dump(_hpa(name, replicas, max_replicas)))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    warnings = _code_outside_packages(version.info.get("class")) if flavor.executes_code else []
    return BuildResult(target, version.ref, version.digest, image, sorted(files), bake, warnings)


def _code_outside_packages(cls: Any) -> list[str]:
    """A warning when a code model's class comes from a module of this machine that no
    installed package provides (a file beside the script that logged it): the image has
    the model's requirements, not that file, and would fail to load the model."""
    if not isinstance(cls, str) or "." not in cls:
        return []
    import importlib.util

    module = cls.rsplit(".", 1)[0]
    try:
        spec = importlib.util.find_spec(module.split(".", 1)[0])
    except (ImportError, ValueError):
        spec = None
    origin = getattr(spec, "origin", None) or ""
    if "site-packages" in origin or "dist-packages" in origin:
        return []
    return [
        f"The model's class {cls} comes from the module {module!r}, which no installed package "
        "provides, so the image does not have it: copy the module into the build folder and "
        "the Dockerfile (COPY, and PYTHONPATH), or package it and add it to requirements.txt."
    ]


def _bake(ws: Workspace, ref: str, root: Path, *, trust: bool) -> None:
    """Copy one model version into a fresh project at ``root`` as ``NAME@serving``."""
    models = model_service(ws)
    loaded = models.load(ref, trust=trust)
    example = models.input_example(ref)
    # A project of its own in ``root``, whatever CONVEYOR_* says: through a team server,
    # the copy would otherwise go to the team's registry as a new version.
    state = root.absolute() / ".conveyor"
    baked = Workspace.from_settings(
        root,
        project=ws.settings.project,
        actor="conveyor-build",
        store_uri=f"sqlite:///{state / 'conveyor.db'}",
        artifact_uri=str(state / "objects"),
        remote_uri="",
    )
    with baked:
        target = model_service(baked)
        copy = target.log(
            loaded.model,
            loaded.version.name,
            signature=loaded.signature,
            input_example=example,
            features=loaded.version.info.get("features"),
            description=f"{ref} (digest {loaded.version.digest[:12]}), baked by conveyor build",
        )
        target.set_alias(copy.name, SERVING_ALIAS, copy.version)
    # The image's project is the one the model was baked into, whatever the folder's name:
    # without this, `conveyor serve` in the container looks in project "default".
    from conveyor.core.config import CONFIG_FILE, render_config_template

    root.mkdir(parents=True, exist_ok=True)
    (root / CONFIG_FILE).write_text(render_config_template(ws.settings.project), encoding="utf-8")


def _requirements(pins: dict[str, str]) -> list[str]:
    lines = [f"conveyor-mlops[serve]=={__version__}"]
    for package, version in sorted(pins.items()):
        if package in ("conveyor-mlops", "python"):
            continue
        lines.append(f"{package}=={version}" if version else package)
    return lines


def _dockerfile(python: str, ref: str, bake: bool, optimize: str, digest: str, trust: bool) -> str:
    copy = f"COPY --chown={UID}:{UID} workspace/ /srv/model/\n" if bake else ""
    env = (
        "ENV CONVEYOR_ROOT=/srv/model\n"
        if bake
        else "# The team's stores come from the deployment's environment:\n"
        "# CONVEYOR_STORE_URI, CONVEYOR_ARTIFACT_URI (and CONVEYOR_PROJECT).\n"
        "ENV CONVEYOR_ROOT=/srv/model\n"
    )
    extra = f" --optimize {optimize}" if optimize != "none" else ""
    if trust:
        extra += " --trust"
    return f"""# Serves {ref} (model digest {digest}). Written by conveyor build.
FROM python:{python}-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN groupadd --system --gid {UID} conveyor \\
    && useradd --system --uid {UID} --gid conveyor --home /srv conveyor \\
    && mkdir -p /srv/model && chown -R {UID}:{UID} /srv

COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

{copy}{env}WORKDIR /srv/model
USER {UID}
EXPOSE {PORT}

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \\
    CMD python -c "from urllib.request import urlopen; urlopen('{HEALTH_URL}', timeout=2)"

# All interfaces of the container's own network: the Service and the probes reach it there.
CMD ["conveyor", "serve", "{ref}", "--host", "0.0.0.0", "--port", "{PORT}"{_split(extra)}]
"""


def _split(extra: str) -> str:
    return "".join(f', "{part}"' for part in extra.split())


def _dump(doc: dict[str, Any]) -> str:
    return "# Written by conveyor build.\n" + yaml.safe_dump(doc, sort_keys=False)


def _deployment(
    name: str, image: str, labels: dict[str, str], replicas: int, cpu: str, memory: str, bake: bool
) -> dict[str, Any]:
    probe = {
        "httpGet": {"path": "/readyz", "port": PORT},
        "periodSeconds": 5,
        "failureThreshold": 3,
    }
    container: dict[str, Any] = {
        "name": "model",
        "image": image,
        "ports": [{"name": "http", "containerPort": PORT}],
        "readinessProbe": probe | {"initialDelaySeconds": 2},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": PORT},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "initialDelaySeconds": 10,
        },
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"memory": memory},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "allowPrivilegeEscalation": False,
        },
    }
    if not bake:
        container["envFrom"] = [{"secretRef": {"name": f"{name}-conveyor-stores"}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(PORT),
                    },
                },
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 30},
            },
        },
    }


def _service(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": 80, "targetPort": PORT}],
        },
    }


def _hpa(name: str, replicas: int, max_replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": replicas,
            "maxReplicas": max(max_replicas, replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }
