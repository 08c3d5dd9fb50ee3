"""Unpickling a file of plain values and numpy arrays that someone else wrote (CIFAR-10's batch files), at a cost
bounded by the file's size, and without running its code.

A pickle is a program: it names functions and calls them. This reader first scans the opcodes
(`check_opcodes`), which bounds what loading can allocate, then builds only the few numpy names an array pickle
uses, each replaced by a checked stand-in (`STAND_INS`) that allocates no more than the file holds; any other
global (os.system, ...) is refused before it is looked up."""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from typing import Any

import numpy as np

NUMBER_CODES = frozenset(f"{kind}{size}" for kind in "iu" for size in (1, 2, 4, 8)) | {"b1", "f2", "f4", "f8"}
MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


class _NdarrayName:
    """`numpy.ndarray` as a pickle names it: only `_reconstruct`'s first argument. Calling it (which would
    allocate an array of any shape) is not possible."""


_NDARRAY = _NdarrayName()


def _text(value: Any) -> str:
    """A name or code as pickled by Python 3 (str) or by Python 2 read with encoding='bytes' (bytes)."""
    return value.decode("latin1") if isinstance(value, bytes) else value


class _Dtype:
    """What the file's `numpy.dtype(code, align, copy)` builds: a fixed-size number type and a byte order. The
    file's state for it is read for the byte order only; the numpy dtype is made by `numpy_dtype`."""

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if _text(code) not in NUMBER_CODES:
            raise pickle.UnpicklingError(f"it asks for a numpy dtype {code!r}, not a number type")
        self.code, self.order = _text(code), "="

    def __setstate__(self, state: Any) -> None:
        order = _text(state[1]) if isinstance(state, tuple) and len(state) > 1 else None
        if order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError("it holds a numpy dtype state that numpy does not write")
        self.order = order

    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.code).newbyteorder(self.order)


def _numpy_dtype(dtype: Any) -> np.dtype:
    if not isinstance(dtype, _Dtype):
        raise pickle.UnpicklingError("it gives a numpy array or scalar a dtype that is not a pickled dtype")
    return dtype.numpy_dtype()


def _check_size(shape: Any, dtype: np.dtype, data: Any) -> None:
    """Raise unless `data` (bytes, or a str of latin-1 bytes as Python 2 pickles hold them) is exactly what an
    array of `shape` and `dtype` needs: numpy then wraps or copies it, never allocates more."""
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise pickle.UnpicklingError(f"it holds a numpy array of shape {shape!r}")
    if not isinstance(data, bytes | bytearray | str):
        raise pickle.UnpicklingError("it holds a numpy array whose data are not bytes")
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise pickle.UnpicklingError(f"it holds a numpy array of shape {shape} with {len(data)} bytes of data")


class _CheckedArray(np.ndarray):
    """The array `_reconstruct` returns; its `__setstate__` (the file's shape, dtype and data) is checked first."""

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise pickle.UnpicklingError("it holds a numpy array state that numpy does not write")
        shape, dtype, fortran, data = state[-4:]
        dtype = _numpy_dtype(dtype)
        _check_size(shape, dtype, data)
        super().__setstate__((1, shape, dtype, bool(fortran), data))


def _reconstruct(kind: Any, shape: Any, dtype: Any) -> np.ndarray:
    if kind is not _NDARRAY or shape != (0,) or _text(dtype) != "b":
        raise pickle.UnpicklingError(f"it asks numpy for an array of shape {shape!r}, not the empty one it pickles")
    return _CheckedArray((0,), np.int8)


def _frombuffer(data: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None) -> np.ndarray:
    dtype = _numpy_dtype(dtype)
    _check_size(shape, dtype, data)
    if _text(order) not in ("C", "F") or axis_order is not None:
        raise pickle.UnpicklingError("it holds a numpy array in an order other than C or F")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=_text(order)).view(_CheckedArray)


def _scalar(dtype: Any, data: Any) -> Any:
    dtype = _numpy_dtype(dtype)
    _check_size((), dtype, data)
    return np.frombuffer(data, dtype=dtype)[0]


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """`_codecs.encode`, as Python 3 pickles bytes at protocol 2: a str to latin-1, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("it calls _codecs.encode other than to make bytes from latin-1")
    return text.encode("latin1")


# The only globals a file may name. `_reconstruct` only with the empty shape numpy itself pickles (any other shape
# allocates memory the file does not hold); an array's state and `_frombuffer` only with as many bytes as the shape
# needs; dtypes only fixed-size numbers (a pickled dtype's state could otherwise give it any item size or flags);
# `scalar` only with its bytes.
STAND_INS = {
    **{(module, "_reconstruct"): _reconstruct for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _scalar for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_frombuffer"): _frombuffer for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
    ("_codecs", "encode"): _latin1,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in STAND_INS:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which this file never holds")
        return STAND_INS[module, name]


def check_opcodes(data: bytes, max_ops: int) -> None:
    """Raise `pickle.UnpicklingError` unless `data` is a complete pickle of at most `max_ops` opcodes that puts
    nothing in a memo slot past `max_ops` and declares no length it does not hold. CPython's unpickler allocates a
    declared length or a memo slot index before reading (gh-115952), and each opcode can make a new object, so
    these bound what loading can allocate; `pickletools.genops` reads nothing it is not given."""
    try:
        for count, (opcode, argument, _) in enumerate(pickletools.genops(io.BytesIO(data)), start=1):
            if count > max_ops:
                raise pickle.UnpicklingError(f"it has more than {max_ops} pickle opcodes")
            if opcode.name in MEMO_PUTS and int(argument) >= max_ops:
                raise pickle.UnpicklingError(f"it puts a value in memo slot {argument}")
    except ValueError as error:  # genops: a truncated argument, an unknown opcode, no STOP
        raise pickle.UnpicklingError(str(error)) from error


def load_arrays(data: bytes, max_ops: int) -> Any:
    """The plain values and numpy arrays pickled in `data` (Python 2 strings as bytes); raises
    `pickle.UnpicklingError` for anything else. Costs about len(data) plus 200 bytes per opcode."""
    check_opcodes(data, max_ops)
    try:
        return _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError:
        raise
    except Exception as error:  # what a stand-in or numpy raises is decided by the file, and says what is wrong
        raise pickle.UnpicklingError(f"{type(error).__name__}: {error}") from error
