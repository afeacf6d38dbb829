"""PyTorch modules are stored with torch.export (no pickle) and serve any batch size."""

from __future__ import annotations

from pathlib import Path

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
        loaded = cv.models.load("scorer", trust=True)
        expected = module(torch.tensor(rows.to_numpy(), dtype=torch.float32)).detach().numpy()
        np.testing.assert_allclose(loaded.predict(rows), expected, rtol=1e-5)
        with pytest.raises(cv.models.SignatureError, match="column 'c': missing"):
            loaded.predict(rows[["a", "b"]])


def test_a_module_needs_an_example_to_be_traced(tmp_path: Path) -> None:
    with cv.init(tmp_path, project="torch"), pytest.raises(InvalidArgumentError, match="example"):
        cv.models.log(Scorer(), "scorer")


def test_a_program_loads_only_with_trust_and_a_team_server_refuses_it(tmp_path: Path) -> None:
    from conveyor.core.errors import PermissionDeniedError
    from conveyor.models.flavors import get_flavor

    rows = pd.DataFrame(np.zeros((4, 3)), columns=["a", "b", "c"])
    with cv.init(tmp_path, project="torch"):
        cv.models.log(Scorer(), "scorer", input_example=rows)
        # torch.export.load unpickles parts of a program and evaluates its shape
        # expressions: a program someone else wrote can run code.
        with pytest.raises(PermissionDeniedError, match=r"torch\.export program"):
            cv.models.load("scorer")
        assert cv.models.load("scorer", trust=True).predict(rows).shape == (4, 2)
    flavor = get_flavor("pytorch")
    files, info = flavor.save(Scorer(), rows.to_numpy(dtype=np.float32))
    with pytest.raises(PermissionDeniedError, match="team server does not take it"):
        flavor.check_upload(files, info)
