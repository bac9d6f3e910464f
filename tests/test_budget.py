"""The pure budget policy: UTC periods from an injected epoch, request estimates, verdicts
naming the limit and the spend, free and unpriced providers, NaN-safe arithmetic, and the
state merge that keeps spend across processes."""

from __future__ import annotations

import calendar
import math
import time

import pytest

from failover_cli.budget import (
    IMAGE_TOKENS,
    Budget,
    Ledger,
    Limits,
    Spend,
    input_tokens,
    periods,
    request_input_tokens,
    usd,
    verdict,
    worst_case_usd,
)
from failover_cli.chat import ImagePart, Message, TextPart, Tool
from failover_cli.config import parse_config
from failover_cli.state import (
    ChainState,
    ProviderDelta,
    ProviderState,
    StateDelta,
    merge,
    merge_spend,
)
from failover_cli.types import CompletionRequest, Cost

MIDNIGHT = calendar.timegm((2026, 12, 31, 0, 0, 0))  # UTC, the last day of a year
PAID = Cost(input_per_mtok=3.0, output_per_mtok=15.0)
FREE = Cost()


# --- periods ------------------------------------------------------------------------------------


def test_periods_are_the_utc_day_and_month_of_the_epoch() -> None:
    assert periods(MIDNIGHT) == ("2026-12-31", "2026-12")
    assert periods(MIDNIGHT - 0.001) == ("2026-12-30", "2026-12")
    assert periods(MIDNIGHT + 86_400) == ("2027-01-01", "2027-01")  # day, month and year roll


def test_spend_rolls_over_at_utc_midnight() -> None:
    spend = Spend()
    spend.add("gpt", MIDNIGHT - 1, 2.0)
    assert spend.provider("gpt", "2026-12-30") == 2.0
    spend.add("gpt", MIDNIGHT + 1, 0.5)
    assert spend.provider("gpt", "2026-12-31") == 0.5  # a new day starts at zero
    assert spend.provider("gpt", "2026-12") == 2.5  # the month keeps adding up
    assert "2026-12-30" not in spend.by_provider["gpt"]  # yesterday is over
    spend.add("gpt", MIDNIGHT + 86_400, 1.0)
    assert spend.by_provider["gpt"] == {"2027-01-01": 1.0, "2027-01": 1.0}


def test_a_day_over_its_limit_fits_again_the_next_utc_day() -> None:
    budget = Budget(Limits(daily_usd=1.0, monthly_usd=100.0))
    spend = Spend()
    spend.add("gpt", MIDNIGHT - 10, 1.0)
    assert verdict(budget, spend, "gpt", PAID, 0.01, MIDNIGHT - 5) is not None
    assert verdict(budget, spend, "gpt", PAID, 0.01, MIDNIGHT + 5) is None


# --- estimates ----------------------------------------------------------------------------------


def test_input_tokens_round_characters_up_and_allow_a_fixed_amount_per_image() -> None:
    assert input_tokens(0) == 0
    assert input_tokens(1) == 1
    assert input_tokens(8) == 2
    assert input_tokens(9) == 3
    assert input_tokens(4, images=2) == 1 + 2 * IMAGE_TOKENS
    assert input_tokens(-5, images=-1) == 0  # nonsense counts nothing


def test_request_estimate_counts_text_tools_schema_and_images() -> None:
    plain = CompletionRequest(prompt="x" * 400, system="y" * 40)
    assert request_input_tokens(plain) == 110
    image = ImagePart(data="AAAA", media_type="image/png")
    with_image = CompletionRequest(
        messages=(Message("user", (TextPart("z" * 40), image)),), max_tokens=10
    )
    assert request_input_tokens(with_image) == 10 + IMAGE_TOKENS
    tool = Tool("get_weather", "Weather in a city", {"type": "object"})
    with_tool = CompletionRequest(prompt="x" * 400, tools=(tool,))
    assert request_input_tokens(with_tool) > request_input_tokens(CompletionRequest("x" * 400))


def test_worst_case_prices_input_uncached_plus_all_of_max_tokens() -> None:
    cached = Cost(input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3)
    assert worst_case_usd(cached, 1_000_000, 0) == pytest.approx(3.0)
    assert worst_case_usd(PAID, 1000, 1000) == pytest.approx(0.018)
    assert worst_case_usd(None, 1000, 1000) is None
    assert worst_case_usd(FREE, 10**9, 10**9) == 0.0


