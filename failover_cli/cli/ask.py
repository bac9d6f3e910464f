"""``failover ask``: one question through the chain, the answer streamed to stdout.

This is the command people run in pipelines, so its start-up counts: it imports neither Typer
nor Rich (Rich only when stderr or stdout is a terminal), and the attachment code only with
``-a`` or ``--schema``. :mod:`failover_cli.cli.fast` calls :func:`run_ask` straight from the
command line; the Typer command calls it too. :class:`Session`, the setup and sending it
shares with ``chat``, is here as well.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .ask_input import MAX_STDIN, bounded_stdin, model_overrides, raw_stdin, schema_format
from .conversation import Conversation
from .exits import EXIT_FAILED, exit_code_of, handled, run_async
from .output import (
    Answer,
    PlainNotes,
    animates,
    err_console,
    json_text,
    note_dim,
    print_json,
    say,
    scrub,
    styled,
    usage_text,
    warn,
)
from .wiring import check_names, close_store, load_config, open_store, state_location

if TYPE_CHECKING:
    from ..config import Config
    from ..errors import RoutingError
    from ..types import Attempt, RouteResult


def run_ask(
    prompt: str | None = None,
    *,
    system: str | None = None,
    max_tokens: int = 1024,
    temperature: float | None = None,
    provider: Sequence[str] | None = None,
    model: Sequence[str] | None = None,
    attach: Sequence[str] | None = None,
    schema: str | None = None,
    timeout: float | None = None,
    wait: float | None = None,
    no_stream: bool = False,
    json_out: bool = False,
    verbose: bool = False,
    usage: bool = False,
    continue_last: bool = False,
    cid: str | None = None,
    no_log: bool = False,
    config: str | None = None,
    state: str | None = None,
) -> None:
    """Ask the chain one question; the answer streams to stdout as it arrives. Raises
    SystemExit with the documented code on failure, BadOption (UnknownProvider) for a bad
    ``provider``, ``model`` or ``schema``, before standard input is read. The defaults are
    those of :data:`failover_cli.cli.options.ASK` (a test holds them equal).

    ``continue_last`` (``-c``/``--continue``) and ``cid`` (``--cid``) continue the last or a
    given conversation: its earlier turns are sent first (BadOption when there is none). The
    answer is recorded in the history afterwards unless ``no_log`` (see
    :mod:`failover_cli.cli.conversation`)."""
    from ..errors import AllProvidersFailed, BudgetExceeded

    with handled():
        from ..prompt import STDIN_MARKER, read_prompt

        session = Session.start(
            config=config, state=state, continue_last=continue_last, cid=cid, no_log=no_log,
            provider=provider, model=model, max_tokens=max_tokens, temperature=temperature,
            timeout=timeout, wait=wait,
        )  # fmt: skip
        talk = session.talk
        response_format = schema_format(schema) if schema is not None else None
        stdin = bounded_stdin()
        attachments: list[Any] = []
        if attach:
            from ..attach import read_attachments

            if STDIN_MARKER in attach:
                if prompt in (None, STDIN_MARKER):
                    from ..prompt import PromptError

                    raise PromptError(
                        "'-a -' reads an attachment from standard input, so the prompt cannot "
                        'come from it too: give the prompt as an argument (failover ask -a - "...")'
                    )
                stdin = None  # the attachment's: not appended to the prompt
            attachments = read_attachments(attach, raw_stdin(), text_limit=MAX_STDIN)
        text = read_prompt(prompt, stdin)
        messages = None
        shown: dict[str, Any] = {}
        if attachments:
            from ..attach import user_message

            messages = [user_message(text, attachments)]
            shown["attachments"] = [a.summary() for a in attachments]
        request = session.request(text, system, messages)
        if json_out and talk.recorded:
            shown["conversation"] = talk.cid  # for `ask -c`/`--cid` and `logs --cid`
        if response_format is not None:
            request["response_format"] = response_format
        try:
            result = session.send(
                request, stream=not no_stream, json_out=json_out, verbose=verbose,
                structured=response_format is not None, shown=shown, usage=usage,
            )  # fmt: skip
        except AllProvidersFailed as exc:
            talk.record_failure(text, request["system"], exc, attachments)  # nothing lost
            if not isinstance(exc, BudgetExceeded):  # keys were not what stopped it
                _explain_keys(session.cfg, exc)
            raise
        talk.record(text, request["system"], result, attachments)  # the answer is out


class Session:
    """What ``ask`` and every ``chat`` turn share, read once from the command line: the
    configuration, the conversation, where the state is kept, and the settings each request
    carries (bounds, ``-p`` providers, ``-m`` models)."""

    __slots__ = ("cfg", "location", "settings", "talk")

    def __init__(
        self, cfg: Config, talk: Conversation, location: str | None, settings: dict[str, Any]
    ) -> None:
        self.cfg = cfg
        self.talk = talk
        self.location = location
        self.settings = settings

    @classmethod
    def start(
        cls, *, config: str | None, state: str | None, continue_last: bool, cid: str | None,
        no_log: bool, provider: Sequence[str] | None, model: Sequence[str] | None,
        max_tokens: int, temperature: float | None, timeout: float | None, wait: float | None,
    ) -> Session:  # fmt: skip
        """Load the configuration, then read the conversation to continue, ``provider`` and
        ``model``, in that order: the first bad one is the error (BadOption, a usage error)."""
        cfg = load_config(config)
        talk = Conversation.start(cfg, continue_last=continue_last, cid=cid, no_log=no_log)
        only = check_names(cfg, provider, "--provider")
        models = model_overrides(cfg, model, only)
        settings: dict[str, Any] = dict(
            max_tokens=max_tokens, temperature=temperature, timeout=timeout, max_wait=wait,
            only=only,
        )  # fmt: skip
        if models:
            settings["models"] = models
        return cls(cfg, talk, state_location(state, cfg), settings)

    def request(
        self, text: str, system: str | None, messages: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """A turn's request: ``text`` (or ``messages``, which carry it) after the
        conversation's earlier turns, with ``system``, else the conversation's."""
        request: dict[str, Any] = dict(prompt=text, system=self.talk.system(system))
        request.update(self.settings)
        if messages is not None:
            request["prompt"] = None
            request["messages"] = messages
        self.talk.add_earlier(request)
        return request

    def send(
        self,
        request: dict[str, Any],
        *,
        stream: bool,
        json_out: bool,
        verbose: bool,
        usage: bool,
        structured: bool = False,
        shown: Mapping[str, Any] | None = None,
    ) -> RouteResult | None:
        """Route ``request`` and print its answer (see :func:`_ask`); the history starts
        opening once the first attempt does."""
        return run_async(
            _ask(self.cfg, self.location, request, stream=stream, json_out=json_out,
                 verbose=verbose, structured=structured, shown=shown, usage=usage,
                 listener=self.talk.on_event)
        )  # fmt: skip


async def _ask(
    cfg: Config,
    location: str | None,
    request: dict[str, Any],
    *,
    stream: bool,
    json_out: bool,
    verbose: bool,
    structured: bool = False,
    shown: Mapping[str, Any] | None = None,
    usage: bool = False,
    listener: Callable[[Any], None] | None = None,
) -> RouteResult | None:
    """Route ``request``; print the answer as it streams, or whole (``--json``; with
    ``structured``, the JSON answer once complete), plus ``shown`` in ``--json`` output.
    Returns the result once the answer is printed and flushed."""
    from ..errors import AllProvidersFailed, RoutingError
    from ..router import FailoverRouter

    answer = Answer()
    display = _display(verbose, None if json_out or structured else answer)
    if verbose:
        display.header(_config_line(cfg))
        if request.get("models"):
            pairs = ", ".join(f"{n}={m}" for n, m in request["models"].items())
            display.header(f"models for this call: {pairs}")
    changes = _Changes()
    store = open_store(location)
    try:
        router = FailoverRouter(
            cfg,
            store=store,
            listeners=[display, changes] if listener is None else [display, changes, listener],
            autoflush=False,
            on_warning=warn,
            background_probes=False,  # one request: the next process probes on request
        )
    except BaseException:
        close_store(store)
        raise
    display.start("asking…")
    try:
        if stream and not json_out and not structured:
            route_stream = router.stream(**request)
            chunks = aiter(route_stream)
            try:
                async for chunk in chunks:
                    display.stop()
                    answer.write(chunk)
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]
            answer.finish_line()
            if usage or verbose:
                note_dim(usage_text(route_stream.result))
            return route_stream.result
        try:
            if stream:
                result = await router.stream(**request).collect()
            else:
                result = await router.route(**request)
        except RoutingError as exc:
            if json_out:
                keys = _key_advice(cfg, exc) if isinstance(exc, AllProvidersFailed) else None
                print_json(_error_json(exc, changes, keys))
            raise
        display.stop()
        parsed, problem = _structured(result.text) if structured else (None, None)
        if json_out:
            out = changes.added_to(result.to_dict())
            out.update(shown or {})
            if structured:
                out["parsed"] = parsed
            print_json(out)
        elif structured and problem is None:
            _print_answer_json(answer, parsed)
        else:
            answer.write(result.text)
            answer.finish_line()
        if (usage or verbose) and not json_out:
            note_dim(usage_text(result))
        if problem is not None:
            from ..errors import FailoverError

            raise FailoverError(f"{result.provider} answered, but not with JSON ({problem})")
        return result
    finally:
        display.stop()
        await router.aclose()  # the one save of this invocation, also after Ctrl-C
        close_store(store)


def _structured(text: str) -> tuple[Any, str | None]:
    """(the JSON value of a --schema answer, None), or (None, why it is not JSON)."""
    from ..attach import parse_answer

    try:
        return parse_answer(text), None
    except ValueError as exc:
        return None, str(exc)


def _print_answer_json(answer: Answer, value: Any) -> None:
    """A --schema answer on stdout: indented (and coloured, unless NO_COLOR) on a terminal,
    one line otherwise (one JSON Lines record per answer)."""
    if answer.isatty and styled(sys.stdout):
        from .render import make_console
        from .render import print_json as print_styled_json

        print_styled_json(make_console(stderr=False), json_text(value))
        return
    answer.write(json_text(value, indent=2 if answer.isatty else None) + "\n")


def _display(verbose: bool, answer: Answer | None) -> Any:
    """The route listener: the trace and spinner on a terminal or with -v, else plain notes."""
    animate = animates(sys.stderr)
    if not (verbose or animate):
        return PlainNotes()  # without a trace or spinner, still say why nothing happens
    from .render import RouteDisplay

    return RouteDisplay(err_console(), verbose=verbose, animate=animate, answer=answer, scrub=scrub)


def _config_line(cfg: Config) -> str:
    """What -v says first: where the chain comes from and its name."""
    source = cfg.source or "the built-in chain (no configuration file found)"
    return f"{source}, chain '{cfg.chain}'"


class _Changes:
    """Collects a request's stream switches and parameter adjustments for ``--json``."""

    def __init__(self) -> None:
        self.switches: list[dict[str, Any]] = []
        self.adjustments: list[dict[str, Any]] = []

    def __call__(self, event: Any) -> None:
        from ..types import ParameterAdjusted, StreamSwitched

        if isinstance(event, StreamSwitched):
            self.switches.append(
                {"from": event.old, "to": event.new, "strategy": event.strategy,
                 "kept_chars": event.kept}
            )  # fmt: skip
        elif isinstance(event, ParameterAdjusted):
            self.adjustments.append(
                {"provider": event.provider, "parameter": event.parameter,
                 "action": event.action, "reason": event.reason}
            )  # fmt: skip

    def added_to(self, out: dict[str, Any]) -> dict[str, Any]:
        out.setdefault("switches", self.switches)
        out.setdefault("adjustments", self.adjustments)
        return out


