"""``@step`` and ``@pipeline``: plain Python functions, and the DAG a pipeline call builds.

Calling steps inside a pipeline function does not run them: each call returns a future
(:class:`StepOutput`) and adds a node to the graph being built; passing a future to another
step draws the edge. The engine (``engine.py``) then runs the graph.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import types
import typing
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from conveyor.core.durations import parse_duration
from conveyor.core.errors import ConveyorError, InvalidArgumentError
from conveyor.core.modules import entrypoint_of

__all__ = ["Graph", "Node", "Pipeline", "Step", "StepOptions", "StepOutput", "pipeline", "step"]

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
_building: ContextVar[Graph | None] = ContextVar("conveyor_pipeline_graph", default=None)
#: Keyword arguments of Pipeline.run that are not pipeline parameters.
RUN_OPTIONS = frozenset({"executor", "cache", "workspace", "progress"})
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass(frozen=True, slots=True)
class StepOptions:
    name: str
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    resources: dict[str, float] = field(default_factory=dict)
    cache: bool = True
    version: str = "1"
    packages: tuple[str, ...] = ()


class Step(Generic[R]):
    """A function that runs as one tracked, cached step of a pipeline."""

    def __init__(self, fn: Callable[..., R], options: StepOptions) -> None:
        self.fn = fn
        self.options = options
        self.signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<step {self.options.name}>"

    @property
    def name(self) -> str:
        return self.options.name

    @functools.cached_property
    def returns(self) -> Any:
        """The return annotation, resolved (None when absent or unresolvable)."""
        try:
            hints = typing.get_type_hints(self.fn)
        except Exception:  # noqa: BLE001 - a hint that cannot resolve is simply not checked
            return None
        return hints.get("return")

    @functools.cached_property
    def n_outputs(self) -> int | None:
        """How many outputs the step has: N for ``-> tuple[A, B, ...]``, else None (one)."""
        ann = self.returns
        if typing.get_origin(ann) is tuple:
            args = typing.get_args(ann)
            if args and args[-1] is not Ellipsis and args != ((),):
                return len(args)
        return None

    @property
    def source_digest(self) -> str:
        """A digest of the code the step runs (see :func:`code_digest`), computed at each
        call: a global changed between two runs in one session changes it."""
        return code_digest(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        graph = _building.get()
        if graph is None:
            if _contains_future(args) or _contains_future(kwargs):
                raise InvalidArgumentError(
                    f"Step {self.name!r} was called outside a pipeline with the output of "
                    "another step; outputs only exist while a pipeline is being built.",
                    hint="Call it from inside a @cv.pipeline function, or pass it real values.",
                )
            return self.fn(*args, **kwargs)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise InvalidArgumentError(
                f"Step {self.name!r} was called with bad arguments: {e}."
            ) from None
        node = graph.add(self, dict(bound.arguments))
        if self.n_outputs is None:
            return StepOutput(node, None)
        return tuple(StepOutput(node, i) for i in range(self.n_outputs))

    def __reduce__(self) -> tuple[Any, ...]:
        # By value (cloudpickle pickles the function by value when the module attribute is
        # this Step and not the function), so workers on any machine can run it. The return
        # annotation goes resolved: a function pickled by value keeps only the globals its
        # code uses, so names used only in annotations would not resolve in the worker.
        return (_rebuild_step, (self.fn, self.options, self.returns))


def _rebuild_step(fn: Callable[..., Any], options: StepOptions, returns: Any) -> Step[Any]:
    rebuilt: Step[Any] = Step(fn, options)
    rebuilt.__dict__["returns"] = returns  # fills the cached_property
    return rebuilt


class StepOutput:
    """A future: an output of a step call, known once the step has run."""

    __slots__ = ("index", "node")

    def __init__(self, node: Node, index: int | None) -> None:
        self.node = node
        self.index = index

    def __repr__(self) -> str:
        suffix = "" if self.index is None else f"[{self.index}]"
        return f"<output of {self.node.name}{suffix}>"

    def __iter__(self) -> Iterator[Any]:
        raise InvalidArgumentError(
            f"The output of step {self.node.step.name!r} cannot be unpacked: the step returns "
            "one value as far as its annotation says.",
            hint="Annotate the step's return as tuple[A, B] to unpack it into two outputs.",
        )

    def __bool__(self) -> bool:
        raise InvalidArgumentError(
            f"The output of step {self.node.name!r} has no value yet: a pipeline function "
            "builds the graph before any step runs, so it cannot branch on outputs.",
            hint="Move the decision into a step.",
        )

    @property
    def key(self) -> str:
        return self.node.name if self.index is None else f"{self.node.name}[{self.index}]"


def _contains_future(value: Any) -> bool:
    found = False

    def visit(v: Any) -> Any:
        nonlocal found
        found = True
        return v

    map_futures(value, visit)
    return found


def map_futures(value: Any, fn: Callable[[StepOutput], Any]) -> Any:
    """Return ``value`` with every future in it (inside lists, tuples, dicts) replaced by
    ``fn(future)``."""
    if isinstance(value, StepOutput):
        return fn(value)
    if type(value) in (list, tuple):
        return type(value)(map_futures(v, fn) for v in value)
    if type(value) is dict:
        return {k: map_futures(v, fn) for k, v in value.items()}
    return value


@dataclass
class Node:
    """One step call in the graph."""

    name: str
    step: Step[Any]
    arguments: dict[str, Any]
    upstream: list[str]


class Graph:
    """The step calls of one pipeline run, in call order (which is a topological order)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self._counts: dict[str, int] = {}

    def add(self, step: Step[Any], arguments: dict[str, Any]) -> Node:
        upstream: list[str] = []

        def note(future: StepOutput) -> StepOutput:
            if self.nodes.get(future.node.name) is not future.node:
                raise InvalidArgumentError(
                    f"Step {step.name!r} was given an output of {future.node.name!r} from "
                    "another pipeline run; outputs cannot cross pipeline runs."
                )
            if future.node.name not in upstream:
                upstream.append(future.node.name)
            return future

        map_futures(arguments, note)
        count = self._counts.get(step.name, 0) + 1
        name = step.name if count == 1 else f"{step.name}_{count}"
        while name in self.nodes:  # "train_2" taken by a step named so: the next number
            count += 1
            name = f"{step.name}_{count}"
        self._counts[step.name] = count
        node = Node(name, step, arguments, upstream)
        self.nodes[name] = node
        return node

    def check_acyclic(self) -> None:
        """Raise if the graph has a cycle (naming the steps on it)."""
        state: dict[str, int] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = [*path[path.index(name) :], name]
                raise InvalidArgumentError(
                    f"The pipeline's steps form a cycle: {' -> '.join(cycle)}."
                )
            state[name] = 1
            for up in self.nodes[name].upstream:
                visit(up, [*path, name])
            state[name] = 2

        for name in self.nodes:
            visit(name, [])


