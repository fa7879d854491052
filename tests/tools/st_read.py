"""Reads a safetensors file with the standard library and numpy only, for the
checks that compare qjobs' files with a reference library's reading of them
(tests/gguf/check.py, tests/onnx/check.py): the layout is an 8-byte
little-endian header length, a JSON header, then the data."""
import json
import struct
from pathlib import Path

import numpy as np


def read_f32(path):
    """name -> float32 array of each tensor; raises ValueError on another dtype."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(info["shape"])
    return out