def _error_json(
    exc: Exception, changes: _Changes | None = None, keys: tuple[str, str] | None = None
) -> dict[str, Any]:
    attempts = getattr(exc, "attempts", ())
    error: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": keys[0] if keys else str(exc),
        "exit_code": exit_code_of(exc),
    }
    if keys:
        error["hint"] = keys[1]
    out: dict[str, Any] = {"error": error, "attempts": [a.to_dict() for a in attempts]}
    return changes.added_to(out) if changes is not None else out


# --- providers without a usable key -------------------------------------------------------------

_KEY_REASONS = ("no_key", "bad_key")


def _key_problem(a: Attempt) -> bool:
    """Whether this attempt found the provider without a usable API key."""
    reason = getattr(a, "reason", None)
    if reason is not None:
        return reason in _KEY_REASONS
    # Only a key problem skips a provider with an error class (breaker skips have none).
    return a.outcome == "skipped" and a.error_class is not None


def _key_advice(cfg: Config, exc: RoutingError) -> tuple[str, str] | None:
    """(error, hint) when providers could not be used for want of an API key; None when
    keys were not the problem."""
    from ..config import key_env

    keyless = list(dict.fromkeys(a.provider for a in exc.attempts if _key_problem(a)))
    if not keyless:
        return None
    env_of = {p.name: key_env(p) for p in cfg.providers}
    variables = " or ".join(dict.fromkeys(v for n in keyless if (v := env_of.get(n))))
    everyone = {a.provider for a in exc.attempts} <= set(keyless)
    error = str(exc)
    if everyone:
        error = f"no provider can answer: none has an API key ({', '.join(keyless)})"
    if cfg.source is None:
        hint = (
            f"the built-in chain is in use (no configuration file found): set {variables}, "
            "or write your own chain with `failover config init`"
        )
    else:
        hint = (
            f"set {variables} (the variables {cfg.source} names; keys never live in the "
            "file); `failover config show` checks them, `failover config init` writes a "
            "starter chain"
        )
    return error, hint


def _explain_keys(cfg: Config, exc: RoutingError) -> None:
    """Say what is missing, instead of the generic failure, when keys were the problem."""
    advice = _key_advice(cfg, exc)
    if advice is None:
        return
    say("error", advice[0])
    say("hint", advice[1])
    raise SystemExit(EXIT_FAILED) from None
