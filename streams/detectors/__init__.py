"""Pure market-abuse detectors. No faust, no I/O, no wall clock."""

from __future__ import annotations

from streams.detectors.layering import LayeringDetector
from streams.detectors.marking_close import MarkingCloseDetector
from streams.detectors.order_to_trade import OrderToTradeDetector
from streams.detectors.spoofing import SpoofingDetector
from streams.detectors.wash_trading import WashTradingDetector
from streams.surveillance_state import Detector


def all_detectors() -> list[Detector]:
    return [
        SpoofingDetector(),
        LayeringDetector(),
        WashTradingDetector(),
        OrderToTradeDetector(),
        MarkingCloseDetector(),
    ]


__all__ = [
    "LayeringDetector",
    "MarkingCloseDetector",
    "OrderToTradeDetector",
    "SpoofingDetector",
    "WashTradingDetector",
    "all_detectors",
]
