"""A model whose code is not importable where it is loaded says so, naming the code."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

import conveyor as cv
from conveyor.core.errors import InvalidArgumentError


def test_a_python_model_whose_module_is_gone_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "my_doubler.py").write_text(
        "import conveyor as cv\n\n"
        "class Doubler(cv.models.PythonModel):\n"
        "    def predict(self, data):\n"
        "        return data['x'] * 2\n"
    )
    monkeypatch.syspath_prepend(str(code))
    import my_doubler  # type: ignore[import-not-found]

    cv.init(tmp_path / "project", project="models")
    cv.models.log(my_doubler.Doubler(), "doubler", input_example=pd.DataFrame({"x": [1.0]}))
    assert cv.models.load("doubler/1", trust=True).predict(pd.DataFrame({"x": [2.0]}))[0] == 4
    monkeypatch.delitem(sys.modules, "my_doubler")
    sys.path.remove(str(code))  # as in another folder, where the module is not importable
    with pytest.raises(InvalidArgumentError, match=r"needs my_doubler\.Doubler"):
        cv.models.load("doubler/1", trust=True)
