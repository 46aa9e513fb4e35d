"""Events for the tax-lot tests: fills, deposits and withdrawals at given times."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from projections.framework import Located
from schemas.events import Fill
from schemas.events.orders import Liquidity, Side
from schemas.events.transfers import DepositReceived, TransferRequested, TransferSettled
from tests.projections.folding import Tape


def at(text: str) -> datetime:
    """`2026-03-01` or `2026-03-01T10:00` as a UTC time."""
    return datetime.fromisoformat(text if "T" in text else text + "T12:00").replace(tzinfo=UTC)


class TaxTape(Tape):
    def trade(  # type: ignore[override]
        self,
        when: str,
        side: str,
        qty: str,
        price: str,
        *,
        inst: str = "BTC/USDC",
        fee: str = "0",
        fee_asset: str = "USDC",
        acct: str = "W1",
    ) -> Located:
        n = self.n + 1
        return self.ev(
            Fill(
                fill_id=f"f{n}", order_id=f"o{n}", account=acct, instrument=inst,
                side=Side(side), quantity=Decimal(qty), price=Decimal(price), fee=Decimal(fee),
                fee_asset=fee_asset, liquidity=Liquidity.TAKER, venue="paper",
                venue_trade_id=f"t{n}", uti=f"U{n}", traded_at=at(when),
                leaves_quantity=Decimal(0),
            ),
            at(when),
        )  # fmt: skip

    def deposit(self, when: str, asset: str, amount: str, *, acct: str = "W1") -> Located:
        n = self.n + 1
        return self.ev(
            DepositReceived(deposit_id=f"d{n}", account=acct, asset=asset, amount=Decimal(amount)),
            at(when),
        )

    def withdraw(
        self, when: str, asset: str, amount: str, *, acct: str = "W1"
    ) -> tuple[Located, Located]:
        tid = f"tr{self.n + 1}"
        req = self.ev(
            TransferRequested(
                transfer_id=tid, account=acct, asset=asset, amount=Decimal(amount),
                destination_address="bc1qexample",
            ),
            at(when),
        )  # fmt: skip
        done = self.ev(
            TransferSettled(transfer_id=tid, account=acct, tx_hash="0xabc", settled_at=at(when)),
            at(when),
        )
        return req, done
