"""NVIDIA's stylegan2-ada-pytorch snapshots (``network-snapshot-*.pkl``, the published FFHQ, AFHQ, MetFaces and
CIFAR-10 files), read without running anything they contain.

Such a file is a pickled dict of the official networks (``G``, ``D``, ``G_ema``, ``augment_pipe``) and the
``training_set_kwargs``. The networks are "persistent" objects: the file carries the source code of their module
and names ``torch_utils.persistence._reconstruct_persistent_obj``, which ``exec``s that source while unpickling, so
a plain ``pickle.load`` (and the official ``legacy.load_network_pkl``) runs whatever code the file holds. Here a
restricted unpickler resolves every global the file names through an explicit allow-list of our own functions: a
persistent object becomes plain data (its class name and its attributes; the embedded source is dropped unread),
tensors are rebuilt from their bytes with ``torch.load(..., weights_only=True)``, numpy scalars are decoded with
``struct``; any other global refuses the whole file. Nothing is imported or called on the file's word.
"""

from __future__ import annotations

import inspect
import io
import pickle
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gans.errors import ConfigurationError, MissingFileError
from gans.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

if TYPE_CHECKING:
    from gans.stylegan2 import StyleGAN2

__all__ = ["OfficialNetwork", "build_stylegan2", "read_snapshot", "stylegan2_arguments"]

#: The entries of an official snapshot that hold networks; ``augment_pipe`` may be ``None``.
NETWORKS = ("G", "D", "G_ema")


@dataclass(frozen=True)
class OfficialNetwork:
    """One network of an official snapshot, as plain data.

    Attributes:
        class_name: the official class, e.g. ``"Generator"``, ``"Discriminator"``, ``"AugmentPipe"``.
        init_kwargs: the keyword arguments the official constructor was called with (plain dicts, lists, numbers).
        state_dict: parameters and persistent buffers under the official dotted names, as the official module's
            ``state_dict()`` gives them.
        init_args: positional constructor arguments (the official training passes none).
    """

    class_name: str
    init_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    init_args: tuple[Any, ...] = field(default=())


