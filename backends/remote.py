"""A backend used from another environment: the same functions, run by a child of the backend's own interpreter.

MXNet runs in an environment of its own (common/environments.py), so a process of the main environment cannot
import it. Where such a process needs the backend in-process (the oracle, the notebook, the parity tests, the
studies), `backends.load_backend` hands it a `RemoteBackend`: an object with every function of the contract
(backends/contract.py), each call sent to a child process that imports the real backend module in its own
interpreter and answers. Models, and anything else of the framework's own (a device), stay in the child;
the caller holds a `RemoteObject`: the child's handle to it, its text, and for a model its `recipe` (the one
attribute the harness reads).

The two sides may run different numpy majors (2.x here, 1.23 in MXNet's environment), whose pickles of arrays
differ (numpy 2 names `numpy._core`, which numpy 1.23 lacks): arrays, numpy scalars and dtypes cross the pipe as
raw bytes, dtype and shape (the .npy convention), and everything else as plain pickles of builtins and the
project's own dataclasses, which both sides import from the same source tree.

Errors raised in the child come back as the same type where both sides know it (UserError, and the builtin
exceptions such as ValueError), with the child's message; anything else as a RemoteError naming its type.
"""

from __future__ import annotations

import atexit
import builtins
import inspect
import io
import os
import pickle
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from common import environments
from common.errors import UserError

_LENGTH = struct.Struct("<Q")


class RemoteError(RuntimeError):
    """An exception of the child's whose type this side does not share."""


