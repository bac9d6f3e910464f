"""Value classes that cost less to define than dataclasses, with everything a caller sees kept.

:func:`frozen` is ``@dataclass(frozen=True, slots=True)`` and :func:`slotted` is
``@dataclass(slots=True)``. ``dataclasses.fields``, ``replace``, ``asdict``, ``repr``, ``==``,
``hash``, ``FrozenInstanceError``, pickling and ``__match_args__`` behave as they do there,
because the standard library still processes the fields. It just generates no methods. The
standard library compiles each class's ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__`` and ``__delattr__`` from source at every start, and the bytecode cache does not
save that work. Here only ``__init__`` is compiled, since it runs on every instance; the others
are shared functions over each class's field names.

``FAILOVER_STDLIB_DATACLASSES=1`` in the environment makes both the standard library's
dataclass. The tests hold the two equal (tests/test_records.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform

__all__ = ["frozen", "slotted"]

T = TypeVar("T")

STDLIB = os.environ.get("FAILOVER_STDLIB_DATACLASSES", "").strip() not in ("", "0")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen(cls: type[T]) -> type[T]:
    """``@dataclass(frozen=True, slots=True)``, defined faster."""
    return _record(cls, frozen=True)


@dataclass_transform(field_specifiers=(dataclasses.field,))
def slotted(cls: type[T]) -> type[T]:
    """``@dataclass(slots=True)``, defined faster."""
    return _record(cls, frozen=False)


class _Factory:
    """The default of a parameter whose field has a default factory (as the stdlib's)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _record(cls: type[T], *, frozen: bool) -> type[T]:
    if STDLIB:
        return dataclasses.dataclass(cls, frozen=frozen, slots=True)
    # Under a dataclass base the stdlib checks that frozen and not frozen do not mix, so it is
    # told the truth there (a frozen subclass then pays for its generated __setattr__).
    inherits = any(hasattr(base, "__dataclass_fields__") for base in cls.__mro__[1:])
    made: Any = dataclasses.dataclass(
        cls, slots=True, init=False, repr=False, eq=False, frozen=frozen and inherits
    )
    fields = dataclasses.fields(made)
    made.__init__ = _init(made, fields, frozen)
    shown = tuple(f.name for f in fields if f.repr)
    compared = tuple(f.name for f in fields if f.compare)
    made.__repr__ = _repr(made, shown)
    made.__eq__ = _eq(made, _getter(compared))
    if frozen:
        hashed = tuple(f.name for f in fields if f.hash or (f.hash is None and f.compare))
        made.__hash__ = _hash(made, _getter(hashed))
        made.__setattr__ = _frozen_setattr
        made.__delattr__ = _frozen_delattr
        names = tuple(f.name for f in fields)
        made.__getstate__ = _getstate(names)
        made.__setstate__ = _setstate(names)
    else:
        made.__hash__ = None  # as the stdlib: eq without frozen leaves instances unhashable
    params = made.__dataclass_params__  # as the stdlib's dataclass of the same options says
    for option, value in (("init", True), ("repr", True), ("eq", True), ("frozen", frozen)):
        setattr(params, option, value)
    return made


def _init(cls: type, fields: tuple[dataclasses.Field[Any], ...], frozen: bool) -> Any:
    """The compiled ``__init__``: the one method that runs on every instance."""
    scope: dict[str, Any] = {"_set": object.__setattr__, "_FACTORY": _FACTORY}
    params: list[str] = []
    body: list[str] = []
    for i, f in enumerate(fields):
        value = f.name
        if f.default is not dataclasses.MISSING:
            scope[f"_d{i}"] = f.default
            default = f"=_d{i}"
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_f{i}"] = f.default_factory
            default = "=_FACTORY"
            value = f"_f{i}() if {f.name} is _FACTORY else {f.name}"
        else:
            default = ""
        if f.init:
            params.append(f.name + default)
        elif default:
            value = f"_f{i}()" if default == "=_FACTORY" else f"_d{i}"
        else:
            continue  # no value at all: left unset, as the stdlib does
        body.append(
            f"    _set(self, {f.name!r}, {value})" if frozen else f"    self.{f.name} = {value}"
        )
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<record {cls.__qualname__}>", "exec"), scope, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {f.name: f.type for f in fields if f.init} | {"return": None}
    return init


def _getter(names: tuple[str, ...]) -> Callable[[Any], Any]:
    if not names:
        return lambda _: ()
    if len(names) == 1:
        only = attrgetter(names[0])
        return lambda obj: (only(obj),)
    return attrgetter(*names)


def _repr(cls: type, names: tuple[str, ...]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{self.__class__.__qualname__}({shown})"

    __repr__.__qualname__ = f"{cls.__qualname__}.__repr__"
    return __repr__


def _eq(cls: type, key: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    __eq__.__qualname__ = f"{cls.__qualname__}.__eq__"
    return __eq__


def _hash(cls: type, key: Callable[[Any], Any]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(key(self))

    __hash__.__qualname__ = f"{cls.__qualname__}.__hash__"
    return __hash__


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(names: tuple[str, ...]) -> Callable[[Any], list[Any]]:
    def __getstate__(self: Any) -> list[Any]:
        return [getattr(self, n) for n in names]

    return __getstate__


def _setstate(names: tuple[str, ...]) -> Callable[[Any, list[Any]], None]:
    def __setstate__(self: Any, state: list[Any]) -> None:
        for name, value in zip(names, state, strict=False):
            object.__setattr__(self, name, value)

    return __setstate__
