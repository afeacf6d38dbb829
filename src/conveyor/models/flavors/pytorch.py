"""PyTorch modules, stored with ``torch.export``: a traced graph and its weights, no pickle.

Exporting traces the module on the input example (its first dimension stays free, so any
batch size works later), so ``log`` needs ``input_example`` for a PyTorch model. Predictions
are the module's output on the signed columns as one float32 tensor, as a NumPy array.
"""

from __future__ import annotations

import io
import re
from typing import Any, ClassVar

import numpy as np

from conveyor.core.errors import IntegrityError, InvalidArgumentError
from conveyor.models.flavors import Flavor, module_roots

__all__ = ["PyTorchFlavor", "check_archive"]

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

    def check_upload(self, files: dict[str, bytes], info: dict[str, Any]) -> dict[str, Any]:
        if set(files) != {FILE}:
            raise InvalidArgumentError(f"A PyTorch model upload is one file, {FILE!r}.")
        check_archive(files[FILE])
        return info

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        import torch

        check_archive(files[FILE])
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


#: What ``torch.export.save`` writes for a module, under the archive's root folder: the graph,
#: the weights and constant tensors as raw bytes with their configs, and the sample inputs.
_ARCHIVE_FILES = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/[\w.-]+|models/[\w.-]+\.json"
    r"|data/weights/(weight_\d+|[\w.-]+_weights_config\.json)"
    r"|data/constants/(tensor_\d+|[\w.-]+_constants_config\.json)"
    r"|data/sample_inputs/[\w.-]+\.pt)"
)
#: Operators a graph may not call: they read files.
_FILE_OPERATORS = re.compile(rb"torch\.ops\.aten\.(from_file|_from_file)\b")


def check_archive(data: bytes) -> None:
    """Refuse a ``.pt2`` file that holds more than ``torch.export.save`` writes for a module.

    ``torch.export.load`` unpickles (with ``weights_only=False``) weights and constants
    marked ``use_pickle``, custom and opaque objects, legacy weight files, and sample inputs
    the safe unpickler refuses; it also loads compiled AOTInductor code. Any of these in a
    file someone else wrote would run their code here, so a file holding one is refused:
    what Conveyor saves holds raw tensors, configs, the graph and plain sample inputs.
    """
    import json
    import zipfile

    def refuse(why: str) -> IntegrityError:
        return IntegrityError(
            f"The stored PyTorch program {why}: Conveyor loads only what torch.export.save "
            "writes for a module (raw tensors, no pickled objects or compiled code).",
            hint="Log the model again with cv.models.log.",
        )

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, ValueError) as e:
        raise refuse(f"is not a .pt2 archive ({e})") from None
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1:
        raise refuse("has more than one root folder")
    root = f"{roots.pop()}/"
    for name in names:
        if not _ARCHIVE_FILES.fullmatch(name[len(root) :]):
            raise refuse(f"holds {name[len(root) :]!r}")
    for name in names:
        rel = name[len(root) :]
        if rel.endswith(("_weights_config.json", "_constants_config.json")):
            try:
                config = json.loads(archive.read(name)).get("config", {})
                entries = list(config.values())
            except (ValueError, AttributeError):
                raise refuse(f"has an unreadable {rel!r}") from None
            for entry in entries:
                if not isinstance(entry, dict) or entry.get("use_pickle") is not False:
                    raise refuse(f"keeps a pickled tensor ({rel})")
                if rel.startswith("data/constants/") and not str(
                    entry.get("path_name", "")
                ).startswith("tensor_"):
                    raise refuse(f"keeps a constant that is not a tensor ({rel})")
        elif rel.startswith("models/") and _FILE_OPERATORS.search(archive.read(name)):
            raise refuse("calls an operator that reads files")
        elif rel.startswith("data/sample_inputs/"):
            import torch

            try:  # the safe unpickler: torch then has no reason to fall back to pickle
                torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            except Exception:  # noqa: BLE001 - anything the safe unpickler refuses
                raise refuse("has sample inputs that are not plain tensors") from None