# --- verdicts -----------------------------------------------------------------------------------


def test_a_request_over_the_daily_limit_names_the_limit_and_the_spend() -> None:
    budget = Budget(Limits(daily_usd=5.0))
    spend = Spend({"claude": {"2026-12-31": 4.98}})
    why = verdict(budget, spend, "gpt", PAID, 0.03, MIDNIGHT + 60)
    assert why == "daily budget $5.00: $4.98 spent, this request up to $0.03"
    assert verdict(budget, spend, "gpt", PAID, 0.02, MIDNIGHT + 60) is None  # exactly fits


def test_monthly_and_per_provider_limits_each_decide() -> None:
    budget = Budget(Limits(daily_usd=10.0, monthly_usd=20.6), {"gpt": Limits(daily_usd=1.0)})
    spend = Spend({"gpt": {"2026-12-31": 0.99, "2026-12": 0.99}, "claude": {"2026-12": 19.5}})
    # The chain's month: 19.5 + 0.99 spent, so 0.6 does not fit anywhere.
    why = verdict(budget, spend, "claude", PAID, 0.6, MIDNIGHT)
    assert why is not None and why.startswith("monthly budget $20.60: $20.49 spent")
    # gpt's own day is nearly spent, whatever the chain has left.
    why = verdict(budget, spend, "gpt", PAID, 0.02, MIDNIGHT)
    assert why == "gpt's daily budget $1.00: $0.99 spent, this request up to $0.02"
    assert verdict(budget, spend, "claude", PAID, 0.001, MIDNIGHT) is None


def test_free_providers_always_fit_and_unpriced_ones_cannot_be_proven_to() -> None:
    budget = Budget(Limits(daily_usd=1.0))
    over = Spend({"gpt": {"2026-12-31": 50.0}})
    assert verdict(budget, over, "llama", FREE, 0.0, MIDNIGHT) is None
    why = verdict(budget, over, "local", None, None, MIDNIGHT)
    assert why is not None and "no price configured" in why
    # A limit that does not cover the provider leaves even an unpriced one alone.
    only_gpt = Budget(providers={"gpt": Limits(daily_usd=1.0)})
    assert verdict(only_gpt, over, "local", None, None, MIDNIGHT) is None
    assert not Budget().covers("gpt") and not only_gpt.covers("local")
    assert only_gpt.covers("gpt") and budget.covers("local")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_a_non_finite_or_negative_estimate_never_fits(bad: float) -> None:
    budget = Budget(Limits(daily_usd=100.0))
    why = verdict(budget, Spend(), "gpt", PAID, bad, MIDNIGHT)
    assert why is not None and "finite" in why


def test_a_nan_price_charges_nothing_and_is_refused() -> None:
    ledger = Ledger(Budget(Limits(daily_usd=1.0)), {"gpt": Cost(math.nan, 1.0)})
    ledger.charge("gpt", math.nan, MIDNIGHT)
    ledger.charge("gpt", math.inf, MIDNIGHT)
    ledger.charge("gpt", -3.0, MIDNIGHT)
    assert ledger.spend.by_provider == {} and ledger.unsaved == {}
    assert ledger.check("gpt", 10, 10, MIDNIGHT) is not None


def test_ledger_adopts_the_stores_spend_plus_what_it_has_not_written() -> None:
    ledger = Ledger(Budget(Limits(daily_usd=1.0)), {"gpt": PAID})
    ledger.charge("gpt", 0.25, MIDNIGHT)
    unsaved = ledger.take_unsaved()
    assert unsaved == {"gpt": {"2026-12-31": 0.25, "2026-12": 0.25}}
    ledger.restore(unsaved)  # the write failed: kept for the next one
    ledger.adopt({"claude": {"2026-12-31": 0.5}})  # what other processes spent
    assert ledger.spend.chain("2026-12-31") == 0.75
    # 0.75 spent; a worst case of 1000 in + 20000 out tokens at PAID is $0.303: over $1.
    assert ledger.check("gpt", 1000, 20_000, MIDNIGHT) is not None
    assert ledger.check("gpt", 1000, 1000, MIDNIGHT) is None


def test_money_is_shown_in_cents_or_two_significant_digits() -> None:
    assert usd(5) == "$5.00"
    assert usd(4.984) == "$4.98"
    assert usd(1234.5) == "$1,234.50"
    assert usd(0.00031) == "$0.00031"
    assert usd(0.014) == "$0.014"
    assert usd(0.5) == "$0.50"
    assert usd(0.001) == "$0.001"
    assert usd(0.996) == "$1.00"
    assert usd(0) == "$0.00"