def _step_name(name: str, what: str) -> str:
    if not name or len(name) > 200 or not set(name) <= _NAME_OK:
        raise InvalidArgumentError(
            f"A {what} name must be 1 to 200 letters, digits, '_', '-' or '.'; got {name!r}."
        )
    return name


@overload
def step(fn: F, /) -> Step[Any]: ...
@overload
def step(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: str | float = 1.0,
    timeout: str | float | None = None,
    resources: dict[str, float] | None = None,
    cache: bool = True,
    version: str = "1",
    packages: list[str] | tuple[str, ...] = (),
) -> Callable[[F], Step[Any]]: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: str | float = 1.0,
    timeout: str | float | None = None,
    resources: dict[str, float] | None = None,
    cache: bool = True,
    version: str = "1",
    packages: list[str] | tuple[str, ...] = (),
) -> Step[Any] | Callable[[F], Step[Any]]:
    """Make a function a pipeline step (``@cv.step`` or ``@cv.step(retries=2, ...)``).

    - ``retries``: run again this many times after a failure, waiting ``retry_delay`` (a
      duration: ``"1s"``, ``2.5``) then twice as long each time.
    - ``timeout``: stop the step after this long (``"10m"``); the attempt fails.
    - ``resources``: what the step needs on Ray (``{"cpus": 1, "gpus": 0, "memory": 2e9}``).
    - ``cache``: reuse the outputs of an earlier run with the same cache key (the step's
      code, ``version``, arguments, input digests, the versions of ``packages``, and the
      dataset versions it loaded); ``version="2"`` forces a new run.

    Outside a pipeline the step is a plain function call.
    """

    def wrap(f: Callable[..., Any]) -> Step[Any]:
        if not callable(f):
            raise InvalidArgumentError(f"@step decorates a function; got {f!r}.")
        if retries < 0 or not isinstance(retries, int):
            raise InvalidArgumentError(f"retries must be a whole number >= 0; got {retries!r}.")
        options = StepOptions(
            name=_step_name(name or f.__name__, "step"),
            retries=retries,
            retry_delay=_seconds(retry_delay, "retry_delay"),
            timeout=None if timeout is None else _seconds(timeout, "timeout"),
            resources=_resources(resources),
            cache=bool(cache),
            version=str(version),
            packages=tuple(packages),
        )
        return Step(f, options)

    return wrap(fn) if fn is not None else wrap


