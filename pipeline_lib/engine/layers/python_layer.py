"""The "Python" layer: a layer written by the user in Python, as pycaffe runs it.

`python_param { module: "m" layer: "Cls" param_str: "..." }` imports module `m`
by name (from sys.path, as Caffe does; then, as kindnesses Caffe lacks, from the
working directory and from the folder of the net file being built, when its
reader says which: `modules_beside`) and makes `Cls(param)`, param being the
LayerParameter. Those folders are on sys.path only while `m` is imported, so
one net's folder does not leak into the next; as with any import, `m` then
stays in sys.modules under its name (a second net's `m` elsewhere gets the
first one). `PythonLayerBase` is a base class with pycaffe's Layer's face;
a class not derived from it is made with `Cls()` when it takes no argument.
Before `setup` the instance gets `param_str` and `phase` (0 TRAIN, 1 TEST).

pycaffe's method names are called with lists of blobs: `setup(bottom, top)`
once, `reshape(bottom, top)` before every forward, `forward(bottom, top)`,
`backward(top, propagate_down, bottom)`. Each blob shows pycaffe's face:
`.data`, `.diff` (NumPy arrays to read and write in place), `.shape`,
`.count`, `.num/.channels/.height/.width` (Caffe's legacy 4-D view) and
`.reshape(*dims)`. `self.blobs.add_blob(*dims)` in setup makes a learnable
blob (zero-filled; the net trains and saves it like any layer's weights).

On a GPU net the user's code still sees NumPy arrays, as in Caffe: the
blobs are copied to the host around each call and back after it. An error in
the user's code is raised naming the layer, the class and the method.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register


class PythonLayerError(RuntimeError):
    """The user's layer code raised; the message names the layer, class and method."""


#: folders of the net files whose nets are being built (see `modules_beside`)
_NET_FOLDERS: ContextVar[tuple[str, ...]] = ContextVar("python_layer_net_folders", default=())


@contextmanager
def modules_beside(*net_files: str | os.PathLike) -> Iterator[None]:
    """While nets read from `net_files` are built, a Python layer's module that is not on
    sys.path or in the working directory is also looked for in those files' folders."""
    folders = [os.path.abspath(Path(f).parent) for f in net_files]
    token = _NET_FOLDERS.set(tuple(dict.fromkeys([*_NET_FOLDERS.get(), *folders])))
    try:
        yield
    finally:
        _NET_FOLDERS.reset(token)


class PyBlob:
    """A Blob as pycaffe shows it to a Python layer."""

    def __init__(self, blob: Blob):
        self._blob = blob

    @property
    def data(self):
        return self._blob.data

    @property
    def diff(self):
        return self._blob.diff

    @property
    def shape(self) -> tuple[int, ...]:
        return self._blob.shape

    @property
    def count(self) -> int:
        return self._blob.count

    def reshape(self, *dims) -> None:
        self._blob.reshape(tuple(int(d) for d in dims))

    def _legacy(self, index: int) -> int:
        shape = self._blob.shape
        if len(shape) > 4:
            raise ValueError(f"blob of shape {shape} has more than 4 axes: use .shape")
        return shape[index] if index < len(shape) else 1

    num = property(lambda self: self._legacy(0))
    channels = property(lambda self: self._legacy(1))
    height = property(lambda self: self._legacy(2))
    width = property(lambda self: self._legacy(3))

    def __repr__(self) -> str:
        return f"PyBlob(shape={self.shape})"


class _ParamList:
    """A Python layer's learnable blobs (`self.blobs`), with pycaffe's `add_blob`."""

    def __init__(self, owner: PythonLayer):
        self._owner = owner

    def _views(self) -> list[PyBlob]:
        return [PyBlob(b) for b in self._owner.host_params()]

    def add_blob(self, *dims) -> None:
        self._owner.add_param(tuple(int(d) for d in dims))

    def __len__(self) -> int:
        return len(self._owner.blobs)

    def __getitem__(self, i):
        return self._views()[i]

    def __iter__(self):
        return iter(self._views())


class PythonLayerBase:
    """Base for user layers, as pycaffe's `caffe.Layer`: made with the LayerParameter."""

    def __init__(self, param=None):
        self.param = param

    def setup(self, bottom, top) -> None:
        pass

    def reshape(self, bottom, top) -> None:
        pass

    def backward(self, top, propagate_down, bottom) -> None:
        pass


