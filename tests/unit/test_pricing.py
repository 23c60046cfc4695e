"""Cost arithmetic: list prices, batch discount, rounding, zero tokens, measured $/1M tokens."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from freight import config
from freight.config import ModelSettings, PricingSettings
from freight.errors import ConfigError
from freight.usage import pricing
from tests.conftest import make_settings

PRICES = pricing.Prices(Decimal("0.15"), Decimal("0.60"))


def test_batch_discount_halves_the_real_time_price() -> None:
    cost = pricing.cost(PRICES, 1_000_000, 1_000_000, Decimal("0.5"))
    assert cost.realtime == Decimal("0.750000")
    assert cost.batch == Decimal("0.375000")
    assert cost.savings == Decimal("0.375000")


@pytest.mark.parametrize(
    ("discount", "batch"),
    [("0", "0.750000"), ("0.25", "0.562500"), ("1", "0.000000"), ("0.333", "0.500250")],
)
def test_any_discount_between_zero_and_one(discount: str, batch: str) -> None:
    cost = pricing.cost(PRICES, 1_000_000, 1_000_000, Decimal(discount))
    assert cost.realtime == Decimal("0.750000")
    assert cost.batch == Decimal(batch)
    assert cost.realtime - cost.batch == cost.savings


def test_zero_tokens_cost_exactly_zero() -> None:
    cost = pricing.cost(PRICES, 0, 0, Decimal("0.5"))
    assert cost.realtime == cost.batch == cost.savings == Decimal(0)
    assert str(cost.realtime) == "0.000000"


def test_costs_round_half_up_to_the_millionth_of_a_dollar() -> None:
    # 1 input token at $0.15/1M = $0.00000015 -> 0.000000; 5 tokens = 0.00000075 -> 0.000001
    assert pricing.cost(PRICES, 1, 0, Decimal(0)).realtime == Decimal("0.000000")
    assert pricing.cost(PRICES, 5, 0, Decimal(0)).realtime == Decimal("0.000001")
    # 0.0000025 is a tie: half up gives 0.000003 (banker's rounding would give 0.000002)
    tie = pricing.Prices(Decimal("2.5"), Decimal(0))
    assert pricing.cost(tie, 1, 0, Decimal(0)).realtime == Decimal("0.000003")


def test_batch_cost_is_rounded_from_the_exact_price_not_from_the_rounded_one() -> None:
    # exact real time 0.0000015 -> 0.000002; half of exact is 0.00000075 -> 0.000001,
    # whereas half of the rounded 0.000002 would be 0.000001 too but for 3 tokens:
    prices = pricing.Prices(Decimal("0.5"), Decimal(0))
    cost = pricing.cost(prices, 3, 0, Decimal("0.5"))
    assert cost.realtime == Decimal("0.000002")  # 0.0000015
    assert cost.batch == Decimal("0.000001")  # 0.00000075
    assert cost.savings == Decimal("0.000001")


def test_savings_always_equal_real_time_minus_batch_after_rounding() -> None:
    for tokens in range(0, 2000, 37):
        cost = pricing.cost(PRICES, tokens, tokens * 3, Decimal("0.5"))
        assert cost.savings + cost.batch == cost.realtime


def test_costs_add_up() -> None:
    a = pricing.cost(PRICES, 1000, 100, Decimal("0.5"))
    b = pricing.cost(PRICES, 3000, 200, Decimal("0.5"))
    total = a + b
    assert total.realtime == a.realtime + b.realtime and total.batch == a.batch + b.batch


def test_measured_cost_per_million_tokens() -> None:
    # $3.60/h for 100 s = $0.10; 10,500 tokens -> $9.523810 per million
    assert pricing.per_million_tokens(Decimal("3.60"), 100, 10_500) == Decimal("9.523810")
    assert pricing.hardware_cost(Decimal("3.60"), 100) == Decimal("0.100000")


def test_measured_cost_is_unknown_without_tokens_or_hardware_price() -> None:
    assert pricing.per_million_tokens(Decimal("3.60"), 100, 0) is None
    assert pricing.per_million_tokens(None, 100, 1000) is None
    assert pricing.per_million_tokens(Decimal("3.60"), 0, 1000) == Decimal("0.000000")


def test_utilisation_and_throughput_edge_cases() -> None:
    assert pricing.utilization(30, 120) == 0.25
    assert pricing.utilization(0, 0) is None
    assert pricing.utilization(5, 4) == 1.0  # clock skew never reports over 100%
    assert pricing.tokens_per_second(100, 0) is None
    assert pricing.tokens_per_second(100, 4) == 25


def test_price_book_uses_model_prices_then_the_pricing_defaults(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        models=[
            ModelSettings(name="priced", engine="echo", input_price=1.0, output_price=2.0),
            ModelSettings(name="half", engine="echo", input_price=0.5),
        ],
        pricing=PricingSettings(input_price=0.1, output_price=0.2, batch_discount=0.4),
    )
    book = pricing.PriceBook(settings)
    assert book.prices("priced") == pricing.Prices(Decimal("1.0"), Decimal("2.0"))
    assert book.prices("half") == pricing.Prices(Decimal("0.5"), Decimal("0.2"))
    assert book.prices("smollm2-135m-instruct") == pricing.Prices(Decimal("0.1"), Decimal("0.2"))
    cost = book.cost("priced", 1_000_000, 0)
    assert cost is not None and cost.batch == Decimal("0.600000")


def test_unpriced_models_have_no_cost_rather_than_zero(tmp_path: Path) -> None:
    book = pricing.PriceBook(make_settings(tmp_path))
    assert book.prices("echo") is None
    assert book.cost("echo", 1000, 1000) is None
    assert book.hardware_per_hour is None
    assert book.batch_discount == Decimal("0.5")


def test_pricing_section_rejects_unknown_keys_and_bad_discounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "freight.toml"
    monkeypatch.setenv("FREIGHT_CONFIG", str(toml))
    toml.write_text("[pricing]\nbatch_discont = 0.5\n")
    with pytest.raises(ConfigError, match=r"pricing\.batch_discont"):
        config.load()
    toml.write_text("[pricing]\nbatch_discount = 1.5\n")
    with pytest.raises(ConfigError, match=r"pricing\.batch_discount"):
        config.load()
    toml.write_text(
        '[pricing]\nbatch_discount = 0.3\nhardware_per_hour = 2.5\n\n[[models]]\nname = "e"\n'
        'engine = "echo"\ninput_price = 0.2\noutput_price = 0.8\n'
    )
    settings = config.load()
    assert settings.pricing.batch_discount == 0.3 and settings.pricing.hardware_per_hour == 2.5
    assert pricing.PriceBook(settings).prices("e") == pricing.Prices(Decimal("0.2"), Decimal("0.8"))


def test_dollars_for_people_keep_fractions_of_a_cent() -> None:
    assert pricing.format_usd(Decimal("0.000298")) == "$0.000298"
    assert pricing.format_usd(Decimal("9.523810")) == "$9.52"
    assert pricing.format_usd(Decimal("1234.5")) == "$1,234.50"
    assert pricing.format_usd(None) == "-"
