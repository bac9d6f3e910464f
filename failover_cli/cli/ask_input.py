"""What ``failover ask`` reads before anything is sent: ``-m`` models, ``--schema`` and standard
input. Bad values are usage errors (BadOption) raised before standard input is read."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from .exits import BadOption
from .wiring import check_names

if TYPE_CHECKING:
    from ..config import Config

MAX_STDIN = 16 << 20  # bytes of piped prompt; a large diff is well under it
_STDIN_CHUNK = 1 << 20


def schema_format(value: str) -> dict[str, Any]:
    """``--schema``'s response format; BadOption (a usage error) when it is not usable."""
    from ..attach import AttachmentError, load_schema

    try:
        return load_schema(value)
    except AttachmentError as exc:
        raise BadOption(str(exc).removeprefix("--schema").lstrip(": "), "--schema") from None


# --- -m/--model ---------------------------------------------------------------------------------

# A bare model id goes to the chain's providers of the kind its name starts like.
MODEL_PREFIXES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("claude",), "anthropic"),
    (("gpt", "chatgpt", "o1", "o3", "o4"), "openai"),
    (("gemini",), "gemini"),
)


def model_kind(model: str) -> str | None:
    """The provider kind a bare ``-m MODEL`` is for, by the start of its name, or None."""
    lowered = model.lower()
    return next((kind for starts, kind in MODEL_PREFIXES if lowered.startswith(starts)), None)


def model_overrides(
    config: Config, specs: Sequence[str] | None, only: Sequence[str] | None
) -> dict[str, str] | None:
    """Provider name -> this call's model, from ``-m`` values (see ``failover ask --help``):
    ``NAME=MODEL`` for a named provider; a bare ``MODEL`` for the one ``-p`` provider, else
    for every provider (among ``-p`` ones, if given) of the kind ``MODEL`` starts like.
    Raises UnknownProvider or BadOption (usage errors) before anything is read or sent."""
    if not specs:
        return None
    kinds = {p.name: p.kind for p in config.providers}
    out: dict[str, str] = {}
    for spec in specs:
        name, eq, model = spec.partition("=")
        if not eq:
            name, model = "", spec
        if not model.strip():
            raise BadOption(f"'{spec}' names no model (-m MODEL or -m NAME=MODEL)", "--model")
        if eq:
            check_names(config, [name], "--model")
            targets = [name]
        elif only and len(only) == 1:
            targets = list(only)
        else:
            targets = _providers_for(model, kinds, only)
        for target in targets:
            if out.setdefault(target, model) != model:
                raise BadOption(
                    f"two models for {target}: '{out[target]}' and '{model}'", "--model"
                )
    return out


def _providers_for(model: str, kinds: Mapping[str, str], only: Sequence[str] | None) -> list[str]:
    kind = model_kind(model)
    if kind is None:
        starts = "; ".join(f"{', '.join(p + '*' for p in s)} {k}" for s, k in MODEL_PREFIXES)
        raise BadOption(
            f"cannot tell which provider '{model}' is for (a bare model goes by its name: "
            f"{starts}); give -m NAME={model}, or one -p NAME",
            "--model",
        )
    pool = list(only) if only else list(kinds)
    targets = [n for n in pool if kinds[n] == kind]
    if not targets:
        where = "the providers given with --provider" if only else "the chain"
        raise BadOption(
            f"'{model}' is for a {kind} provider, but {where} has none ({', '.join(pool)}); "
            f"give -m NAME={model}",
            "--model",
        )
    return targets


# --- standard input -----------------------------------------------------------------------------


class BoundedStdin:
    """Standard input as :func:`failover_cli.prompt.read_prompt` reads it, read in chunks and
    refused past ``limit`` bytes (memory stays bounded whatever is piped) or when it holds a
    NUL byte (binary data, not a prompt)."""

    def __init__(self, raw: BinaryIO, limit: int = MAX_STDIN) -> None:
        self.raw = raw
        self.limit = limit

    def fileno(self) -> int:
        return self.raw.fileno()

    def read(self) -> bytes:
        from ..prompt import PromptError

        chunks: list[bytes] = []
        size = 0
        while size <= self.limit:
            chunk = self.raw.read(min(_STDIN_CHUNK, self.limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > self.limit:
            raise PromptError(
                f"standard input is larger than {self.limit >> 20} MiB, the most failover "
                "sends as a prompt: trim it or send it in parts"
            )
        data = b"".join(chunks)
        nul = data.find(b"\0")
        if nul >= 0:
            raise PromptError(
                f"standard input is not text (a NUL byte at offset {nul}): failover sends "
                "UTF-8 text prompts only"
            )
        return data


def raw_stdin() -> BinaryIO | None:
    return None if sys.stdin is None else getattr(sys.stdin, "buffer", None)


def bounded_stdin() -> BinaryIO | None:
    raw = raw_stdin()
    return None if raw is None else cast(BinaryIO, BoundedStdin(raw))