def _seconds(value: str | float, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = parse_duration(value).total_seconds()
    else:
        raise InvalidArgumentError(
            f"{what} must be a duration like '10m' or seconds; got {value!r}."
        )
    if seconds < 0:
        raise InvalidArgumentError(f"{what} must not be negative; got {value!r}.")
    return seconds


_RESOURCES = {"cpus", "gpus", "memory"}


def _resources(resources: dict[str, float] | None) -> dict[str, float]:
    found = dict(resources or {})
    unknown = sorted(set(found) - _RESOURCES)
    if unknown:
        raise InvalidArgumentError(
            f"Unknown step resources {unknown}; a step asks for {sorted(_RESOURCES)}."
        )
    return found


class Pipeline:
    """A function whose step calls make a DAG; :meth:`run` runs it."""

    def __init__(self, fn: Callable[..., Any], name: str, entrypoint: str | None = None) -> None:
        self.fn = fn
        self.name = name
        self.signature = inspect.signature(fn)
        self.entrypoint = entrypoint or _entrypoint(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"

    @property
    def parameters(self) -> dict[str, Any]:
        """The pipeline's parameters and their defaults (``inspect.Parameter.empty``: none)."""
        return {n: p.default for n, p in self.signature.parameters.items()}

    def bind(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check ``params`` against the pipeline's parameters; return them with defaults."""
        known = self.parameters
        unknown = sorted(set(params) - set(known))
        if unknown:
            listed = ", ".join(
                n if d is inspect.Parameter.empty else f"{n}={d!r}" for n, d in known.items()
            )
            raise InvalidArgumentError(
                f"Pipeline {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters: {listed or '(none)'}."
            )
        missing = [n for n, d in known.items() if d is inspect.Parameter.empty and n not in params]
        if missing:
            raise InvalidArgumentError(
                f"Pipeline {self.name!r} needs a value for {', '.join(map(repr, missing))}."
            )
        bound = {n: params.get(n, d) for n, d in known.items()}
        for name, value in params.items():
            _check_param(self.name, name, value, self.signature.parameters[name].annotation)
        try:
            json.dumps(bound)
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(
                f"Pipeline parameters are recorded as JSON (to resume and schedule runs); {e}.",
                hint="Pass strings, numbers, booleans, lists or dicts; load data inside a step.",
            ) from None
        return bound

    def build(self, params: dict[str, Any]) -> Graph:
        """Call the pipeline function with ``params`` and return the graph of its step calls."""
        graph = Graph()
        token = _building.set(graph)
        try:
            self.fn(**params)
        except ConveyorError:
            raise
        except Exception as e:  # the user's pipeline function is wrong
            import traceback

            frames = traceback.extract_tb(e.__traceback__)
            mine = [
                f
                for f, (frame, _) in zip(frames, traceback.walk_tb(e.__traceback__), strict=True)
                if frame.f_code is self.fn.__code__
            ]
            where = (mine or frames)[-1]  # the pipeline function's line, not a library's
            raise InvalidArgumentError(
                f"The function of pipeline {self.name!r} raised {type(e).__name__}: {e} "
                f"({where.filename}, line {where.lineno}), while it called its steps; no step "
                "ran.",
                hint="A pipeline function only calls steps and passes their outputs on: it "
                "cannot look into them (they exist once the steps run) or unpack more outputs "
                "than a step's annotation gives.",
            ) from e
        finally:
            _building.reset(token)
        if not graph.nodes:
            raise InvalidArgumentError(f"Pipeline {self.name!r} calls no steps.")
        graph.check_acyclic()
        return graph

    def run(
        self,
        executor: str = "local",
        *,
        cache: bool = True,
        workspace: Any = None,
        progress: Callable[[str, str, str], None] | None = None,
        **params: Any,
    ) -> Any:
        """Run the pipeline with ``params`` and return the :class:`PipelineRun`.

        ``executor``: ``"local"`` (worker processes, the default), ``"inline"`` (this
        process, for debugging), ``"ray"`` or ``"ray://host:port"``. ``cache=False`` runs
        every step. Raises :class:`PipelineFailed` (with ``.run``) when a step fails.
        """
        from conveyor.pipelines.engine import run_pipeline

        return run_pipeline(
            self, params, executor=executor, cache=cache, ws=workspace, progress=progress
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidArgumentError(
            f"Call {self.name}.run(...) to run pipeline {self.name!r}.",
            hint=f"{self.name}.run(executor='local', **params)",
        )


def _entrypoint(fn: Callable[..., Any]) -> str:
    return entrypoint_of(fn)


def pipeline(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Make a function a pipeline (``@cv.pipeline`` or ``@cv.pipeline(name="churn-train")``)."""

    def wrap(f: Callable[..., Any]) -> Pipeline:
        if not isinstance(f, types.FunctionType):
            raise InvalidArgumentError(f"@pipeline decorates a function; got {f!r}.")
        clash = sorted(set(inspect.signature(f).parameters) & RUN_OPTIONS)
        if clash:
            raise InvalidArgumentError(
                f"Pipeline {f.__name__!r} has a parameter named {', '.join(map(repr, clash))}, "
                f"which run() takes for itself ({', '.join(sorted(RUN_OPTIONS))}).",
                hint="Rename the parameter.",
            )
        return Pipeline(f, _step_name(name or f.__name__, "pipeline"))

    return wrap(fn) if fn is not None else wrap


_SIMPLE_PARAMS: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    bool: (bool,),
    str: (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
}


def _check_param(pipeline: str, name: str, value: Any, annotation: Any) -> None:
    """Refuse a value of another type than a plain annotation (int, float, bool, str) says,
    before anything is recorded (``-p n=abc`` for ``n: int``)."""
    accepted = _SIMPLE_PARAMS.get(annotation)
    if accepted is None or value is None:
        return
    wrong = not isinstance(value, accepted) or (bool not in accepted and isinstance(value, bool))
    if wrong:
        shown = getattr(annotation, "__name__", annotation)
        raise InvalidArgumentError(
            f"Pipeline {pipeline!r} takes {name}: {shown}; got {type(value).__name__} {value!r}.",
            hint=f"On the command line: -p {name}=VALUE, VALUE read as JSON (42, 0.5, true, "
            '"text").',
        )


# -- the digest of a step's code ----------------------------------------------------------------

_PLAIN = (int, float, complex, str, bytes, bool, type(None), type(Ellipsis))


def code_digest(fn: Callable[..., Any]) -> str:
    """A digest of the code ``fn`` runs, for the cache key of a step.

    It covers the function as it is in memory (its bytecode, names and constants: the code
    that runs, not its file on disk, which may have been edited since it was imported; line
    numbers and comments aside), the functions of the project it calls, to any depth (not
    those of the standard library or of installed packages), and the plain values it reads
    from module globals or captures: numbers, text, and lists, tuples, sets and dicts of
    them. Objects and classes it uses are not looked into.
    """
    h = hashlib.sha256()
    _feed_function(h, fn, set())
    return h.hexdigest()


def _feed_function(h: Any, fn: Any, seen: set[int]) -> None:
    if id(fn) in seen:
        return
    seen.add(id(fn))
    code = fn.__code__
    _feed_code(h, code)
    for default in (fn.__defaults__ or (), fn.__kwdefaults__ or {}):  # def f(x, factor=10)
        h.update(f"defaults={_canonical(default) or repr(type(default))}".encode())
    scope = getattr(fn, "__globals__", {})
    for name in sorted(_names(code)):
        if name in scope:
            _feed_value(h, f"global {name}", scope[name], seen)
    for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        _feed_value(h, f"closure {name}", value, seen)


def _feed_value(h: Any, label: str, value: Any, seen: set[int]) -> None:
    if isinstance(value, Step):
        value = value.fn
    if isinstance(value, types.FunctionType):
        if _in_project(value):
            h.update(f"{label}:function".encode())
            _feed_function(h, value, seen)
        return
    text = _canonical(value)
    if text is not None:
        h.update(f"{label}={text}".encode())


def _feed_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        else:  # literals only: canonical, else their repr
            h.update((_canonical(const) or repr(const)).encode())


def _names(code: types.CodeType) -> set[str]:
    """The global names ``code`` (and the functions defined in it) may read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _in_project(fn: types.FunctionType) -> bool:
    """Whether ``fn`` is the user's code: not the standard library's, an installed
    package's or Conveyor's."""
    import sys

    top = (fn.__module__ or "").split(".")[0]
    if top in sys.stdlib_module_names or top in ("conveyor", "builtins"):
        return False
    filename = fn.__code__.co_filename
    return "site-packages" not in filename and "dist-packages" not in filename


def _canonical(value: Any, depth: int = 0) -> str | None:
    """``value`` as text that is the same in every process (sets and dicts sorted), for
    plain values only; None for anything else."""
    if isinstance(value, _PLAIN):
        return repr(value)
    if depth > 8:
        return None
    if isinstance(value, list | tuple | set | frozenset):
        parts: list[str] = []
        for item in value:
            text = _canonical(item, depth + 1)
            if text is None:
                return None
            parts.append(text)
        if isinstance(value, set | frozenset):
            parts.sort()
        return f"{type(value).__name__}({', '.join(parts)})"
    if isinstance(value, dict):
        items: list[str] = []
        for k, v in value.items():
            key, text = _canonical(k, depth + 1), _canonical(v, depth + 1)
            if key is None or text is None:
                return None
            items.append(f"{key}: {text}")
        return "dict(" + ", ".join(sorted(items)) + ")"
    return None
