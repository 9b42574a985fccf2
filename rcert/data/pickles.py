"""A restricted unpickler for pickled arrays (CIFAR-10's python batches).

A pickle can call any importable function while it loads; this one admits only the few
callables a numpy array needs, each in a form that allocates no more than the pickle's own
bytes pay for. Before loading, the pickle's opcodes are counted and the nesting of the
objects they build is traced, because even plain containers can exhaust memory, and hashing a
tuple nested a million deep crashes the interpreter (a C stack overflow, not an exception).
"""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

from rcert.errors import RcertError, first_line

# A CIFAR-10 batch takes ~30,000 opcodes (10,000 labels and file names) and nests ~6 deep.
MAX_OPS = 1_000_000
MAX_DEPTH = 32

# Stands for numpy.ndarray, which numpy pickles name only as _reconstruct's first argument:
# not callable, so a pickle cannot call ndarray(shape, dtype) to allocate (and, for object
# arrays, fill) memory it never paid for.
_NDARRAY = object()


def _empty_array(subtype: object, shape: Any, dtype: Any) -> np.ndarray:
    # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') and then sets its real
    # shape and contents from bytes the pickle holds; another shape would allocate for free.
    if subtype is not _NDARRAY or not (isinstance(shape, tuple) and shape == (0,)):
        raise pickle.UnpicklingError("_reconstruct is only used for an empty ndarray")
    return np.ndarray((0,), dtype=dtype)


def _latin1(text: Any, encoding: Any = None) -> bytes:
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(text, 'latin1'). Other codecs
    # (hex, base64) would let nested calls double the data at every level.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is only used on text, to latin1")
    return text.encode("latin1")


# Exactly the callables a pickled numpy array needs, across numpy 1.x/2.x and protocols 2-5;
# None admits numpy's own, which allocates nothing beyond a view of the pickle's bytes.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    ("numpy.core.numeric", "_frombuffer"): None,
    ("numpy._core.numeric", "_frombuffer"): None,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): None,
    ("_codecs", "encode"): _latin1,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays and plain containers, and nothing else."""

    def __init__(self, raw: bytes, source: Path, kind: str) -> None:
        super().__init__(io.BytesIO(raw), encoding="bytes")
        self._source, self._kind = source, kind

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise RcertError(f"refusing to unpickle {module}.{name} from {self._source}: "
                             f"a {self._kind} contains only arrays")
        found = _ALLOWED[module, name]
        return super().find_class(module, name) if found is None else found


# Opcodes that add to the object below them on the stack instead of building a new one.
_IN_PLACE = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})
_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})


def _step(op: pickletools.OpcodeInfo, arg: Any, stack: list[list[int]], marks: list[int],
          memo: dict[Any, list[int]]) -> None:
    """One opcode on a shadow stack of depth cells: one mutable cell per object, shared by
    the stack and the memo, so an object grown after it was memoised is seen grown."""
    if op.name in _GET or op.name == "DUP":
        stack.append(memo[arg] if op.name in _GET else stack[-1])
    elif op.name in _PUT or op.name == "MEMOIZE":
        memo[len(memo) if op.name == "MEMOIZE" else arg] = stack[-1]
    elif op.name == "MARK":
        marks.append(len(stack))
    elif op.name == "POP" and marks and marks[-1] == len(stack):
        marks.pop()
    else:
        before = op.stack_before
        if pickletools.markobject in before:
            start = marks.pop() - before.index(pickletools.markobject)
        else:
            start = len(stack) - len(before)
        if start < 0:
            raise pickle.UnpicklingError(f"{op.name} on a stack too short for it")
        popped, stack[start:] = stack[start:], []
        if op.name in _IN_PLACE:
            cell = popped[0]
            cell[0] = max([cell[0], *(1 + c[0] for c in popped[1:])])
            stack.append(cell)
        elif op.stack_after:
            stack.append([1 + max(c[0] for c in popped) if popped else 0])


def _check_shape(raw: bytes, path: Path, kind: str) -> None:
    """Refuse a pickle of more than MAX_OPS opcodes, or whose objects nest deeper than
    MAX_DEPTH, before anything is built from it."""
    stack: list[list[int]] = []
    marks: list[int] = []
    memo: dict[Any, list[int]] = {}
    for count, (op, arg, _) in enumerate(pickletools.genops(raw)):
        if count >= MAX_OPS:
            raise RcertError(f"{kind} {path} holds more than {MAX_OPS} pickle operations, far "
                             f"more than a {kind}; replace it with an intact copy")
        _step(op, arg, stack, marks, memo)
        if stack and stack[-1][0] > MAX_DEPTH:
            raise RcertError(f"{kind} {path} nests objects more than {MAX_DEPTH} deep, far "
                             f"more than a {kind}; replace it with an intact copy")


def load_pickle(raw: bytes, path: Path, kind: str) -> Any:
    """The object the pickle ``raw`` (read from ``path``) holds, built only from arrays and
    plain containers; ``kind`` names what the file should be ("CIFAR-10 batch")."""
    try:
        _check_shape(raw, path, kind)
        return _ArrayUnpickler(raw, path, kind).load()
    except RcertError:
        raise
    # A corrupt pickle can fail with almost any exception type, all meaning "bad file".
    except Exception as err:
        raise RcertError(f"cannot unpickle {path} ({first_line(err)}): replace it with an "
                         f"intact copy") from None
