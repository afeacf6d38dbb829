"""PyTorch modules are stored with torch.export (no pickle) and serve any batch size."""

from __future__ import annotations

import datetime
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import conveyor as cv
from conveyor.core.errors import InvalidArgumentError

torch = pytest.importorskip("torch", reason="the torch extra is not installed")


class Scorer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=1)


def test_a_module_round_trips_and_takes_any_batch_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Scorer()
    rows = pd.DataFrame(np.random.default_rng(0).normal(size=(40, 3)), columns=["a", "b", "c"])
    with cv.init(tmp_path, project="torch"):
        mv = cv.models.log(module, "scorer", input_example=rows[:4])
        assert mv.flavor == "pytorch"
        assert mv.signature is not None
        assert mv.signature.outputs[0].shape == (-1, 2)
        loaded = cv.models.load("scorer")
        expected = module(torch.tensor(rows.to_numpy(), dtype=torch.float32)).detach().numpy()
        np.testing.assert_allclose(loaded.predict(rows), expected, rtol=1e-5)
        with pytest.raises(cv.models.SignatureError, match="column 'c': missing"):
            loaded.predict(rows[["a", "b"]])


def test_a_module_needs_an_example_to_be_traced(tmp_path: Path) -> None:
    with cv.init(tmp_path, project="torch"), pytest.raises(InvalidArgumentError, match="example"):
        cv.models.log(Scorer(), "scorer")


def _rewritten(data: bytes, change: Any) -> bytes:
    """The .pt2 archive ``data`` with ``change(name, bytes)`` applied to each member (None:
    left out), and ``change("", b"")``'s result, if any, added as ``(name, bytes)``."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            kept = change(info.filename, source.read(info))
            if kept is not None:
                target.writestr(info, kept)
        extra = change("", b"")
        if extra is not None:
            target.writestr(*extra)
    return out.getvalue()


def _pickled_weights(name: str, body: bytes) -> bytes | None:
    if name.endswith("_weights_config.json"):
        config = json.loads(body)
        for entry in config["config"].values():
            entry["use_pickle"] = True
        return json.dumps(config).encode()
    return body or None


def _compiled_code(name: str, body: bytes) -> Any:
    return body or (f"{name}archive/data/aotinductor/model/model.so", b"\x7fELF")


def _odd_sample_inputs(name: str, body: bytes) -> bytes | None:
    if "/data/sample_inputs/" in name:
        buffer = io.BytesIO()
        torch.save(datetime.date(2026, 1, 1), buffer)  # no tensor: the safe unpickler refuses
        return buffer.getvalue()
    return body or None


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (_pickled_weights, "keeps a pickled tensor"),
        (_compiled_code, "holds 'data/aotinductor/model/model.so'"),
        (_odd_sample_inputs, "sample inputs that are not plain tensors"),
    ],
)
def test_a_program_that_would_unpickle_or_run_code_is_refused(
    tmp_path: Path, change: Any, refusal: str
) -> None:
    from conveyor.core.errors import IntegrityError
    from conveyor.models.flavors import get_flavor

    flavor = get_flavor("pytorch")
    rows = np.zeros((4, 3), dtype=np.float32)
    files, info = flavor.save(Scorer(), rows)
    flavor.check_upload(files, info)  # what torch.export.save writes passes
    tampered = {"model.pt2": _rewritten(files["model.pt2"], change)}
    with pytest.raises(IntegrityError, match=refusal):
        flavor.check_upload(tampered, info)
    with pytest.raises(IntegrityError, match=refusal):
        flavor.load(tampered, info)
