"""``records.frozen`` and ``records.slotted`` behave as ``@dataclass(frozen=True, slots=True)``
and ``@dataclass(slots=True)`` in everything a caller sees; the stdlib path
(``FAILOVER_STDLIB_DATACLASSES=1``) stays available and gives the same package."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from failover_cli import records


def body(decorate: Callable[[type], type]) -> dict[str, type]:
    """The same class bodies under ``decorate``: defaults, factories, no fields, a class
    variable, a field left out of repr and comparison, a __post_init__, one field."""

    @decorate
    class Point:
        x: int
        y: int = 0
        tags: list[str] = dataclasses.field(default_factory=list)
        meta: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)
        kind: ClassVar[str] = "point"

    @decorate
    class Empty:
        pass

    @decorate
    class One:
        value: str

    @decorate
    class Checked:
        n: int
        seen: list[int] = dataclasses.field(default_factory=list)

        def __post_init__(self) -> None:
            self.seen.append(self.n)

    return {"Point": Point, "Empty": Empty, "One": One, "Checked": Checked}


def sample(classes: dict[str, type]) -> list[Any]:
    return [
        classes["Point"](1),
        classes["Point"](1, 2, ["a"], {"k": 1}),
        classes["Point"](x=3, tags=["b", "c"]),
        classes["Empty"](),
        classes["One"]("v"),
        classes["Checked"](5),
    ]


def hashed(obj: Any, twin: Any) -> Any:
    try:
        return hash(obj) == hash(twin)
    except TypeError as exc:  # a list field: unhashable either way
        return str(exc)


def observed(classes: dict[str, type], frozen: bool) -> list[Any]:
    """What a caller can see of each sample, in comparable terms."""
    out: list[Any] = []
    for obj in sample(classes):
        cls = type(obj)
        twin = dataclasses.replace(obj)
        fields = [(f.name, f.type, f.repr, f.compare) for f in dataclasses.fields(obj)]
        out.append(
            (
                repr(obj),
                fields,
                dataclasses.asdict(obj),
                dataclasses.astuple(obj),
                twin == obj,
                obj == object(),
                cls.__match_args__,
                cls.__slots__,
                str(inspect.signature(cls)),
                dataclasses.is_dataclass(obj),
                cls.__dataclass_params__.frozen,  # type: ignore[attr-defined]
                hashed(obj, twin) if frozen else cls.__hash__ is None,
                copy.copy(obj) == obj,  # as pickling does: __reduce_ex__, __setstate__
                copy.deepcopy(obj) == obj,
                hasattr(obj, "__dict__"),
            )
        )
    return out


@pytest.mark.parametrize("frozen", [True, False], ids=["frozen", "slotted"])
def test_a_record_is_seen_as_the_stdlib_dataclass_is(frozen: bool, monkeypatch):
    ours = records.frozen if frozen else records.slotted
    stdlib = body(lambda c: dataclasses.dataclass(c, frozen=frozen, slots=True))
    monkeypatch.setattr(records, "STDLIB", False)
    made = body(ours)
    assert observed(made, frozen) == observed(stdlib, frozen)
    point = made["Point"](1, 2, ["a"], {"k": 1})
    assert point != made["Point"](1, 3, ["a"])  # a compared field differs
    assert point == made["Point"](1, 2, ["a"], {"other": 2})  # meta is not compared
    assert made["Point"](1).tags is not made["Point"](1).tags  # a fresh factory value each
    assert made["Checked"](7).seen == [7]
    with pytest.raises(TypeError):
        made["One"]()  # a field without a default is required
    with pytest.raises(TypeError):
        made["Point"](1, 2, [], {}, 5)


def test_a_frozen_record_refuses_assignment_as_the_stdlib_does(monkeypatch):
    monkeypatch.setattr(records, "STDLIB", False)
    point = body(records.frozen)["Point"](1)
    stdlib = body(lambda c: dataclasses.dataclass(c, frozen=True, slots=True))["Point"](1)
    for obj in (point, stdlib):
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'x'"):
            obj.x = 2
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'x'"):
            del obj.x
        with pytest.raises((AttributeError, TypeError)):
            obj.other = 1  # slots: no attribute beyond the fields
    one = body(records.frozen)["One"]("v")
    assert {one: 1}[dataclasses.replace(one)] == 1


def test_records_inherit_as_dataclasses_do(monkeypatch):
    monkeypatch.setattr(records, "STDLIB", False)

    @records.frozen
    class Base:
        a: int

    @records.frozen
    class Child(Base):
        b: int = 2

    child = Child(1)
    assert repr(child).endswith(".Child(a=1, b=2)")
    assert child == Child(1, 2) and child != Base(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        child.a = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match="cannot inherit non-frozen dataclass from a frozen one"):

        @records.slotted
        class Loose(Base):
            c: int = 0


def test_a_slotted_record_may_change_and_is_unhashable(monkeypatch):
    monkeypatch.setattr(records, "STDLIB", False)
    point = body(records.slotted)["Point"](1)
    point.x = 5
    assert point.x == 5
    with pytest.raises(TypeError):
        hash(point)


def test_the_package_is_the_same_on_the_stdlib_path():
    """Every record class of the package, imported with FAILOVER_STDLIB_DATACLASSES=1 and
    without, has the same fields, signature and repr of its defaults."""
    script = r"""
import dataclasses, importlib, inspect, json, pkgutil, sys
import failover_cli
from failover_cli import records
out = {"stdlib": records.STDLIB}
for info in pkgutil.walk_packages(failover_cli.__path__, "failover_cli."):
    if info.name.startswith(("failover_cli.serve", "failover_cli.__main__")):
        continue  # the gateway's optional extra
    module = importlib.import_module(info.name)
    for name, obj in vars(module).items():
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == info.name:
            fields = [
                (f.name, str(f.type), "-" if f.default is dataclasses.MISSING else repr(f.default),
                 getattr(f.default_factory, "__name__", "-"), f.init, f.repr, f.compare)
                for f in dataclasses.fields(obj)
            ]
            out[f"{info.name}.{name}"] = [
                fields, str(inspect.signature(obj)), hasattr(obj, "__slots__"),
                obj.__dataclass_params__.frozen, obj.__hash__ is None, obj.__match_args__,
            ]
print(json.dumps(out, sort_keys=True))
"""
    runs = {}
    for flag in ("0", "1"):
        env = {**os.environ, "FAILOVER_STDLIB_DATACLASSES": flag}
        proc = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        runs[flag] = __import__("json").loads(proc.stdout)
    assert (runs["0"].pop("stdlib"), runs["1"].pop("stdlib")) == (False, True)
    assert len(runs["0"]) > 50
    assert runs["0"] == runs["1"]


def test_a_record_of_the_package_pickles_and_stays_frozen():
    from failover_cli.config import parse_config
    from failover_cli.types import Usage

    usage = Usage(3, 4)
    back = pickle.loads(pickle.dumps(usage))
    assert back == usage and hash(back) == hash(usage)
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.input_tokens = 5  # type: ignore[misc]
    cfg = parse_config("providers: [{name: gpt, kind: openai, model: m}]\n")
    assert pickle.loads(pickle.dumps(cfg)) == cfg