def read_snapshot(path: str | Path) -> dict[str, Any]:
    """Reads an official stylegan2-ada-pytorch snapshot without executing anything it contains.

    Args:
        path: a ``.pkl`` written by the official training (``network-snapshot-*.pkl``) or published by NVIDIA.

    Returns:
        A dict with ``G``, ``D``, ``G_ema`` (:class:`OfficialNetwork`), ``augment_pipe`` (an
        :class:`OfficialNetwork` or ``None``), ``training_set_kwargs`` (a plain dict or ``None``), and any further
        entries of the file as plain data.

    Raises:
        MissingFileError: ``path`` does not exist.
        ConfigurationError: the file is truncated, not a pickle, names a global outside the allow-list (the message
            names the file and the global), or is not laid out as an official snapshot.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"official snapshot {str(path)!r} does not exist")
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f, path).load()
    except ConfigurationError:
        raise
    except Exception as err:  # pickle raises many kinds (UnpicklingError, EOFError, ValueError, KeyError, ...)
        raise ConfigurationError(
            f"cannot read {str(path)!r} as an official StyleGAN2-ADA snapshot (truncated, not a pickle, or tensor data "
            f"that is not plain): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(data, dict) or not all(isinstance(data.get(name), _PersistentObject) for name in NETWORKS):
        raise ConfigurationError(
            f"{str(path)!r} is not an official StyleGAN2-ADA snapshot: expected a pickled dict with the networks "
            f"{', '.join(NETWORKS)}"
        )
    data.setdefault("augment_pipe", None)
    data.setdefault("training_set_kwargs", None)
    try:
        return {str(key): _plain(value) for key, value in data.items()}
    except _NotPlain as err:
        raise ConfigurationError(f"{str(path)!r} is not an official StyleGAN2-ADA snapshot: {err}") from err
    except RecursionError as err:  # pickle's memo lets a container hold itself; _plain and _flatten recurse
        raise ConfigurationError(
            f"{str(path)!r} is not an official StyleGAN2-ADA snapshot: its data is nested too deeply or holds itself"
        ) from err


class _NotPlain(Exception):
    """A value in an unexpected place or of an unexpected type, found while turning the file into plain data."""


@dataclass
class _PersistentObject:
    """What ``_reconstruct_persistent_obj`` would have built, kept as data: the class name and the object's
    ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, ...)."""

    class_name: str
    state: dict[str, Any]

    def __setstate__(self, state: Any) -> None:  # pickle's BUILD would replace the checked class record
        raise _NotPlain(f"the file sets the state of the persistent object {self.class_name}")


def _persistent_object(meta: Any) -> _PersistentObject:
    # meta = {type, version, module_src, class_name, state}; module_src is the code we must never run.
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise _NotPlain("a persistent object without the official class record")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise _NotPlain(f"the persistent object {meta['class_name']} has no attribute dict")
    return _PersistentObject(meta["class_name"], state)


def _storage_from_bytes(data: Any) -> Any:
    # What torch.storage._load_from_bytes does, minus its full unpickling: the bytes are a torch.save of one storage.
    if not isinstance(data, bytes):
        raise _NotPlain("storage bytes expected")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False, hooks: Any = None,
            metadata: Any = None) -> torch.Tensor:
    # The arguments of torch._utils._rebuild_tensor_v2; the tensor is built with public calls only.
    # torch pickles a tensor's storage typed (the dtype comes with it); set_ takes it as it is (its .untyped() would
    # warn of TypedStorage's deprecation).
    if not isinstance(storage, torch.TypedStorage) or metadata:
        raise _NotPlain("a tensor that is not a plain strided tensor over a typed storage")
    return torch.empty(0, dtype=storage.dtype).set_(storage, int(offset), tuple(size), tuple(stride))


def _parameter(data: Any, requires_grad: Any = False, hooks: Any = None, state: Any = None) -> torch.Tensor:
    # torch._utils._rebuild_parameter(_with_state): a state dict holds the parameter's data, so the data is enough.
    if not isinstance(data, torch.Tensor):
        raise _NotPlain("a parameter without tensor data")
    return data


#: numpy's dtype names (the first argument its dtype pickles with) that a scalar may have, as struct codes.
_STRUCT_CODES = {"b1": "?", "i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "i8": "q", "u8": "Q",
                 "f2": "e", "f4": "f", "f8": "d"}


class _NumpyDType:
    """A numpy dtype's pickle (name, then a state tuple whose second item is the byte order), kept as data so that
    numpy parses nothing from the file."""

    def __init__(self, name: Any, align: Any = False, copy: Any = False) -> None:
        if name not in _STRUCT_CODES:
            raise _NotPlain(f"numpy dtype {name!r} is not a plain number type")
        self.code = _STRUCT_CODES[name]
        self.order = "<"

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        self.order = {"<": "<", "|": "<", ">": ">", "=": "="}.get(order, "<")


def _numpy_scalar(dtype: Any, data: Any = b"") -> bool | int | float:
    # numpy pickles a scalar as multiarray.scalar(dtype, its bytes); the official layers keep gains as numpy floats.
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes):
        raise _NotPlain("a numpy scalar that is not a plain number")
    try:
        return struct.unpack(dtype.order + dtype.code, data)[0]
    except struct.error as err:
        raise _NotPlain(f"a numpy scalar with {len(data)} bytes: {err}") from err


class _AttributeDict(dict):
    """dnnlib's EasyDict (the official training passes its kwargs as EasyDicts): read as a plain dict."""

    def __setstate__(self, state: Any) -> None:
        pass  # the instance __dict__ of an EasyDict is empty; its items come through the dict part


