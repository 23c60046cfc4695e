"""Cost arithmetic: list prices, the batch discount, and measured hardware cost per token.

Pure: plain numbers in, decimal dollars out. Money is `Decimal`, rounded once, at the
end, to a millionth of a dollar (half up), because per-request costs of small models are
fractions of a cent. A batch's savings are its real-time-equivalent cost minus its batch
cost after rounding, so the three columns of a report always add up.

Prices are per million tokens. A model is priced by its own `input_price` and
`output_price` in `[[models]]`, else by the `[pricing]` defaults; a model with either
price unknown has no cost (None), never a made-up zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from freight.config import Settings

MILLION = Decimal(1_000_000)
MICRO_USD = Decimal("0.000001")
SECONDS_PER_HOUR = Decimal(3600)


def usd(value: Decimal | float | int | str) -> Decimal:
    """`value` dollars rounded to the millionth, half up (floats through their repr)."""
    exact = value if isinstance(value, Decimal) else Decimal(str(value))
    return exact.quantize(MICRO_USD, rounding=ROUND_HALF_UP)


def format_usd(value: Decimal | None) -> str:
    """Dollars for people: to the millionth below $1 (small models cost fractions of a
    cent), to the cent above; `-` when unknown."""
    if value is None:
        return "-"
    return f"${value:,.6f}" if abs(value) < 1 else f"${value:,.2f}"


@dataclass(frozen=True)
class Prices:
    """Real-time list prices of one model, $ per million tokens."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal

    def exact_cost(self, num_input_tokens: int, num_output_tokens: int) -> Decimal:
        return (
            num_input_tokens * self.input_per_mtok + num_output_tokens * self.output_per_mtok
        ) / MILLION


@dataclass(frozen=True)
class Cost:
    """What some work costs at real-time prices and as batch work."""

    realtime: Decimal
    batch: Decimal

    @property
    def savings(self) -> Decimal:
        return self.realtime - self.batch

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.realtime + other.realtime, self.batch + other.batch)


ZERO_COST = Cost(usd(0), usd(0))


def cost(
    prices: Prices, num_input_tokens: int, num_output_tokens: int, batch_discount: Decimal
) -> Cost:
    """Real-time-equivalent and batch cost of the tokens, each rounded once from exact."""
    exact = prices.exact_cost(num_input_tokens, num_output_tokens)
    return Cost(realtime=usd(exact), batch=usd(exact * (1 - batch_discount)))


def hardware_cost(per_hour: Decimal, seconds: float) -> Decimal:
    """What `seconds` of the machine cost at `per_hour` dollars an hour."""
    return usd(per_hour * Decimal(str(seconds)) / SECONDS_PER_HOUR)


def per_million_tokens(per_hour: Decimal | None, seconds: float, num_tokens: int) -> Decimal | None:
    """Measured $ per million tokens: the machine's cost for `seconds` over the tokens.

    None when the hardware price is unknown or no token was delivered (no rate exists).
    """
    if per_hour is None or num_tokens <= 0:
        return None
    exact = per_hour * Decimal(str(seconds)) / SECONDS_PER_HOUR * MILLION / num_tokens
    return usd(exact)


def utilization(busy_seconds: float, up_seconds: float) -> float | None:
    """The fraction of the time the engine was up that it had work; None if never up."""
    if up_seconds <= 0:
        return None
    return min(1.0, max(0.0, busy_seconds / up_seconds))


def tokens_per_second(num_tokens: int, seconds: float) -> float | None:
    return num_tokens / seconds if seconds > 0 else None


class PriceBook:
    """Prices per model and the discount/hardware price, as configured."""

    def __init__(self, settings: Settings) -> None:
        pricing = settings.pricing
        self.batch_discount = Decimal(str(pricing.batch_discount))
        self.hardware_per_hour = (
            None if pricing.hardware_per_hour is None else Decimal(str(pricing.hardware_per_hour))
        )
        self._default = (pricing.input_price, pricing.output_price)
        self._models = {m.name: (m.input_price, m.output_price) for m in settings.models}

    def prices(self, model: str | None) -> Prices | None:
        """The model's list prices, or None if either is unknown."""
        own_input, own_output = self._models.get(model or "", (None, None))
        input_price = own_input if own_input is not None else self._default[0]
        output_price = own_output if own_output is not None else self._default[1]
        if input_price is None or output_price is None:
            return None
        return Prices(Decimal(str(input_price)), Decimal(str(output_price)))

    def cost(self, model: str | None, num_input_tokens: int, num_output_tokens: int) -> Cost | None:
        """Real-time-equivalent and batch cost of work on `model`; None if unpriced."""
        prices = self.prices(model)
        if prices is None:
            return None
        return cost(prices, num_input_tokens, num_output_tokens, self.batch_discount)
