"""``failover config validate|show|path|init``: check, show, locate or create the
configuration (providers.yaml)."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from .exits import EXIT_FAILED, EXIT_USAGE, handled
from .output import clean, print_json, redact_url, say, scrub
from .wiring import load_config, state_location, write_atomically

if TYPE_CHECKING:
    from ..config import Config
    from ..types import ProviderConfig


def run_validate(*, config: str | None) -> None:
    """Check the configuration and list every problem as file:line: key: problem."""
    with handled():
        from ..config import find_config
        from ..config import load_config as load
        from ..errors import ConfigError

        found = find_config(config)
        if found is None:
            print("no configuration file found: the built-in default chain is used "
                  "(`failover config init` writes a starter file)")  # fmt: skip
            return
        try:
            cfg = load(found)
        except ConfigError as exc:
            for problem in exc.problems:
                print(scrub(str(problem)))
            count = len(exc.problems)
            say("error", f"{count} problem{'s' if count != 1 else ''} in {found}")
            raise SystemExit(EXIT_USAGE) from None
        names = ", ".join(p.name for p in cfg.providers)
        print(f"{found}: OK ({len(cfg.providers)} providers: {names})")


def run_show(*, config: str | None, json_out: bool, boxed: bool = False) -> None:
    """Print the effective chain; keys are never shown, only whether each variable is set."""
    with handled():
        from dataclasses import asdict

        cfg = load_config(config)
        rows = [_provider_row(p) for p in cfg.providers]
        sections = {
            "retry": asdict(cfg.retry),
            "breaker": asdict(cfg.breaker),
            "routing": asdict(cfg.routing),
            "queue": asdict(cfg.queue),
            "state": {**asdict(cfg.state), **_redacted_state(cfg)},
        }
        source = cfg.source or "built-in defaults"
        if json_out:
            print_json({"source": source, "chain": cfg.chain, "providers": rows, **sections})
            return
        from .render import config_table, make_console, print_table, sections_text

        out = make_console(stderr=False)
        table = config_table(clean(rows, finite=False), source, cfg.chain, out.width)
        text = sections_text(clean(sections, finite=False))
        print_table(out, table, text, boxed=boxed, end="")


# What `config show` accepts as the name of a key variable; anything else (a key pasted there
# by mistake, say `sk-...` or `gsk_...`) is shown as *** and never echoed.
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def _provider_row(p: ProviderConfig) -> dict[str, Any]:
    """One provider as `config show` prints it: URL passwords and misplaced keys hidden."""
    from dataclasses import asdict

    from ..config import base_url, key_env

    env_name = key_env(p)
    shown = env_name if env_name is None or ENV_NAME.fullmatch(env_name) else "***"
    return {
        "name": p.name,
        "kind": p.kind,
        "model": p.model,
        "base_url": redact_url(base_url(p)),
        "api_key_env": shown,
        "api_key_set": bool(shown != "***" and env_name and os.environ.get(env_name)),
        "timeout": p.timeout,
        "connect_timeout": p.connect_timeout,
        "priority": p.priority,
        "cost": None if p.cost is None else asdict(p.cost),
    }


def _redacted_state(cfg: Config) -> dict[str, Any]:
    return {"url": redact_url(cfg.state.url)} if cfg.state.url else {}


def run_path(*, config: str | None, state: str | None) -> None:
    """Print where the configuration and the state live."""
    with handled():
        from ..config import config_dir, find_config
        from ..paths import cache_dir
        from ..store import default_state_path

        found = find_config(config)
        print(f"config:      {found if found else 'none found: built-in default chain'}")
        print(f"config dir:  {config_dir()}")
        location = state
        if found is not None and not location:
            location = state_location(None, load_config(str(found)))
        print(f"state:       {redact_url(location) if location else default_state_path()}")
        print(f"cache:       {cache_dir()} (parsed configurations; safe to delete)")


def run_init(*, force: bool, path: str | None) -> None:
    """Write a commented starter providers.yaml (never overwrites without --force)."""
    from pathlib import Path

    from ..config import config_dir
    from ..starter import STARTER_YAML

    target = Path(path) if path else config_dir() / "providers.yaml"
    if (target.exists() or target.is_symlink()) and not force:
        say("error", f"{target} already exists (use --force to overwrite it)")
        raise SystemExit(EXIT_USAGE)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(str(target), STARTER_YAML, mode=0o600)
    except OSError as exc:
        say("error", f"cannot write {target}: {exc.strerror or exc}")
        raise SystemExit(EXIT_FAILED) from None
    print(target)
    say("note", "edit it, then check it with `failover config validate`")