class _Sealed:
    """One of our functions as the file gets it: callable, but pickle's BUILD on it (which sets the attributes of
    whatever the file names, ``__defaults__`` included) is refused, so that a file cannot change how later files
    are read."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        object.__setattr__(self, "_function", function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function(*args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        raise _NotPlain(f"the file sets the state of the global {self._function.__name__}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise _NotPlain(f"the file sets {name} of the global {self._function.__name__}")


#: module -> name -> what we call instead of the global the file names. Nothing else is resolved. Our functions are
#: sealed; the classes (builtins, or ours with a ``__setstate__`` that BUILD cannot call on the class) need not be.
_ALLOWED: dict[str, dict[str, Callable[..., Any]]] = {
    "torch_utils.persistence": {"_reconstruct_persistent_obj": _Sealed(_persistent_object)},
    "torch._utils": {"_rebuild_tensor_v2": _Sealed(_tensor), "_rebuild_parameter": _Sealed(_parameter),
                     "_rebuild_parameter_with_state": _Sealed(_parameter)},
    # torch's own _load_from_bytes would unpickle the storage's bytes without restriction.
    "torch.storage": {"_load_from_bytes": _Sealed(_storage_from_bytes)},
    "collections": {"OrderedDict": OrderedDict},
    "builtins": {"set": set, "frozenset": frozenset},  # protocol 3 (NVIDIA's files) has no opcode for sets
    "dnnlib.util": {"EasyDict": _AttributeDict},
    "numpy": {"dtype": _NumpyDType},
    "numpy.core.multiarray": {"scalar": _Sealed(_numpy_scalar)},  # numpy < 2
    "numpy._core.multiarray": {"scalar": _Sealed(_numpy_scalar)},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """``find_class`` answers from :data:`_ALLOWED` only (the way Python's pickle documentation restricts globals);
    the base class's ``find_class``, which imports modules, is never called."""

    def __init__(self, file: io.BufferedReader, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get(module, {}).get(name)
        if allowed is None:
            hint = (" (a TensorFlow StyleGAN pickle: convert it with the official legacy.py first)"
                    if module.startswith("dnnlib.tflib") else "")
            raise ConfigurationError(
                f"{str(self._path)!r} names the global {module}.{name}, which reading an official snapshot does not "
                f"allow (only tensors, plain values and the official networks as data; nothing the file names is "
                f"imported or run){hint}"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not part of an official snapshot")


def _plain(value: Any) -> Any:
    """``value`` with persistent objects as :class:`OfficialNetwork` and dict subclasses as dicts."""
    if isinstance(value, _PersistentObject):
        return _network(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(item) for item in value)
    return value


def _network(obj: _PersistentObject) -> OfficialNetwork:
    init_kwargs = obj.state.get("_init_kwargs", {})
    init_args = obj.state.get("_init_args", ())
    if not isinstance(init_kwargs, dict) or not isinstance(init_args, tuple | list):
        raise _NotPlain(f"{obj.class_name} has no constructor arguments")
    state_dict: dict[str, torch.Tensor] = {}
    _flatten(obj, "", state_dict)
    return OfficialNetwork(obj.class_name, _plain(init_kwargs), state_dict, tuple(_plain(init_args)))


def _flatten(obj: _PersistentObject, prefix: str, out: dict[str, torch.Tensor]) -> None:
    # The order and names of nn.Module.state_dict: own parameters, own persistent buffers, then each submodule.
    state = obj.state
    parameters, buffers, modules = (state.get(key, {}) for key in ("_parameters", "_buffers", "_modules"))
    if not all(isinstance(part, dict) for part in (parameters, buffers, modules)):
        raise _NotPlain(f"{prefix or obj.class_name} is not a torch module")
    skipped = state.get("_non_persistent_buffers_set") or set()
    tensors = [*parameters.items(), *((name, b) for name, b in buffers.items() if name not in skipped)]
    for name, tensor in tensors:
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise _NotPlain(f"{prefix}{name} is not a tensor")
        out[prefix + name] = tensor
    for name, child in modules.items():
        if child is None:
            continue
        if not isinstance(child, _PersistentObject):
            raise _NotPlain(f"{prefix}{name} is not an official module")
        _flatten(child, f"{prefix}{name}.", out)


def build_stylegan2(snapshot: Mapping[str, Any] | str | Path) -> StyleGAN2:
    """A :class:`gans.StyleGAN2` with the networks of an official snapshot: ``G`` as the generator, ``D`` as the
    discriminator and ``G_ema`` as the EMA generator (``attach_ema``), in eval mode. Its hyperparameters are the
    networks' ``init_kwargs`` (:func:`stylegan2_arguments`), so that a checkpoint or export of it reloads with
    ``load_gan``; the training options a snapshot does not record (learning rates, R1 gamma, ...) keep their defaults.

    Args:
        snapshot: what :func:`read_snapshot` returns, or the path of the ``.pkl`` to read with it.

    Raises:
        ConfigurationError: the networks are not the official StyleGAN2 ``Generator``/``Discriminator`` (StyleGAN3's
            share the class names but not the constructor arguments or the layers), or their weights do not fit.
    """
    from gans.stylegan2 import StyleGAN2  # here, not at the top: gans.loading imports this module

    source = str(snapshot) if isinstance(snapshot, str | Path) else "the snapshot"
    if isinstance(snapshot, str | Path):
        snapshot = read_snapshot(snapshot)
    try:
        model = StyleGAN2(**stylegan2_arguments(snapshot, source))
    except TypeError as err:  # an argument inside mapping_kwargs, synthesis_kwargs, ... that our networks lack
        raise ConfigurationError(
            f"{source}: the networks' init_kwargs do not build gans.StyleGAN2's networks ({err}); only "
            "stylegan2-ada-pytorch snapshots are read, not StyleGAN3 ones"
        ) from err
    model.attach_ema()
    for name, network in (("G", model.generator), ("D", model.discriminator), ("G_ema", model.generator_ema)):
        state_dict = snapshot[name].state_dict
        missing = sorted(set(network.state_dict()) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(network.state_dict()))
        if missing or unexpected:
            raise ConfigurationError(
                f"{source}: the weights of {name} do not fit gans.StyleGAN2's {snapshot[name].class_name} "
                f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                f"{'...' if len(unexpected) > 5 else ''}); only stylegan2-ada-pytorch snapshots are read, not "
                "StyleGAN3 ones"
            )
        try:
            network.load_state_dict(state_dict)
        except RuntimeError as err:  # shapes that differ
            raise ConfigurationError(f"{source}: the weights of {name} do not fit: {err}") from err
    return model.eval()


#: The official constructors' size arguments and the :class:`gans.StyleGAN2` arguments that carry them.
_SIZES = {"z_dim": "latent_dim", "w_dim": "w_dim", "c_dim": "num_classes", "img_resolution": "image_size",
          "img_channels": "channels"}


def stylegan2_arguments(snapshot: Mapping[str, Any], source: str = "the snapshot") -> dict[str, Any]:
    """The :class:`gans.StyleGAN2` arguments that build the networks of an official snapshot: its sizes from
    ``G``'s ``init_kwargs`` (z_dim -> ``latent_dim``, c_dim -> ``num_classes``, img_resolution -> ``image_size``,
    img_channels -> ``channels``, ``w_dim``), the rest of each network's ``init_kwargs`` as its ``init_args``.

    Raises:
        ConfigurationError: a network that is not the official StyleGAN2 class, positional constructor arguments or
            keyword ones it does not take (StyleGAN3's), ``G_ema`` built unlike ``G``, or ``D`` for other sizes than
            ``G``.
    """
    expected = {"G": "Generator", "G_ema": "Generator", "D": "Discriminator"}
    for name, class_name in expected.items():
        network = snapshot[name]
        if network.class_name != class_name or network.init_args:
            raise ConfigurationError(
                f"{source}: {name} is a {network.class_name}{' with positional arguments' * bool(network.init_args)}"
                f"; expected the official {class_name}"
            )
    g_kwargs, d_kwargs = dict(snapshot["G"].init_kwargs), dict(snapshot["D"].init_kwargs)
    if snapshot["G_ema"].init_kwargs != g_kwargs:
        raise ConfigurationError(f"{source}: G_ema is built with other arguments than G")
    for name, kwargs, network in (("G", g_kwargs, StyleGAN2Generator), ("D", d_kwargs, StyleGAN2Discriminator)):
        # StyleGAN3's train.py gives its Generator the synthesis arguments at the top level of init_kwargs.
        unknown = sorted(set(kwargs) - set(inspect.signature(network).parameters))
        if unknown:
            raise ConfigurationError(
                f"{source}: {name}'s init_kwargs do not build gans.StyleGAN2's {expected[name]} (unknown "
                f"{', '.join(map(str, unknown))}); only stylegan2-ada-pytorch snapshots are read, not StyleGAN3 ones"
            )
    missing = [key for key in _SIZES if key not in g_kwargs]
    if missing:
        raise ConfigurationError(f"{source}: G's init_kwargs lack {', '.join(missing)}")
    sizes = {_SIZES[key]: g_kwargs.pop(key) for key in _SIZES}
    for key in ("c_dim", "img_resolution", "img_channels"):
        if d_kwargs.pop(key, None) != sizes[_SIZES[key]]:
            raise ConfigurationError(f"{source}: D's {key} differs from G's")
    return {
        **sizes,
        "generator": {"class_path": "gans.nets.stylegan2.StyleGAN2Generator", "init_args": g_kwargs},
        "discriminator": {"class_path": "gans.nets.stylegan2.StyleGAN2Discriminator", "init_args": d_kwargs},
    }
