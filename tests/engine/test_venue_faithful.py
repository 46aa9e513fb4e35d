"""Where the paper venue overstated what a broker's paper account would have traded
(session 18, helper-87). Each test failed before its fix."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.processor import Context, process
from engine.snapshot import canonical_state, merge_slices, take_slice
from engine.state import EngineState
from engine.venue.paper import PaperVenue
from schemas.events import MarketTrade, RiskLimits, Side, TimeInForce
from tests.engine.pure import INSTRUMENT, Recording, decision, types

D = Decimal


class _Recording(Recording):
    """A recording harness that can also start from a snapshot slice of what it did."""

    def from_slice(self) -> EngineState:
        """The state a worker started from a snapshot slice of everything gets."""
        sl = take_slice(self.fold(), 0, {})
        rebuilt = EngineState()
        for ev in self.fed:
            if ev.event_type in ("MarketTrade", "QuoteUpdated"):
                rebuilt.apply(ev)
        for ev in self.outs:
            if ev.topic not in ("risk.decisions", "orders.lifecycle"):
                rebuilt.apply(ev)
        merge_slices(rebuilt, [sl])
        return rebuilt


def _limits() -> RiskLimits:
    return RiskLimits(max_position=D("1000"), max_order_notional=D("1e8"), max_open_orders=100)


def decision_reasons(out: list[Any]) -> tuple[str, ...]:
    return tuple(decision(out).reason_codes)


def _filled(out: list[Any]) -> Decimal:
    return sum((e.payload.quantity for e in out if e.event_type == "Fill"), D(0))


@settings(max_examples=60, deadline=None)
@given(
    displayed=st.integers(min_value=1, max_value=10),
    orders=st.lists(
        st.tuples(
            st.sampled_from([Side.BUY, Side.SELL]),
            st.integers(min_value=1, max_value=8),
            st.sampled_from(["market", "limit", "ioc", "fok"]),
        ),
        min_size=1,
        max_size=6,
    ),
    requote=st.integers(min_value=0, max_value=6),
)
def test_an_accounts_own_orders_take_the_displayed_size_once(
    displayed: int, orders: list[tuple[Side, int, str]], requote: int
) -> None:
    """An account's successive marketable orders against one book take together at most
    its displayed size on each side; a newer quote shows its size afresh. Before, each
    order took the whole displayed size: two market buys of 5 against 5 shown filled 10.
    A fold of the log and a slice of it give the live state."""
    h = _Recording(_limits(), cash=D("1e7"))
    h.admin_deposit("BTC", D("100"))
    h.quote(D("100"), D("101"), qty=D(displayed))
    taken = {Side.BUY: D(0), Side.SELL: D(0)}
    for i, (side, qty, kind) in enumerate(orders):
        if i == requote:
            h.quote(D("100"), D("101"), qty=D(displayed))
            taken = {Side.BUY: D(0), Side.SELL: D(0)}
        touch = D("101") if side is Side.BUY else D("100")
        if kind == "market":
            out = h.order(side, D(qty))
        else:
            tif = {"limit": TimeInForce.GTC, "ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}
            out = h.order(side, D(qty), touch, tif=tif[kind])
        filled = _filled(out)
        if "SELF_CROSS" in decision_reasons(out):
            # A limit crossing the account's own resting order on the other side (a GTC
            # remainder at the touch): refused, SELF_TRADE, and nothing taken.
            assert kind != "market" and filled == 0
            continue
        left = D(displayed) - taken[side]
        assert filled == (min(D(qty), left) if kind != "fok" else (D(qty) if qty <= left else 0))
        taken[side] += filled
    assert canonical_state(h.fold()) == canonical_state(h.state)
    assert canonical_state(h.from_slice()) == canonical_state(h.state)


def test_two_market_orders_do_not_fill_more_than_was_shown() -> None:
    h = _Recording(_limits(), cash=D("1e7"))
    h.quote(D("100"), D("101"), qty=D("5"))
    first, second = h.order(Side.BUY, D("5")), h.order(Side.BUY, D("5"))
    assert _filled(first) == 5 and _filled(second) == 0
    assert types(second)[-1] == "OrderExpired"
    assert h.state.account("A1").positions[INSTRUMENT] == 5
    h.quote(D("100"), D("101"), qty=D("5"))  # a newer book shows its size again
    assert _filled(h.order(Side.BUY, D("3"))) == 3


def test_a_triggered_stop_fills_up_to_each_prints_size() -> None:
    """A print through the stop fills the child up to the print's size; the rest stays
    triggered and fills at the next prints, whatever their price (a stop is a market order
    once triggered), each up to its size. The take-profit is canceled at the trigger
    (OCO). Before, the stop sold all 5 at the one print of 1 that triggered it."""
    h = _Recording(_limits(), cash=D("1e6"))
    h.quote(D("99"), D("100"), qty=D("10"))
    h.order(Side.BUY, D("5"), D("100"), stop_loss=D("90"), take_profit=D("120"))
    h.tick(1)
    out = h.trade(D("89"), D("1"))
    assert [(e.payload.quantity, e.payload.price) for e in out if e.event_type == "Fill"] == [
        (D("1"), D("89"))
    ]
    assert [e.payload.reason for e in out if e.event_type == "OrderCanceled"] == ["OCO"]
    assert h.state.account("A1").positions[INSTRUMENT] == 4
    h.tick(1)
    out = h.trade(D("91"), D("3"))  # above the stop: the triggered remainder fills anyway
    assert _filled(out) == 3 and h.state.account("A1").positions[INSTRUMENT] == 1
    h.tick(1)
    out = h.trade(D("88"), D("5"))
    assert _filled(out) == 1 and h.state.account("A1").positions[INSTRUMENT] == 0
    assert not h.state.account("A1").open_orders  # the stop done, nothing else working
    assert canonical_state(h.fold()) == canonical_state(h.state)
    assert canonical_state(h.from_slice()) == canonical_state(h.state)


def test_a_high_at_a_print_raises_the_peak_with_nothing_resting() -> None:
    """The drawdown peak is raised when a print moves the mark of an asset the account
    holds, whether or not the account has anything resting or sends an intent, and the
    raise is in the log (a fold keeps it). Before, it was raised only at decisions and at
    prints reaching resting orders: BTC bought at 30,000 rising to 40,000 and falling back
    to 29,000 was measured from the peak before the rise (2% down, not 18%), and the next
    buy passed the brake."""
    h = _Recording(
        RiskLimits(max_position=D("10"), max_order_notional=D("1e7"), price_collar_pct=D("0.5")),
        cash=D("100000"),
    )
    h.quote(D("29990"), D("30000"), qty=D("10"))
    h.order(Side.BUY, D("2"))  # the decision's peak: ~100,000; nothing rests
    acc = h.state.account("A1")
    decided = acc.peak_nav
    h.tick(1)
    out = h.trade(D("40000"), D("0.1"))  # the account at 40,000: ~120,000
    assert acc.peak_nav > decided * D("1.15")
    assert [e.payload.peak_nav for e in out if e.event_type == "PeakEquityRaised"] == [acc.peak_nav]
    assert canonical_state(h.fold()) == canonical_state(h.state)
    h.tick(1)
    h.trade(D("29000"), D("0.1"))  # ~98,000: 18% down from the high
    h.quote(D("28990"), D("29000"), qty=D("10"))
    out = h.order(Side.BUY, D("0.1"))
    assert "DRAWDOWN_BRAKE" in decision_reasons(out)
    assert canonical_state(h.fold()) == canonical_state(h.state)
    assert canonical_state(h.from_slice()) == canonical_state(h.state)


def test_a_print_values_only_the_accounts_holding_its_assets() -> None:
    """The accounts a print values are found by asset (`EngineState.holding`): an account
    holding only its valuation currency is never valued at a print, one holding either
    asset of the printed pair is."""
    h = _Recording(_limits(), cash=D("1e6"), accounts=("A1", "A2", "A3"))
    h.admin_deposit("ETH", D("1"), account="A3")
    h.quote(D("29990"), D("30000"), qty=D("10"))
    h.order(Side.BUY, D("1"), account="A1")
    assert h.state.holding("BTC") == {"A1"} and h.state.holding("USDC") == set()
    assert h.state.holding("ETH") == {"A3"}
    h.order(Side.SELL, D("1"), D("29990"), account="A1")  # sold: no longer a holder
    assert h.state.holding("BTC") == set()


_VALUED_PRICES = {
    "BTC/USDC": (D("90"), D("100"), D("110")),
    "ETH/USDT": (D("9"), D("10"), D("11")),
    "USDT/USDC": (D("0.99"), D("1"), D("1.01")),
}


@settings(max_examples=200, deadline=None)
@example(  # the USDT mark raised by a quote (no print), then ETH/USDT prints its price again
    steps=[("trade", "ETH/USDT", 1, "A1")] * 2
    + [("quote", "USDT/USDC", 2, "A1"), ("trade", "ETH/USDT", 1, "A1")]
)
@example(  # a deposit between two prints at one price
    steps=[("trade", "BTC/USDC", 1, "A1")] * 2
    + [("deposit", "BTC/USDC", 1, "A1"), ("trade", "BTC/USDC", 1, "A1")]
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["trade", "trade", "trade", "quote", "buy", "sell", "deposit"]),
            st.sampled_from(sorted(_VALUED_PRICES)),
            st.integers(min_value=1, max_value=2),
            st.sampled_from(["A1", "A2", "A3"]),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_a_print_skips_only_the_valuations_that_cannot_find_a_high(
    steps: list[tuple[str, str, int, str]],
) -> None:
    """`raise_peaks` skips an account whose balances, withdrawals and every reference
    price its last valuation read are unchanged (`EngineState.valued`): the same stream
    through a state valuing every holder at every print gives the same outputs, event
    for event, and the same state. Prices repeat (as on a tape); quotes move marks
    between prints; ETH is valued through ETH/USDT x USDT/USDC, so a USDT/USDC print or
    quote moves the mark of ETH holders a print on ETH/USDT then values."""
    h = _Recording(
        RiskLimits(max_position=D("1000"), max_order_notional=D("1e8"), price_collar_pct=D("0.5")),
        cash=D("10000"),
        accounts=("A1", "A2", "A3"),
    )
    h.admin_deposit("BTC", D("3"), account="A1")
    h.admin_deposit("ETH", D("20"), account="A2")
    h.admin_deposit("USDT", D("500"), account="A3")
    h.admin_deposit("ETH", D("5"), account="A3")
    for instrument, prices in sorted(_VALUED_PRICES.items()):
        h.quote(prices[1] * D("0.999"), prices[1] * D("1.001"), instrument=instrument)
    for kind, instrument, i, account in steps:
        price = _VALUED_PRICES[instrument][i]
        if kind == "trade":
            h.n += 1
            h.feed(
                MarketTrade(
                    venue="v",
                    instrument=instrument,
                    trade_id=f"t{h.n}",
                    price=price,
                    quantity=D("1"),
                    aggressor_side=Side.BUY,
                    exchange_ts=h.now,
                ),
                "md",
            )
        elif kind == "quote":
            h.quote(price * D("0.999"), price * D("1.001"), instrument=instrument)
        elif kind == "deposit":
            h.admin_deposit(instrument.split("/")[0], D("1"), account=account)
        else:
            side = Side.BUY if kind == "buy" else Side.SELL
            h.order(side, D("1"), account=account, instrument=instrument)
    PaperVenue.skip_unchanged = False
    try:
        every = EngineState()
        ctx = Context(event_time_is_arrival=True)
        outs: list[Any] = []
        for ev in h.fed:
            outs.extend(process(every, ev, ctx))
    finally:
        PaperVenue.skip_unchanged = True
    assert [(e.topic, e.event_id, e.event_type, e.payload) for e in outs] == [
        (e.topic, e.event_id, e.event_type, e.payload) for e in h.outs
    ]
    assert canonical_state(every) == canonical_state(h.state)


def test_an_intent_stamped_earlier_does_not_show_a_newer_quotes_size_afresh() -> None:
    """Intents of one account need not arrive in event-time order (two strategies, two
    clocks): one stamped before a newer quote meets the older book (event time). Before,
    its fill replaced what the account had taken of the newer quote (`taken` kept one
    quote per side), so the next order found the newer quote's size whole again: market
    buys of 5, 5 and 5 against 5 shown (and 5 on the older quote) filled 15, not 10."""
    from datetime import timedelta

    from engine import auth
    from schemas import new_event
    from schemas.events import OrderIntent, OrderType

    h = _Recording(_limits(), cash=D("1e7"))
    h.quote(D("100"), D("101"), qty=D("5"))
    older = h.now
    h.tick(1)
    h.quote(D("100"), D("101"), qty=D("5"))

    def buy(n: int, at: Any) -> list[Any]:
        intent = OrderIntent(
            producer_id="p1", strategy_id="s", account="A1", client_order_id=f"late{n}",
            instrument=INSTRUMENT, side=Side.BUY, order_type=OrderType.MARKET,
            quantity=D("5"), time_in_force=TimeInForce.GTC,
        )  # fmt: skip
        event = new_event(auth.sign(intent, h.key), producer="p1", occurred_at=at)
        h.fed.append(event)
        out = process(h.state, event, h.ctx)
        h.outs.extend(out)
        return out

    assert _filled(buy(1, h.tick())) == 5  # the newer quote, all of it
    assert _filled(buy(2, older + timedelta(milliseconds=5))) == 5  # the older quote's
    assert _filled(buy(3, h.tick())) == 0  # the newer quote again: nothing left
    assert h.state.account("A1").positions[INSTRUMENT] == 10
    assert canonical_state(h.fold()) == canonical_state(h.state)
    assert canonical_state(h.from_slice()) == canonical_state(h.state)


def _stop_hit_with_nothing_left(h: _Recording) -> list[Any]:
    """A long of 1 with a stop at 90 (take-profit 120); the account's resting sell of 0.2
    at 88 takes the whole print of 0.2 at 89 that crosses the stop. The outputs of that
    print."""
    h.quote(D("99"), D("100"), qty=D("10"))
    h.order(Side.BUY, D("1"), D("100"), stop_loss=D("90"), take_profit=D("120"))
    h.quote(D("87"), D("89"), qty=D("10"))
    h.order(Side.SELL, D("0.2"), D("88"))  # rests
    h.tick(1)
    return h.trade(D("89"), D("0.2"))


def test_a_stop_hit_by_a_print_that_left_it_nothing_stays_triggered() -> None:
    """A print through the stop that the account's resting sell took in full leaves the
    stop nothing of it, but the stop was hit: it stays triggered (`OrderTriggered`, the
    take-profit canceled, OCO) and sells at the next print although the price is back
    above the stop, and a fold, a snapshot slice and a catch-up agree. Before, nothing
    recorded the trigger: at 95 the stop waited for 90 again, the 0.8 left unprotected
    through the gap."""
    h = _Recording(_limits(), cash=D("1e6"))
    out = _stop_hit_with_nothing_left(h)
    assert [(e.payload.side, e.payload.quantity) for e in out if e.event_type == "Fill"] == [
        (Side.SELL, D("0.2"))
    ]
    triggered = [e.payload for e in out if e.event_type == "OrderTriggered"]
    assert [(t.price, t.trigger_price, t.replaces) for t in triggered] == [(D("89"), D("90"), None)]
    assert [e.payload.reason for e in out if e.event_type == "OrderCanceled"] == ["OCO"]
    assert canonical_state(h.fold()) == canonical_state(h.state)
    assert canonical_state(h.from_slice()) == canonical_state(h.state)
    # A restart (a fold of the log) and a worker that never stopped meet the next print alike.
    restarted = h.fold()
    h.tick(1)
    out = h.trade(D("95"), D("1"))  # back above the stop: the triggered stop sells anyway
    assert [(e.payload.quantity, e.payload.price) for e in out if e.event_type == "Fill"] == [
        (D("0.8"), D("95"))  # all the long (the rest of its 1 is CHILD_CAPPED)
    ]
    assert h.state.account("A1").positions[INSTRUMENT] == 0
    again = process(restarted, h.fed[-1], Context(event_time_is_arrival=True))
    assert [e.event_id for e in again] == [e.event_id for e in out]
    assert canonical_state(restarted) == canonical_state(h.state)
    assert canonical_state(h.fold()) == canonical_state(h.state)
    assert canonical_state(h.from_slice()) == canonical_state(h.state)


def test_a_print_hitting_a_stop_cancels_its_parents_rest_and_the_stop_stays_triggered() -> None:
    """The parent rests in part above its stop when a print hits the stop. Until session
    22 the print filled both: the parent bought 0.2 at 100 and its stop sold 0.2 at 89,
    the account trading with itself through the tape (and the stop, re-armed by that
    fill, was replaced by a triggered one: `PaperVenue._arm`, which a parent can now
    reach only at a print its triggered stop does not meet). Now the paper venue's
    self-trade prevention cancels the parent's rest (`SELF_TRADE`), the stop sells what
    the print has and stays triggered (the take-profit canceled, OCO), selling at the
    next print; a fold and a snapshot slice agree."""
    h = _Recording(_limits(), cash=D("1e6"))
    h.quote(D("99"), D("100"), qty=D("1"))
    out = h.order(Side.BUY, D("2"), D("100"), stop_loss=D("90"), take_profit=D("120"))
    parent_id = next(e.payload.order_id for e in out if e.event_type == "OrderSubmitted")
    h.quote(D("87"), D("89"), qty=D("10"))  # 1 bought, 1 rests
    h.tick(1)
    out = h.trade(D("89"), D("0.2"))  # the stop is hit: the parent's rest goes, it sells 0.2
    assert [e.payload.reason for e in out if e.event_type == "OrderCanceled"] == [
        "SELF_TRADE", "OCO"
    ]  # fmt: skip
    fills = [(e.payload.side, e.payload.quantity, e.payload.price) for e in out
             if e.event_type == "Fill"]  # fmt: skip
    assert fills == [(Side.SELL, D("0.2"), D("89"))]
    h.tick(1)
    out = h.trade(D("95"), D("0.5"))  # back above the stop: the triggered stop sells 0.5
    fills = [(e.payload.side, e.payload.quantity, e.payload.price) for e in out
             if e.event_type == "Fill"]  # fmt: skip
    assert fills == [(Side.SELL, D("0.5"), D("95"))]
    parent = h.state.orders[parent_id]
    open_ = [c for c in (h.state.orders.get(i) for i in parent.children) if c and not c.done]
    assert [(c.order_type.value, c.leaves) for c in open_] == [("STOP_LOSS", D("0.3"))]
    assert canonical_state(h.fold()) == canonical_state(h.state)
    assert canonical_state(h.from_slice()) == canonical_state(h.state)
