"""PyTorch modules, stored with ``torch.export``: a traced graph and its weights.

Loading a program can run code from it (see ``executes_code``), so it needs trust, as a
pickled model does.

Exporting traces the module on the input example (its first dimension stays free, so any
batch size works later), so ``log`` needs ``input_example`` for a PyTorch model. Predictions
are the module's output on the signed columns as one float32 tensor, as a NumPy array.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np

from conveyor.core.errors import IntegrityError, InvalidArgumentError
from conveyor.models.flavors import Flavor, module_roots

__all__ = ["PyTorchFlavor"]

FILE = "model.pt2"


def _tensor(data: Any) -> Any:
    import torch

    array = np.asarray(data, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


class PyTorchFlavor(Flavor):
    name: ClassVar[str] = "pytorch"
    packages: ClassVar[tuple[str, ...]] = ("torch", "numpy")
    # torch.export.load unpickles parts of a program (weights and objects marked so, sample
    # inputs the safe unpickler refuses), evaluates its shape expressions with sympy, and
    # calls whatever torch functions its graph names: torch's own documentation says never to
    # load one from an untrusted source. So a program loads with trust, as pickle does.
    executes_code: ClassVar[bool] = True
    code_reason: ClassVar[str] = "a torch.export program (torch unpickles parts of it)"

    def handles(self, model: Any) -> bool:
        return "torch" in module_roots(model) and hasattr(model, "state_dict")

    def save(self, model: Any, example: Any = None) -> tuple[dict[str, bytes], dict[str, Any]]:
        if example is None:
            raise InvalidArgumentError(
                "A PyTorch model is stored by tracing it on an example: pass input_example= "
                "(a few rows of what it is called with)."
            )
        import torch

        x = _tensor(example)
        batch = torch.export.Dim("batch")
        model.eval()
        try:
            program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        except Exception as e:
            raise InvalidArgumentError(
                f"torch.export cannot trace this {type(model).__name__} on the input example: {e}",
                hint="The module must take one float tensor of rows; wrap other models in a "
                "cv.models.PythonModel.",
            ) from e
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        info = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
        return {FILE: buffer.getvalue()}, info

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        import torch

        try:
            return torch.export.load(io.BytesIO(files[FILE])).module()
        except Exception as e:
            raise IntegrityError(f"torch cannot read the stored program: {e}") from e

    def predict(self, model: Any, data: Any) -> Any:
        import torch

        with torch.no_grad():
            return model(_tensor(data)).numpy()

    def predict_proba(self, model: Any, data: Any) -> Any:
        raise InvalidArgumentError(
            "PyTorch models return their outputs from predict; apply softmax there if the "
            "module does not."
        )
