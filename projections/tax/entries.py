"""What a wallet acquired, disposed of or sent away: the log's facts as journal entries.

A `Fill` exchanges two assets. Each asset that is not USD (`money.DEFAULT_USD_ASSETS`)
gets an entry: the one received is acquired (a lot), the one given is disposed of (a
sale). The trade's USD value is its notional when the quote is a USD asset, its quantity
when the base is (a USDC/EURC pair), else unknown: never a made-up number (fail
closed), the entry says why. A fee:

- in a USD asset: added to the basis of what is bought, taken off the proceeds of what
  is sold;
- in the base or the quote asset (not USD): paid in units of the traded asset, so fewer
  units are acquired (the basis covers them all) or more are disposed of (the proceeds
  are the same: the fee units leave in the same sale, at no proceeds of their own);
- in any other asset: its USD value is unknown, so the trade's basis and proceeds are
  too, and the fee units are a disposal of their own (unknown proceeds).

A `DepositReceived` is an acquisition with unknown basis (noncovered: transferred in). A
settled withdrawal (`TransferRequested`'s asset and amount, at its `TransferSettled`)
takes lots out of the wallet FIFO: not a disposal. Entries read the events' JSON values
(`Located.data`: decimals and timestamps as canonical strings).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from projections.tax.money import DEFAULT_USD_ASSETS, EXACT, ZERO


class Kind(StrEnum):
    PURCHASE = "PURCHASE"
    """Acquired by a trade in the account (covered from 2026 when its basis is known)."""
    DEPOSIT = "DEPOSIT"
    """Transferred in: basis unknown to the broker, noncovered."""
    SALE = "SALE"
    """Disposed of by a trade."""
    FEE = "FEE"
    """Units of a third asset paid as a trade's fee: a disposal."""
    WITHDRAWAL = "WITHDRAWAL"
    """Lots sent out of the wallet (settled withdrawal): not a disposal."""


ACQUISITIONS = frozenset({Kind.PURCHASE, Kind.DEPOSIT})
DISPOSALS = frozenset({Kind.SALE, Kind.FEE})


@dataclass(frozen=True)
class Entry:
    """One movement of one asset in one wallet. `usd` is the basis of an acquisition or
    the proceeds of a disposal (None: unknown, `reason` says why; always None for a
    withdrawal). `at` is `YYYY-MM-DDThh:mm:ss.ffffffZ` (orders as text)."""

    at: str
    event_id: str
    leg: str
    account: str
    asset: str
    kind: Kind
    quantity: Decimal
    usd: Decimal | None
    reason: str | None
    ref: str
    """The fill, deposit or transfer id the entry comes from."""

    @property
    def key(self) -> tuple[str, str, str]:
        """The order entries are folded in: time, then the event's id, then the leg."""
        return (self.at, self.event_id, self.leg)

    def to_json(self) -> list[Any]:
        usd = None if self.usd is None else str(self.usd)
        return [
            self.at,
            self.event_id,
            self.leg,
            self.account,
            self.asset,
            self.kind.value,
            str(self.quantity),
            usd,
            self.reason,
            self.ref,
        ]

    @classmethod
    def from_json(cls, v: list[Any]) -> Entry:
        return cls(
            v[0],
            v[1],
            v[2],
            v[3],
            v[4],
            Kind(v[5]),
            Decimal(v[6]),
            None if v[7] is None else Decimal(v[7]),
            v[8],
            v[9],
        )


def _plus(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else EXACT.add(a, b)


def _minus(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else EXACT.subtract(a, b)


def _why(*reasons: str | None) -> str | None:
    kept = [r for r in reasons if r]
    return "; ".join(kept) if kept else None


def from_fill(
    data: Mapping[str, Any], usd_assets: Collection[str] = DEFAULT_USD_ASSETS
) -> list[Entry]:
    """The entries of a `Fill` event (its JSON values), in leg order (base, quote, fee)."""
    p = data["payload"]
    eid, account, at, ref = str(data["event_id"]), p["account"], p["traded_at"], p["fill_id"]
    base, quote = p["instrument"].split("/")
    q, price, f, fa = Decimal(p["quantity"]), Decimal(p["price"]), Decimal(p["fee"]), p["fee_asset"]
    notional = EXACT.multiply(q, price)
    value: Decimal | None
    if quote in usd_assets:
        value, value_why = notional, None
    elif base in usd_assets:
        value, value_why = q, None
    else:
        value, value_why = None, f"no USD value for {base}/{quote}: neither is a USD asset"
    fee_usd: Decimal | None = ZERO
    fee_why: str | None = None
    third = False
    if f == 0 or (fa in (base, quote) and fa not in usd_assets):
        pass  # none, or paid in units of a traded asset (quantities below)
    elif fa in usd_assets:
        fee_usd = f
    else:
        fee_usd, fee_why, third = None, f"no USD value for the fee in {fa}", True
    fee_base = f if fa == base and fa not in usd_assets else ZERO
    fee_quote = f if fa == quote and fa not in usd_assets else ZERO
    basis, proceeds = _plus(value, fee_usd), _minus(value, fee_usd)
    why = _why(value_why, fee_why)

    def entry(leg: str, asset: str, kind: Kind, qty: Decimal, usd: Decimal | None) -> Entry:
        return Entry(
            at, eid, leg, account, asset, kind, qty, usd, why if usd is None else None, ref
        )

    out: list[Entry] = []
    if p["side"] == "BUY":  # receive the base, give the quote
        if base not in usd_assets:
            got = EXACT.subtract(q, fee_base)
            if got > 0:
                out.append(entry("base", base, Kind.PURCHASE, got, basis))
        if quote not in usd_assets:
            out.append(entry("quote", quote, Kind.SALE, EXACT.add(notional, fee_quote), proceeds))
    else:  # give the base, receive the quote
        if base not in usd_assets:
            out.append(entry("base", base, Kind.SALE, EXACT.add(q, fee_base), proceeds))
        if quote not in usd_assets:
            got = EXACT.subtract(notional, fee_quote)
            if got > 0:
                out.append(entry("quote", quote, Kind.PURCHASE, got, basis))
    if third:
        out.append(
            Entry(
                at,
                eid,
                "fee",
                account,
                fa,
                Kind.FEE,
                f,
                None,
                f"fee paid in {fa}, which has no USD value",
                ref,
            )
        )
    return out


def from_deposit(
    data: Mapping[str, Any], usd_assets: Collection[str] = DEFAULT_USD_ASSETS
) -> list[Entry]:
    """A `DepositReceived`: a lot of unknown basis (none for a USD asset: cash)."""
    p = data["payload"]
    if p["asset"] in usd_assets:
        return []
    return [
        Entry(
            str(data["occurred_at"]),
            str(data["event_id"]),
            "deposit",
            p["account"],
            p["asset"],
            Kind.DEPOSIT,
            Decimal(p["amount"]),
            None,
            "transferred in: basis not known to the broker",
            p["deposit_id"],
        )
    ]


def from_withdrawal(
    settled: Mapping[str, Any],
    asset: str,
    amount: Decimal,
    usd_assets: Collection[str] = DEFAULT_USD_ASSETS,
) -> list[Entry]:
    """A `TransferSettled` of a withdrawal of `amount` `asset` (its request's)."""
    if asset in usd_assets:
        return []
    p = settled["payload"]
    return [
        Entry(
            str(settled["occurred_at"]),
            str(settled["event_id"]),
            "withdrawal",
            p["account"],
            asset,
            Kind.WITHDRAWAL,
            amount,
            None,
            None,
            p["transfer_id"],
        )
    ]
