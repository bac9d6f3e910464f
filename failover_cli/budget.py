"""Spend limits: whether one more request fits the budget. Pure: no I/O, no clock of its own.

Periods are the UTC day (``"2026-12-03"``) and the UTC month (``"2026-12"``) of a wall-clock
epoch time the caller passes in, so a limit holds across processes and restarts. Spend is
kept per provider and period (:attr:`failover_cli.state.ProviderState.spend`); the chain's
spend is the sum over its providers.

A request is judged by its worst case at a provider's prices: the input estimated from the
request's size (:data:`CHARS_PER_TOKEN` characters a token, rounded up, and
:data:`IMAGE_TOKENS` per image) priced as uncached input, plus ``max_tokens`` of output. It
fits when, for every limit that covers the provider (the chain's limits cover them all, a
provider's own limits only it), what was spent in the period, plus the worst cases of the
hops still in flight (:class:`Ledger` holds them), plus this one stays within the limit.
A free provider (both prices zero) always fits. A provider without a price
(``cost`` unset) cannot be proven to fit, so a limit that covers it skips it: give a local
model ``cost: {input_per_mtok: 0, output_per_mtok: 0}`` to keep it in a budgeted chain.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING, NamedTuple

from .records import frozen
from .types import CompletionRequest, Cost

if TYPE_CHECKING:
    from .config import BudgetConfig

CHARS_PER_TOKEN = 4  # characters of text per input token, as an estimate (rounded up)
IMAGE_TOKENS = 1_600  # input tokens allowed per image (a large image costs about this much)


class Limits(NamedTuple):
    """USD limits for one UTC day and one UTC month; None: no limit."""

    daily_usd: float | None = None
    monthly_usd: float | None = None


@frozen
class Budget:
    """The chain's limits and each provider's own (see ``budget:`` in the configuration)."""

    chain: Limits = field(default_factory=Limits)
    providers: Mapping[str, Limits] = field(default_factory=dict)

    @classmethod
    def of(cls, config: BudgetConfig) -> Budget:
        """The limits of a ``budget:`` configuration section."""
        return cls(
            Limits(config.daily_usd, config.monthly_usd),
            {n: Limits(lim.daily_usd, lim.monthly_usd) for n, lim in config.providers.items()},
        )

    def covers(self, name: str) -> bool:
        """Whether any limit applies to provider ``name``."""
        if self.chain.daily_usd is not None or self.chain.monthly_usd is not None:
            return True
        own = self.providers.get(name)
        return own is not None and (own.daily_usd is not None or own.monthly_usd is not None)


def periods(epoch: float) -> tuple[str, str]:
    """The UTC day and month of a wall-clock epoch time: ``("2026-12-03", "2026-12")``."""
    global _last_day
    start, keys = _last_day
    if start <= epoch < start + 86_400:
        return keys
    t = time.gmtime(epoch)
    keys = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", f"{t.tm_year:04d}-{t.tm_mon:02d}"
    _last_day = (math.floor(epoch) - (t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec), keys)
    return keys


_last_day: tuple[float, tuple[str, str]] = (math.inf, ("", ""))  # the day asked for last


def input_tokens(chars: int, images: int = 0) -> int:
    """Input tokens estimated from the characters of text and the number of images."""
    return -(-max(chars, 0) // CHARS_PER_TOKEN) + max(images, 0) * IMAGE_TOKENS


def request_input_tokens(request: CompletionRequest) -> int:
    """The input tokens ``request`` is estimated to cost: its text (messages, system,
    prompt, a partial answer to continue), its tool definitions and schema, its images."""
    chars = request.text_chars()
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + _json_chars(tool.parameters)
    if request.response_format is not None and request.response_format.schema is not None:
        chars += _json_chars(request.response_format.schema)
    images = sum(len(m.images) for m in request.messages) if request.has_images else 0
    return input_tokens(chars, images)


def _json_chars(value: object) -> int:
    try:
        return len(json.dumps(value, separators=(",", ":"), default=str))
    except (TypeError, ValueError, RecursionError):
        return 0


def worst_case_usd(cost: Cost | None, input_tokens: int, output_tokens: int) -> float | None:
    """The most a request can cost at these prices (input uncached); None without a price."""
    if cost is None:
        return None
    return (
        max(input_tokens, 0) * cost.input_per_mtok + max(output_tokens, 0) * cost.output_per_mtok
    ) / 1_000_000


def usd(amount: float) -> str:
    """A dollar amount for a message: cents from a dollar up, else two significant digits
    (``$0.50``, ``$0.014``, ``$0.00031``)."""
    if amount == 0 or abs(amount) >= 1 or not math.isfinite(amount):
        return f"${amount:,.2f}"
    decimals = max(2, 1 - math.floor(math.log10(abs(amount))))
    whole, _, cents = f"{amount:.{decimals}f}".partition(".")
    return f"${whole}.{cents[:2]}{cents[2:].rstrip('0')}"


class Spend:
    """What was spent, by provider and period (``{provider: {period: USD}}``): the stored
    spend plus this process's own, added as answers come in."""

    __slots__ = ("by_provider",)

    def __init__(self, by_provider: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self.by_provider: dict[str, dict[str, float]] = {
            n: dict(p) for n, p in (by_provider or {}).items()
        }

    def provider(self, name: str, period: str) -> float:
        return self.by_provider.get(name, {}).get(period, 0.0)

    def chain(self, period: str, names: Iterable[str] | None = None) -> float:
        """The sum over providers (``names`` only, if given) in ``period``."""
        keys = self.by_provider if names is None else names
        return sum(self.provider(n, period) for n in keys)

    def add(self, name: str, epoch: float, amount: float) -> dict[str, float]:
        """Record ``amount`` USD spent through ``name`` at ``epoch``; return the increment by
        period (what to add to the store). A non-finite or negative amount records nothing."""
        if not (math.isfinite(amount) and amount > 0):
            return {}
        day, month = periods(epoch)
        mine = self.by_provider.setdefault(name, {})
        for key in (day, month):
            mine[key] = mine.get(key, 0.0) + amount
        for key in [k for k in mine if k not in (day, month)]:
            del mine[key]  # an earlier period: over
        return {day: amount, month: amount}


def verdict(
    budget: Budget,
    spend: Spend,
    name: str,
    cost: Cost | None,
    estimate_usd: float | None,
    epoch: float,
    held: float = 0.0,
    held_here: float = 0.0,
) -> str | None:
    """None if a request whose worst case at ``name`` is ``estimate_usd`` fits the budget
    at ``epoch``, besides the worst cases of requests in flight (``held`` in all,
    ``held_here`` at ``name``); else why not, naming the limit and the spend (``"daily
    budget $5.00: $4.98 spent, this request up to $0.03"``)."""
    if not budget.covers(name):
        return None
    if cost is None or estimate_usd is None:
        return "no price configured, and a budget is set (give it a cost)"
    if cost.input_per_mtok == 0 and cost.output_per_mtok == 0:
        return None  # free: always fits
    if not math.isfinite(estimate_usd) or estimate_usd < 0:
        return "its price is not a finite number"
    day, month = periods(epoch)
    chain, own = budget.chain, budget.providers.get(name)
    limits = [(chain.daily_usd, day, "daily", ""), (chain.monthly_usd, month, "monthly", "")]
    if own is not None:
        limits += [(own.daily_usd, day, "daily", name), (own.monthly_usd, month, "monthly", name)]
    for limit, period, span, who in limits:
        if limit is None:
            continue
        spent = spend.provider(who, period) if who else spend.chain(period)
        busy = held_here if who else held
        if not spent + busy + estimate_usd <= limit:  # NaN never fits
            whose = f"{who}'s " if who else ""
            flight = f", {usd(busy)} in flight" if busy > 0 else ""
            return (
                f"{whose}{span} budget {usd(limit)}: {usd(spent)} spent{flight}, "
                f"this request up to {usd(estimate_usd)}"
            )
    return None


class Ledger:
    """A chain's budget and its spend as one router sees it: the store's spend at the last
    sync plus this router's charges not yet written there. Pure: the router reads and writes
    the store (see :meth:`take_unsaved` and :meth:`adopt`)."""

    def __init__(self, budget: Budget, prices: Mapping[str, Cost | None]) -> None:
        self.budget = budget
        self.prices = dict(prices)
        self.spend = Spend()
        self.unsaved: dict[str, dict[str, float]] = {}  # {provider: {period: USD}} to write
        self.warned = False  # the store could not be synced (said once)
        # Hops in flight in this process: (holder, provider) -> (worst case USD, held until).
        self._held: dict[tuple[object, str], tuple[float, float]] = {}

    def check(self, name: str, input_tokens: int, max_tokens: int, epoch: float) -> str | None:
        """None if the request's worst case at ``name`` fits; else why not (see
        :func:`verdict`). Hops in flight are not counted (see :meth:`admit`)."""
        cost = self.prices.get(name)
        estimate = worst_case_usd(cost, input_tokens, max_tokens)
        return verdict(self.budget, self.spend, name, cost, estimate, epoch)

    def admit(
        self,
        holder: object,
        name: str,
        input_tokens: int,
        max_tokens: int,
        epoch: float,
        *,
        now: float,
        until: float,
    ) -> str | None:
        """Like :meth:`check`, with the worst cases of the other hops in flight counted as
        spent; if it fits, this hop's worst case is held for ``holder`` until
        :meth:`release` (or, should a release be missed, until the monotonic time
        ``until``). A hop of the same holder on the same provider (a retry) replaces it."""
        self._held.pop((holder, name), None)
        held = held_here = 0.0
        if self._held:
            for key, (amount, expiry) in list(self._held.items()):
                if expiry <= now:
                    del self._held[key]
                    continue
                held += amount
                if key[1] == name:
                    held_here += amount
        cost = self.prices.get(name)
        estimate = worst_case_usd(cost, input_tokens, max_tokens)
        why = verdict(self.budget, self.spend, name, cost, estimate, epoch, held, held_here)
        if why is None and estimate and math.isfinite(estimate):
            self._held[(holder, name)] = (estimate, until)
        return why

    def release(self, holder: object, name: str | None = None) -> None:
        """Drop what ``holder`` holds (at ``name`` only, if given)."""
        if not self._held:
            return
        if name is not None:
            self._held.pop((holder, name), None)
            return
        for key in [k for k in self._held if k[0] is holder]:
            del self._held[key]

    @property
    def in_flight(self) -> float:
        """USD held for hops in flight."""
        return sum(amount for amount, _ in self._held.values())

    def charge(self, name: str, amount: float | None, epoch: float) -> None:
        """Record ``amount`` USD spent through ``name`` (nothing for None or non-finite)."""
        if amount is None:
            return
        for period, v in self.spend.add(name, epoch, amount).items():
            mine = self.unsaved.setdefault(name, {})
            mine[period] = mine.get(period, 0.0) + v

    def take_unsaved(self) -> dict[str, dict[str, float]]:
        """The charges to write to the store now (given back with :meth:`restore` if the
        write fails)."""
        out, self.unsaved = self.unsaved, {}
        return out

    def restore(self, unsaved: Mapping[str, Mapping[str, float]]) -> None:
        for name, by_period in unsaved.items():
            mine = self.unsaved.setdefault(name, {})
            for period, v in by_period.items():
                mine[period] = mine.get(period, 0.0) + v

    def adopt(self, stored: Mapping[str, Mapping[str, float]]) -> None:
        """Take the store's spend (every process's) as the spend so far, plus the charges
        not written yet."""
        spend = Spend(stored)
        for name, by_period in self.unsaved.items():
            mine = spend.by_provider.setdefault(name, {})
            for period, v in by_period.items():
                mine[period] = mine.get(period, 0.0) + v
        self.spend = spend
