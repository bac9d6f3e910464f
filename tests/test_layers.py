"""Imports flow one way: each failover_cli module imports only from its own layer or below,
and providers/ and store/ never import each other. Imports under ``TYPE_CHECKING`` are
annotations only and are not counted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "failover_cli"

LAYERS: dict[str, int] = {
    # 1: vocabulary, no policy
    "types": 1, "chat": 1, "messages": 1, "request": 1, "errors": 1, "clock": 1, "protocols": 1,
    "paths": 1, "prompt": 1, "fsutil": 1, "attach": 1, "records": 1,
    # 2: pure policy
    "breaker": 2, "retry": 2, "scoring": 2, "state": 2, "ratelimit": 2, "budget": 2,
    # 3: configuration
    "config": 3, "config_cache": 3, "starter": 3, "capabilities": 3,
    # 4: the outside world, behind protocols
    "providers": 4, "store": 4, "sim": 4, "history": 4,
    # 5: the core
    "tracker": 5, "waitqueue": 5, "router": 5, "health": 5, "prober": 5,
    # 6: the command line and its presentation
    "cli": 6, "serve": 6, "testing": 6, "__main__": 6, "__init__": 6,
}  # fmt: skip


def top(module: str) -> str:
    """``providers._base`` -> ``providers``."""
    return module.split(".")[0]


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def name_of(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def imported(path: Path) -> list[str]:
    """failover_cli modules ``path`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name_of(path).split(".")[:-1]  # relative imports start here
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("failover_cli."):
                    found.append(node.module.removeprefix("failover_cli."))
                continue
            base = package[: len(package) - node.level + 1] if node.level > 1 else package
            target = ".".join([*base, node.module] if node.module else base)
            if target:
                found.append(target)
            else:  # `from . import x`: x is a module, or (only __version__) a package attribute
                found.extend(alias.name for alias in node.names if alias.name != "__version__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("failover_cli."):
                    found.append(alias.name.removeprefix("failover_cli."))
    return found


def test_every_module_has_a_layer():
    assert {top(name_of(p)) for p in modules()} <= set(LAYERS)


@pytest.mark.parametrize("path", modules(), ids=name_of)
def test_imports_flow_down(path: Path):
    me = top(name_of(path))
    for target in imported(path):
        them = top(target)
        if them == me:
            continue
        assert them in LAYERS, f"{name_of(path)} imports unknown {target}"
        assert LAYERS[them] <= LAYERS[me], f"{name_of(path)} (layer {LAYERS[me]}) imports {target}"
        assert {me, them} != {"providers", "store"}, f"{name_of(path)} imports {target}"
