"""ONNX Runtime as the classifier's backend: a loaded network exported to ONNX in memory and run behind torch's call interface."""

from __future__ import annotations

import io
import warnings

import onnxruntime
import torch
import torch.nn as nn

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

    def __init__(self, model: nn.Module, input_size: int, threads: int | None = None):
        super().__init__()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default, one thread per physical core
        self.session = onnxruntime.InferenceSession(onnx_bytes(model, input_size), options, providers=["CPUExecutionProvider"])

    def __deepcopy__(self, memo: dict) -> "OnnxNetwork":
        """Copies share the session: it never changes and runs from any thread (copy.deepcopy(model) works, as in
        training.evaluate.scoring's latency timing)."""
        return self

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        faces = faces.detach().to("cpu", torch.float32).contiguous()
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: faces.numpy()})[0])
