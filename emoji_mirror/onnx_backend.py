"""ONNX Runtime as the classifier's backend: a loaded network exported to ONNX in memory and run behind torch's call interface."""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

import onnxruntime
import torch
import torch.nn as nn

from .onnx_int8 import quantize

if TYPE_CHECKING:
    from .checkpoint import LoadedModel

INPUT_NAME = "faces"
OUTPUT_NAME = "logits"


def onnx_bytes(model: nn.Module, input_size: int) -> bytes:
    """The network as an ONNX model: float32 (batch, 1, S, S) normalised faces in, (batch, classes) logits out, any batch."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # torch 2.14's TorchScript-based exporter (dynamo=False) warns that it is deprecated, but it is exact for every
        # registered network, needs no onnxscript and is about 5x faster than the torch.export-based one.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, 1, input_size, input_size),),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    return buffer.getvalue()


class OnnxNetwork(nn.Module):
    """A network run by ONNX Runtime on the CPU, called like the torch module it was exported from: normalised faces in,
    logits out (so preprocessing.predict_proba, TTA included, works unchanged)."""

    def __init__(self, graph: bytes, threads: int | None = None, spin: bool = True, int8: bool = False):
        """`graph`: ONNX bytes (onnx_bytes, or served_graph's int8 build, then `int8` says so). `spin`: idle threads spin,
        ready for the next face (about half the latency at batch 1); False for batch work in a process that also times or
        runs other code (spinning threads take its cores until the session is collected)."""
        super().__init__()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default, one thread per physical core
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.int8 = int8
        self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __deepcopy__(self, memo: dict) -> "OnnxNetwork":
        """Copies share the session: it never changes and runs from any thread (copy.deepcopy(model) works, as in
        training.evaluate.scoring's latency timing)."""
        return self

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        faces = faces.detach().to("cpu", torch.float32).contiguous()
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: faces.numpy()})[0])


def served_graph(loaded: "LoadedModel", as_float: bool = False) -> tuple[bytes, bool]:
    """(ONNX graph, whether it is int8): a loaded checkpoint's network as served on ONNX Runtime, int8 when the checkpoint
    carries an activation calibration that fits this export (meta["onnx_int8"], from `python -m training.export --int8 ...
    --calibrate`) unless `as_float`, else float (with a warning when its calibration does not fit)."""
    graph = onnx_bytes(loaded.model, loaded.preprocessing.input_size)
    calibration = loaded.meta.get("onnx_int8")
    if calibration is None or as_float:
        return graph, False
    try:
        return quantize(graph, calibration), True
    except ValueError as exc:
        warnings.warn(f"{loaded.path} runs float on ONNX Runtime: {exc}", RuntimeWarning, stacklevel=3)
        return graph, False


def onnx_network(loaded: "LoadedModel", threads: int | None = None, spin: bool = True) -> OnnxNetwork:
    """A loaded checkpoint's network on ONNX Runtime, as served (served_graph)."""
    graph, int8 = served_graph(loaded)
    return OnnxNetwork(graph, threads, spin, int8)
