"""NetSpec: nets written as Python, as pycaffe's net_spec has them.

    n = NetSpec()
    n.data, n.label = L.Data(batch_size=64, backend=P.Data.LMDB, source="train_lmdb",
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    net_param = n.to_proto()          # a caffe_pb2.NetParameter

`L.<Type>(*bottoms, **kwargs)` makes a layer of Caffe type `<Type>` and returns its top
(a tuple of tops for `ntop` > 1, the layer itself for `ntop=0`). Keyword arguments go,
by pycaffe's rules: a name ending in `param` (`param`, `transform_param`, ...) onto the
LayerParameter; any other name onto the type's own `<type>_param` message when that has
such a field, else onto the LayerParameter (`loss_weight`, `include`, ...). Dicts fill
sub-messages, lists of dicts add repeated messages, a single value given for a repeated
field is one element. Layer and top names are the NetSpec attribute names; unnamed
tops get `<Type><k>`. `in_place=True` makes the tops the bottoms' names.
`P.<Name>.<VALUE>` is the enum value of `<Name>Parameter` (`P.Pooling.MAX`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from google.protobuf.message import Message

from pipeline_lib.proto import caffe_pb2

#: layer types whose parameters live in another type's message
_SHARED_PARAMS = {"Deconvolution": "convolution", "Im2col": "convolution"}


def param_name_dict() -> dict[str, str]:
    """Layer type -> the stem of its `<stem>_param` field, from LayerParameter's fields
    (`Convolution` -> `convolution`, `InnerProduct` -> `inner_product`)."""
    names = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None:
            type_name = field.message_type.name
            if type_name.endswith("Parameter"):
                names[type_name[:-len("Parameter")]] = field.name[:-len("_param")]
    names.update(_SHARED_PARAMS)
    return names


_PARAM_NAMES = param_name_dict()


class NetSpecError(ValueError):
    """A NetSpec argument that does not fit Caffe's messages."""


def assign_proto(proto: Message, name: str, value: Any) -> None:
    """Set field `name` of `proto` from a Python value, recursively (see module doc)."""
    try:
        field = proto.DESCRIPTOR.fields_by_name[name]
    except KeyError:
        raise AttributeError(f"{proto.DESCRIPTOR.name} has no field {name!r}") from None
    repeated = field.is_repeated
    if repeated and not isinstance(value, list | tuple):
        value = [value]
    if repeated:
        container = getattr(proto, name)
        for item in value:
            if isinstance(item, dict):
                sub = container.add()
                for k, v in item.items():
                    assign_proto(sub, k, v)
            elif field.message_type is not None:
                container.add().CopyFrom(item)
            else:
                container.append(item)
    elif isinstance(value, dict):
        sub = getattr(proto, name)
        for k, v in value.items():
            assign_proto(sub, k, v)
    elif field.message_type is not None:
        getattr(proto, name).CopyFrom(value)
    else:
        setattr(proto, name, value)


class Top:
    """One output of a Function: what `L.<Type>(...)` returns and later layers take."""

    def __init__(self, fn: Function, n: int):
        self.fn = fn
        self.n = n

    def to_proto(self) -> caffe_pb2.NetParameter:
        """The net of the layers this top depends on."""
        return to_proto(self)

    def _to_proto(self, layers: dict, names: dict, autonames: Counter) -> None:
        self.fn._to_proto(layers, names, autonames)