def _array(data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()


def _scalar(data: bytes, dtype: str) -> np.generic:
    return np.frombuffer(data, dtype=np.dtype(dtype))[0]


def _dtype(text: str) -> np.dtype:
    return np.dtype(text)


class _Pickler(pickle.Pickler):
    """Pickles numpy objects by value (bytes, dtype, shape), readable by any numpy version."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            contiguous = np.ascontiguousarray(obj)
            return _array, (contiguous.tobytes(), contiguous.dtype.str, contiguous.shape)
        if isinstance(obj, np.generic):
            return _scalar, (obj.tobytes(), obj.dtype.str)
        if isinstance(obj, np.dtype):
            return _dtype, (obj.str,)
        return NotImplemented


def send(stream: BinaryIO, message: Any) -> None:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    payload = buffer.getvalue()
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def receive(stream: BinaryIO) -> Any:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError
    (size,) = _LENGTH.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError
    return pickle.loads(payload)


class _Empty:
    """A parameter without a default, as it crosses the pipe."""


def _parameters(function: Any) -> list[tuple[str, int, Any]]:
    """(name, kind, default) of each parameter of a function, as RemoteBackend rebuilds its signature."""
    return [(p.name, int(p.kind), _Empty() if p.default is inspect.Parameter.empty else p.default)
            for p in inspect.signature(function).parameters.values()]  # fmt: skip


@dataclass(frozen=True)
class RemoteObject:
    """An object that lives in the child (a model, a framework's device): its handle there, what str() says of
    it, and for a model the recipe it was built for (the one attribute the harness reads)."""

    handle: int
    text: str
    recipe: Any = None

    def __str__(self) -> str:
        return self.text


# What crosses the pipe by value: builtins, numpy, and common/'s types (the spec's); anything else, the backend
# module's own types included, stays in the child.
_PORTABLE = ("builtins", "numpy", "common")


def _portable(value: Any) -> bool:
    if isinstance(value, (dict, list, tuple)):
        items = list(value.items()) if isinstance(value, dict) else list(value)
        return all(_portable(item) for item in items)
    return type(value).__module__.split(".")[0] in _PORTABLE or type(value).__module__ == __name__


def _error(error: BaseException) -> tuple[str, str]:
    return type(error).__name__, str(error)


def _raise(kind: str, message: str, backend: str) -> None:
    if kind in ("UserError", "WriteError", "DamagedFile"):
        raise UserError(message)
    error_type = getattr(builtins, kind, None)
    if isinstance(error_type, type) and issubclass(error_type, Exception):
        raise error_type(message)
    raise RemoteError(f"{kind} in backend {backend!r}: {message}")


# The child's program: serve() of this module as imported (not as __main__, so that what it pickles names the
# classes by their module here).
_CHILD = "import sys; from backends.remote import serve; sys.exit(serve(sys.argv[1]))"


class RemoteBackend:
    """Backend `name` run by a child of `python` (the interpreter of the backend's environment)."""

    def __init__(self, name: str, python: str) -> None:
        self.name, self.python = name, python
        self._lock = threading.Lock()
        self._process = subprocess.Popen([python, "-c", _CHILD, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        atexit.register(self.close)
        self._members: dict[str, list[tuple[str, int, Any]]] = self._call("__members__")

    def _call(self, function: str, *args: Any, **kwargs: Any) -> Any:
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        with self._lock:
            try:
                send(process.stdin, (function, args, kwargs))
                status, value = receive(process.stdout)
            except (EOFError, BrokenPipeError):
                code = process.wait()
                raise RemoteError(f"the {self.name} backend's process ({self.python}) ended with exit code "
                                  f"{code}") from None  # fmt: skip
        if status == "error":
            _raise(*value, backend=self.name)
        return value

    def __getattr__(self, attribute: str) -> Any:
        if attribute not in self.__dict__.get("_members", ()):
            raise AttributeError(f"backend {self.__dict__.get('name')!r} has no function {attribute!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(attribute, *args, **kwargs)

        call.__name__ = attribute
        call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # the module's own, as inspect reads it
            [inspect.Parameter(name, type(inspect.Parameter.POSITIONAL_ONLY)(kind),
                               default=inspect.Parameter.empty if isinstance(default, _Empty) else default)
             for name, kind, default in self._members[attribute]])  # fmt: skip
        return call

    def environment(self) -> dict[str, str | None]:
        """The environment the backend runs in (the child's), as a run records it."""
        return self._call("__environment__")

    def __dir__(self) -> list[str]:
        return list(self._members)

    def close(self) -> None:
        process = self.__dict__.get("_process")
        if process is None or process.poll() is not None:
            return
        assert process.stdin is not None
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve(name: str) -> int:
    """The child: load the real backend and answer calls on the pipe until it closes."""
    from backends import load_backend
    from common.contract import MEMBERS, OPTIONAL_MEMBERS

    channel_out = os.fdopen(os.dup(1), "wb")  # the protocol's pipe; what the backend prints goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    channel_in = sys.stdin.buffer
    module = load_backend(name)
    objects: dict[int, Any] = {}

    def local(value: Any) -> Any:
        return objects[value.handle] if isinstance(value, RemoteObject) else value

    def handed(value: Any) -> Any:
        if _portable(value):
            return value
        objects[len(objects)] = value
        return RemoteObject(len(objects) - 1, str(value), getattr(value, "recipe", None))

    while True:
        try:
            function, args, kwargs = receive(channel_in)
        except (EOFError, KeyboardInterrupt):  # the parent is gone, or Ctrl-C reached its whole process group: the
            return 0  # parent reports what happened; a waiting child has nothing to add
        try:
            if function == "__members__":  # each function of the contract the module has, with its parameters
                result: Any = {member: _parameters(getattr(module, member)) for member in MEMBERS + OPTIONAL_MEMBERS
                               if callable(getattr(module, member, None))}  # fmt: skip
            elif function == "__environment__":
                result = environments.current()
            else:
                result = handed(getattr(module, function)(*(local(a) for a in args),
                                                          **{k: local(v) for k, v in kwargs.items()}))  # fmt: skip
            send(channel_out, ("ok", result))
        except Exception as error:  # noqa: BLE001 - every error goes back to the caller, who raises it
            send(channel_out, ("error", _error(error)))

