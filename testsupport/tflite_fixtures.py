"""Build small, real TFLite models for tests with the runtime's own flatbuffer schema.

There is no TensorFlow converter here; a model with one tensor that is both input
and output is enough to exercise the loader's shape and type checks for real.
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

_TYPES = {np.int8: schema.TensorType.INT8, np.float32: schema.TensorType.FLOAT32}


def passthrough_model(path: Path, shape: tuple[int, ...], dtype: type = np.int8) -> Path:
    """A valid .tflite whose single tensor is both input and output."""
    tensor = schema.TensorT()
    tensor.shape = list(shape)
    tensor.type = _TYPES[dtype]
    tensor.buffer = 0
    tensor.name = b"x"
    if dtype is np.int8:
        q = schema.QuantizationParametersT()
        q.scale = [0.2]
        q.zeroPoint = [-5]
        tensor.quantization = q
    subgraph = schema.SubGraphT()
    subgraph.tensors = [tensor]
    subgraph.inputs = [0]
    subgraph.outputs = [0]
    subgraph.operators = []
    model = schema.ModelT()
    model.version = 3
    model.subgraphs = [subgraph]
    model.buffers = [schema.BufferT()]
    model.operatorCodes = []
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path