class Function:
    """A layer in the making: its type, bottoms (Tops) and keyword parameters."""

    def __init__(self, type_name: str, inputs: tuple, params: dict):
        for i, top in enumerate(inputs):
            if not isinstance(top, Top):
                raise TypeError(f"L.{type_name}: bottom {i} is a {type(top).__name__}, not a "
                                "top made by another layer (e.g. n.data)")
        self.type_name = type_name
        self.inputs = inputs
        self.params = dict(params)
        self.ntop = int(self.params.pop("ntop", 1))
        self.in_place = bool(self.params.pop("in_place", False))
        if self.in_place and not inputs:
            raise NetSpecError(f"L.{type_name}: in_place=True needs a bottom to write over")
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _name(self, names: dict, autonames: Counter) -> str:
        if self not in names:
            if self.ntop > 0:
                names[self] = self._top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = f"{self.type_name}{autonames[self.type_name]}"
        return names[self]

    def _top_name(self, top: Top, names: dict, autonames: Counter) -> str:
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = f"{top.fn.type_name}{autonames[top.fn.type_name]}"
        return names[top]

    def _to_proto(self, layers: dict, names: dict, autonames: Counter) -> None:
        if self in layers:
            return
        bottoms = []
        for top in self.inputs:
            top._to_proto(layers, names, autonames)
            bottoms.append(layers[top.fn].top[top.n])
        layer = caffe_pb2.LayerParameter(type=self.type_name)
        layer.bottom.extend(bottoms)
        if self.in_place:
            layer.top.extend(bottoms)
        else:
            layer.top.extend(self._top_name(top, names, autonames) for top in self.tops)
        layer.name = self._name(names, autonames)
        for key, value in self.params.items():
            self._assign(layer, key, value)
        layers[self] = layer

    def _assign(self, layer: caffe_pb2.LayerParameter, key: str, value: Any) -> None:
        where = f"L.{self.type_name} (layer {layer.name!r})"
        try:
            if key.endswith("param"):
                assign_proto(layer, key, value)
                return
            stem = _PARAM_NAMES.get(self.type_name)
            own = getattr(layer, f"{stem}_param") if stem else None
            if own is not None and key in own.DESCRIPTOR.fields_by_name:
                assign_proto(own, key, value)
            else:
                assign_proto(layer, key, value)
        except AttributeError:
            own_name = f"{_PARAM_NAMES[self.type_name]}_param" if (
                self.type_name in _PARAM_NAMES) else None
            inside = f"{own_name} nor LayerParameter" if own_name else "LayerParameter"
            raise NetSpecError(f"{where}: keyword {key}={value!r}: neither {inside} has a "
                               f"field {key!r}") from None
        except (TypeError, ValueError) as e:
            raise NetSpecError(f"{where}: keyword {key}={value!r}: {e}") from None


class NetSpec:
    """Named tops, in the order they were set; `to_proto()` makes the NetParameter."""

    def __init__(self):
        super().__setattr__("tops", {})

    def __setattr__(self, name: str, value: Top) -> None:
        self.tops[name] = value

    def __getattr__(self, name: str) -> Top:
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(f"NetSpec has no top {name!r}") from None

    def __setitem__(self, name: str, value: Top) -> None:
        self.__setattr__(name, value)

    def __getitem__(self, name: str) -> Top:
        return self.__getattr__(name)

    def __delitem__(self, name: str) -> None:
        del self.tops[name]

    def keys(self) -> list[str]:
        return list(self.tops)

    def vals(self) -> list[Top]:
        return list(self.tops.values())

    def to_proto(self) -> caffe_pb2.NetParameter:
        names = {top: name for name, top in self.tops.items()}
        autonames: Counter = Counter()
        layers: dict = {}
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


def to_proto(*tops: Top) -> caffe_pb2.NetParameter:
    """The net of the layers that the given tops depend on (names made automatically)."""
    layers: dict = {}
    autonames: Counter = Counter()
    for top in tops:
        top.fn._to_proto(layers, {}, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


class Layers:
    """`layers.<Type>(*bottoms, **params)`: a layer of Caffe type `<Type>`."""

    def __getattr__(self, type_name: str):
        if type_name.startswith("__"):
            raise AttributeError(type_name)

        def layer(*bottoms: Top, **params):
            fn = Function(type_name, bottoms, params)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops

        layer.__name__ = type_name
        return layer


class Parameters:
    """`params.<Name>.<VALUE>`: an enum value of caffe_pb2's `<Name>Parameter`."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        message = getattr(caffe_pb2, f"{name}Parameter", None)
        if message is None:
            raise AttributeError(f"caffe.proto has no message {name}Parameter")

        class Enums:
            def __getattr__(self, value: str):
                try:
                    return getattr(message, value)
                except AttributeError:
                    raise AttributeError(f"{name}Parameter has no value {value!r}") from None

        return Enums()


layers = Layers()
params = Parameters()
