"""The public API: one list of exports, equal to ``__all__`` and to what type checkers see."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import failover_cli
from failover_cli import _EXPORTS

INIT = Path(failover_cli.__file__)

# What a library user types, per the chat-request issue: each must be importable from the top.
USER_TYPES = {
    "FailoverRouter", "RouteStream", "RouteResult", "Message", "ToolCall", "Tool",
    "TextDelta", "ToolCallDelta", "StreamDone", "StreamSwitched", "Provider", "StateStore",
    "open_store", "load_config", "ProviderConfig", "Usage", "AllProvidersFailed",
    "BudgetExceeded",
}  # fmt: skip


def test_all_is_the_export_list() -> None:
    assert failover_cli.__all__ == [*_EXPORTS, "__version__"]


def test_every_export_resolves_to_the_module_it_names() -> None:
    for name, module in _EXPORTS.items():
        value = getattr(failover_cli, name)
        assert value is getattr(importlib.import_module(f"failover_cli.{module}"), name), name


def test_type_checkers_see_the_same_names() -> None:
    tree = ast.parse(INIT.read_text())
    guarded = next(n for n in tree.body if isinstance(n, ast.If))  # if TYPE_CHECKING:
    seen = {
        (alias.name, node.module)
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == set(_EXPORTS.items())


def test_what_users_type_is_exported() -> None:
    assert set(_EXPORTS) >= USER_TYPES


def test_unknown_names_raise_attribute_error() -> None:
    try:
        failover_cli.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_the_package_is_marked_typed() -> None:
    assert (INIT.parent / "py.typed").is_file()