@register
class PythonLayer(Layer):
    type = "Python"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        cls = self._user_class()
        self._where = f"{cls.__module__}.{cls.__qualname__}"
        takes_param = issubclass(cls, PythonLayerBase) or _accepts_one_argument(cls)
        self.user = self._call(cls, "__init__", *((self.param,) if takes_param else ()))
        self.user.param_str = self.param.python_param.param_str
        self.user.phase = int(self.phase)
        self.user.blobs = _ParamList(self)
        self._host: dict[int, Blob] = {}
        for name in ("forward", "reshape"):
            if not callable(getattr(self.user, name, None)):
                raise self.error(f"class {self._where} has no method {name}(bottom, top)")
        if callable(getattr(self.user, "setup", None)):
            self._run("setup", bottom, top)

    def _user_class(self):
        pp = self.param.python_param
        if not pp.module or not pp.layer:
            raise self.error("python_param needs both module and layer (the class name), "
                             f"got module {pp.module!r} layer {pp.layer!r}")
        folders = _extra_folders()
        module = _import(pp.module, folders)
        if isinstance(module, Exception):
            if isinstance(module, ModuleNotFoundError):
                where = ["on sys.path", f"in the working directory {folders[0]!r}",
                         *(f"in the net file's folder {f!r}" for f in folders[1:])]
                raise self.error(f"python_param.module {pp.module!r} cannot be imported: no "
                                 f"module named {module.name!r} {', '.join(where[:-1])} or "
                                 f"{where[-1]} (class {pp.layer!r})")
            raise self.error(f"importing python_param.module {pp.module!r} (for class "
                             f"{pp.layer!r}) raised {type(module).__name__}: {module}")
        cls = getattr(module, pp.layer, None)
        if not inspect.isclass(cls):
            raise self.error(f"python_param.module {pp.module!r} "
                             f"({getattr(module, '__file__', '?')}) has no class {pp.layer!r}")
        return cls

    # -- the calls into the user's code -----------------------------------------------
    def _call(self, fn, name: str, *args):
        try:
            return fn(*args)
        except Exception as exc:
            where = getattr(self, "_where", "")
            raise PythonLayerError(f"layer {self.name!r} (Python, {where}).{name} raised "
                                   f"{type(exc).__name__}: {exc}") from exc

    def _run(self, method: str, first: list[Blob], second: list[Blob], flags=None):
        """Call the user's `method` with two lists of blobs as PyBlobs (and propagate_down
        between them), on host copies when the net's arrays are not NumPy."""
        mirror = self.xp is not np
        if mirror:
            self._host = {id(b): _host_copy(b) for b in (*first, *second, *self.blobs)}
        args = [[PyBlob(self._host.get(id(b), b)) for b in first]]
        args += [list(flags)] if flags is not None else []
        args += [[PyBlob(self._host.get(id(b), b)) for b in second]]
        try:
            self._call(getattr(self.user, method), method, *args)
        finally:
            if mirror:
                for b in (*first, *second, *self.blobs):
                    _copy_back(self._host[id(b)], b)
                self._host = {}

    def host_params(self) -> list[Blob]:
        return [self._host.get(id(b), b) for b in self.blobs]

    def add_param(self, shape: tuple[int, ...]) -> None:
        self.blobs.append(self.make_blob(shape))
        if self.xp is not np:
            self._host[id(self.blobs[-1])] = _host_copy(self.blobs[-1])

    # -- the Caffe contract -------------------------------------------------------------
    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self._run("reshape", bottom, top)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        self._run("forward", bottom, top)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if callable(getattr(self.user, "backward", None)):
            self._run("backward", top, bottom, propagate_down)


def _extra_folders() -> list[str]:
    """Where a module missing from sys.path is looked for next: the working directory,
    then the folders of the net files being built."""
    return list(dict.fromkeys([os.getcwd(), *_NET_FOLDERS.get()]))


def _import(name: str, folders: list[str]):
    """The module, or the exception that importing it raised (sys.path, then each of
    `folders` not on it, put on sys.path only for that try)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name.split(".")[0]:
            return exc  # found, but it imports something missing
        missing = exc
    except Exception as exc:
        return exc
    on_path = {os.path.abspath(p or os.curdir) for p in sys.path}
    for folder in (f for f in folders if f not in on_path):
        sys.path.append(folder)
        importlib.invalidate_caches()  # a module written since the last look
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name.split(".")[0]:
                return exc
        except Exception as exc:
            return exc
        finally:
            sys.path.remove(folder)
    return missing


def _accepts_one_argument(cls) -> bool:
    try:
        inspect.signature(cls).bind(None)
        return True
    except (TypeError, ValueError):
        return False


def _host_copy(blob: Blob) -> Blob:
    host = Blob(blob.shape, np, blob.dtype, blob.name)
    host.data[...] = to_host(blob.data)
    host.diff[...] = to_host(blob.diff)
    return host


def _copy_back(host: Blob, blob: Blob) -> None:
    blob.reshape(host.shape)
    blob.data[...] = blob.xp.asarray(host.data)
    blob.diff[...] = blob.xp.asarray(host.diff)