def test_budget_is_built_from_the_configuration_section() -> None:
    cfg = parse_config(
        "providers: [{name: a, kind: openai, model: m}]\n"
        "budget: {daily_usd: 1.5, providers: {a: {monthly_usd: 3}}}\n"
    )
    budget = Budget.of(cfg.budget)
    assert budget.chain == Limits(1.5, None)
    assert budget.providers == {"a": Limits(None, 3.0)}


# --- the stored spend ---------------------------------------------------------------------------


def test_merged_spend_adds_up_and_keeps_only_the_latest_periods() -> None:
    old = {"2026-11-30": 1.0, "2026-11": 9.0}
    assert merge_spend(old, {"2026-11-30": 0.5, "2026-11": 0.5}) == {
        "2026-11-30": 1.5,
        "2026-11": 9.5,
    }
    rolled = merge_spend(old, {"2026-12-01": 0.25, "2026-12": 0.25})
    assert rolled == {"2026-12-01": 0.25, "2026-11-30": 1.0, "2026-12": 0.25, "2026-11": 9.0}
    later = merge_spend(rolled, {"2026-12-02": 1.0, "2026-12-03": 1.0, "2027-01": 1.0})
    assert set(later) == {"2026-12-03", "2026-12-02", "2026-12-01", "2027-01", "2026-12"}


def test_a_host_whose_clock_runs_ahead_does_not_erase_todays_spend() -> None:
    today = {"2026-12-03": 5.0, "2026-12": 5.0}
    ahead = merge_spend(today, {"2026-12-04": 0.1, "2026-12": 0.1})  # one host a day ahead
    assert ahead["2026-12-03"] == 5.0  # the others still see today's spend against the limit


def test_spend_round_trips_and_malformed_spend_is_refused() -> None:
    state = ProviderState(spend={"2026-12-31": 0.5, "2026-12": 2.0})
    assert ProviderState.from_dict(state.to_dict()) == state
    assert "spend" not in ProviderState().to_dict()  # files without spend are unchanged
    for bad in (
        {"yesterday": 1.0},
        {"2026-12": -1.0},
        {"2026-12": "1"},
        {"2026-12": True},
        [1, 2],
        {f"2026-12-{i:02d}": 1.0 for i in range(1, 31)}
        | {f"2025-{i:02d}": 1 for i in range(1, 13)}
        | {f"2024-{i:02d}": 1 for i in range(1, 13)}
        | {f"2023-{i:02d}": 1 for i in range(1, 13)},
    ):
        with pytest.raises(ValueError):
            ProviderState.from_dict({"spend": bad})
    delta = ProviderDelta(spend={"2026-12": 1.0})
    assert ProviderDelta.from_dict(delta.to_dict()) == delta
    assert not delta.is_empty()


def test_non_finite_spend_in_a_delta_is_dropped_by_the_merge() -> None:
    delta = StateDelta({"p": ProviderDelta(spend={"2026-12": math.nan, "2026-12-31": 1.0})})
    merged = merge(ChainState(), delta)
    assert merged.providers["p"].spend == {"2026-12-31": 1.0}
    assert math.isfinite(sum(merged.providers["p"].spend.values()))


def test_huge_stored_amounts_never_add_up_to_infinity() -> None:
    state = ProviderState.from_dict({"spend": {"2026-12": 1e308}})
    merged = merge(
        ChainState({"p": state}), StateDelta({"p": ProviderDelta(spend={"2026-12": 1e308})})
    )
    assert math.isfinite(merged.providers["p"].spend["2026-12"])
    ledger = Ledger(Budget(Limits(monthly_usd=1e9)), {"p": PAID})
    ledger.adopt({"p": merged.providers["p"].spend})
    assert ledger.check("p", 1, 1, MIDNIGHT) is not None  # over, not NaN


def test_periods_agree_with_the_calendar_around_every_midnight_of_a_year() -> None:
    start = calendar.timegm((2027, 1, 1, 0, 0, 0))
    for day in range(366):
        for offset in (-0.5, 0.0, 0.5, 43_200.0):
            epoch = start + day * 86_400 + offset
            t = time.gmtime(epoch)
            assert periods(epoch) == (
                f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}",
                f"{t.tm_year:04d}-{t.tm_mon:02d}",
            )
