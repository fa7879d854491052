#!/usr/bin/env python3
"""Writes a model directory's model.safetensors as pytorch_model.bin in the
layout torch.save (PyTorch >= 1.6) produces, with the standard library only,
so that the project's reader is tested against a writer it does not share
code with (no PyTorch on this machine).

The layout: a zip archive, entries stored uncompressed and 64-byte aligned,
under one top folder: `archive/data.pkl` (pickle protocol 2 of an
OrderedDict name -> tensor with a `_metadata` attribute; each tensor is
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, OrderedDict())` and each storage a persistent id
`('storage', torch.FloatStorage, key, 'cpu', numel)`), `archive/data/<key>`
(the raw bytes), `archive/version` and `archive/byteorder`.

To exercise views the way real checkpoints have them:
  --tie     for a tied model (no lm_head.weight), also write lm_head.weight
            sharing embed_tokens' storage, as older transformers did;
  --fused   each layer's q/k/v weights are views at offsets into one storage;
  --transposed  o_proj weights are stored transposed and read through strides.

usage: safetensors_to_torch_bin.py SRC_DIR DST_DIR [--tie] [--fused] [--transposed] [--shards N]
"""
import collections
import json
import os
import shutil
import struct
import sys
import types
import zipfile
import pickle

DTYPES = {"F32": ("FloatStorage", 4), "F16": ("HalfStorage", 2), "BF16": ("BFloat16Storage", 2),
          "I64": ("LongStorage", 8), "I32": ("IntStorage", 4), "U8": ("ByteStorage", 1)}

# A stand-in `torch` package whose globals pickle writes by name, as torch's do.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch._utils = torch_utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


def _rebuild_tensor_v2(*args):
    raise RuntimeError("never called")


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
for cls_name, _ in DTYPES.values():
    cls = type(cls_name, (), {})
    cls.__module__ = "torch"
    setattr(torch, cls_name, cls)


class Storage:
    def __init__(self, key, dtype, data):
        self.key, self.dtype, self.data = key, dtype, data

    def numel(self):
        return len(self.data) // DTYPES[self.dtype][1]


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2, self.args)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", getattr(torch, DTYPES[obj.dtype][0]), obj.key, "cpu", obj.numel())
        return None


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    out = collections.OrderedDict()
    for name, h in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = h["data_offsets"]
        out[name] = (h["dtype"], h["shape"], data[b:e])
    return out


def contiguous_stride(shape):
    stride, acc = [], 1
    for d in reversed(shape):
        stride.insert(0, acc)
        acc *= d
    return stride


def transpose_bytes(data, rows, cols, size):
    out = bytearray(len(data))
    for r in range(rows):
        for c in range(cols):
            src = (r * cols + c) * size
            dst = (c * rows + r) * size
            out[dst:dst + size] = data[src:src + size]
    return bytes(out)


def write_zip(path, state, storages):
    buf = []
    pickler_out = open(path + ".pkl.tmp", "wb")
    Pickler(pickler_out, protocol=2).dump(state)
    pickler_out.close()
    with open(path + ".pkl.tmp", "rb") as f:
        pkl = f.read()
    os.remove(path + ".pkl.tmp")
    records = [("archive/data.pkl", pkl), ("archive/byteorder", b"little")]
    records += [("archive/data/" + s.key, s.data) for s in storages]
    records += [("archive/version", b"3\n")]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in records:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            start = z.fp.tell() + 30 + len(name.encode())
            pad = (-(start + 4)) % 64  # 'FB' + length, then padding, as torch aligns
            info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            z.writestr(info, data)


def main(argv):
    src, dst = argv[1], argv[2]
    tie, fused, transposed = "--tie" in argv, "--fused" in argv, "--transposed" in argv
    shards = int(argv[argv.index("--shards") + 1]) if "--shards" in argv else 1
    tensors = read_safetensors(os.path.join(src, "model.safetensors"))
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        if f != "model.safetensors" and not f.endswith(".safetensors") and not f.endswith(".index.json"):
            shutil.copy(os.path.join(src, f), os.path.join(dst, f))

    names = list(tensors.keys())
    groups = [names[i::shards] for i in range(shards)]  # round-robin over shards
    weight_map = {}
    for si, group in enumerate(groups):
        state = collections.OrderedDict()
        state._metadata = collections.OrderedDict([("", {"version": 1})])
        storages, next_key = [], [0]

        def new_storage(dtype, data):
            s = Storage(str(next_key[0]), dtype, data)
            next_key[0] += 1
            storages.append(s)
            return s

        done = set()
        for name in group:
            if name in done:
                continue
            dtype, shape, data = tensors[name]
            layer = name.rsplit(".self_attn.", 1)[0] if ".self_attn." in name else None
            if fused and layer and name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
                parts = [layer + ".self_attn." + p + "_proj.weight" for p in "qkv"]
                if all(p in group for p in parts):
                    s = new_storage(dtype, b"".join(tensors[p][2] for p in parts))
                    offset = 0
                    for p in parts:
                        pd, ps, pdata = tensors[p]
                        state[p] = Tensor(s, offset, ps, contiguous_stride(ps))
                        offset += len(pdata) // DTYPES[pd][1]
                        done.add(p)
                    continue
            if transposed and name.endswith("o_proj.weight") and len(shape) == 2:
                rows, cols = shape
                s = new_storage(dtype, transpose_bytes(data, rows, cols, DTYPES[dtype][1]))
                state[name] = Tensor(s, 0, shape, [1, rows])
                done.add(name)
                continue
            s = new_storage(dtype, data)
            state[name] = Tensor(s, 0, shape, contiguous_stride(shape))
            done.add(name)
            if tie and name == "model.embed_tokens.weight" and "lm_head.weight" not in tensors:
                state["lm_head.weight"] = Tensor(s, 0, shape, contiguous_stride(shape))
        fname = "pytorch_model.bin" if shards == 1 else "pytorch_model-%05d-of-%05d.bin" % (si + 1, shards)
        write_zip(os.path.join(dst, fname), state, storages)
        for name in state:
            weight_map[name] = fname
    if shards > 1:
        with open(os.path.join(dst, "pytorch_model.bin.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)


if __name__ == "__main__":
    main(sys.argv)
