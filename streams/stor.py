"""STOR drafts (Delegated Regulation (EU) 2025/885 template, sections 1-4) from one alert.

Pure: the alert and the account facts go in, a JSON-able dict or an HTML page comes out.
A field we cannot fill holds "NA" with the reason, never a guess.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from schemas.events import AccountOpened, SurveillanceAlert
from schemas.types import format_timestamp

NA_NOT_HELD = "NA: not held by tradetape; the compliance officer completes it"


def na(reason: str) -> dict[str, str]:
    return {"value": "NA", "reason": reason}


ABUSE_TYPE = {
    "SPOOFING": "Market manipulation (MiCA Art. 91(2)(a)): orders giving false signals of supply/demand",
    "LAYERING": "Market manipulation (MiCA Art. 91(2)(a)): layering of orders not intended to execute",
    "WASH_TRADING": "Market manipulation (MiCA Art. 91(2)(a)): wash trades with no change in beneficial ownership",
    "ORDER_TO_TRADE": "Possible market manipulation: excessive orders/cancellations (MiCA Art. 91(2)(d))",
    "MARKING_THE_CLOSE": "Market manipulation (MiCA Art. 91(2)(b)): marking the close",
}


def _listed(ev: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The evidence's list of order or fill records under `key` (order-to-trade's `orders`
    is a count, not a list: a draft for such an alert raised TypeError)."""
    value = ev.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _orders_from_evidence(ev: dict[str, Any]) -> list[dict[str, Any]]:
    """Normalise the evidence of any detector into timeline rows."""
    rows: list[dict[str, Any]] = []
    if "order_id" in ev and "submitted_at" in ev:
        rows.append(
            {
                "order_id": ev["order_id"],
                "account": ev.get("account"),
                "side": ev.get("side"),
                "quantity": ev.get("quantity"),
                "price": ev.get("price"),
                "start": ev["submitted_at"],
                "end": ev.get("canceled_at"),
                "status": "CANCELED",
            }
        )
    for o in _listed(ev, "orders"):
        rows.append(
            {
                "order_id": o["order_id"],
                "account": o.get("account"),
                "side": ev.get("side"),
                "quantity": o.get("quantity"),
                "price": o.get("price"),
                "start": o["submitted_at"],
                "end": o.get("canceled_at"),
                "status": "CANCELED",
            }
        )
    for f in [*_listed(ev, "opposite_fills"), *_listed(ev, "legs"), *_listed(ev, "fills")]:
        rows.append(
            {
                "order_id": f["order_id"],
                "account": f.get("account"),
                "side": f.get("side"),
                "quantity": f.get("quantity"),
                "price": f.get("price"),
                "start": f["at"],
                "end": None,
                "status": "FILLED",
            }
        )
    return rows


def evidence_rows(alert: SurveillanceAlert) -> list[dict[str, Any]]:
    """The orders and fills the alert's evidence names, as timeline rows."""
    return _orders_from_evidence(alert.evidence)


def evidence_start(alert: SurveillanceAlert) -> datetime:
    """The earliest time in the alert: its window's start or an evidence row's start."""
    first = alert.window_start
    for r in evidence_rows(alert):
        try:
            at = datetime.fromisoformat(str(r["start"]).replace("Z", "+00:00"))
        except ValueError:
            continue
        if at.tzinfo is not None:
            first = min(first, at)
    return first


def _venue(rows: list[dict[str, Any]], venues: Mapping[str, str] | None) -> Any:
    """The venue(s) the evidence's orders were sent to, from their own events; "NA" and
    the reason when any is not known (never a guess: it used to be "paper" for all)."""
    if not rows:
        return na("the alert's evidence names no order or fill")
    if venues is None:
        return na("the orders' venue was not looked up")
    missing = sorted({str(r["order_id"]) for r in rows if r["order_id"] not in venues})
    if missing:
        return na(
            "no OrderSubmitted or Fill on the orders log read for order(s) " + ", ".join(missing)
        )
    found = sorted({venues[r["order_id"]] for r in rows})
    return found[0] if len(found) == 1 else found


def build_stor(
    alert: SurveillanceAlert,
    accounts: dict[str, AccountOpened],
    *,
    reporting_entity: str,
    venues: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`venues`: order id -> the venue on its `OrderSubmitted` or `Fill` (None: not looked
    up; section 2's venue is then "NA" with that reason)."""
    acct = accounts.get(alert.account)
    ev = alert.evidence
    rows = _orders_from_evidence(ev)
    for r in rows:
        r["venue"] = venues.get(r["order_id"], "NA") if venues is not None else "NA"
    sides = sorted({r["side"] for r in rows if r.get("side")})
    bo = acct.beneficial_owner if acct else None
    missing_acct = "no AccountOpened event for the account on the log"
    return {
        "template": "Commission Delegated Regulation (EU) 2025/885, STOR, sections 1-4",
        "draft": True,
        "alert_id": str(alert.alert_id),
        "section_1_reporting_entity": {
            "name": reporting_entity,
            "person_submitting": na(NA_NOT_HELD),
            "position": na(NA_NOT_HELD),
            "contact": na(NA_NOT_HELD),
            "type_of_entity": "Crypto-asset service provider (CASP) arranging or executing orders",
            "capacity": "Dealing on behalf of clients",
        },
        "section_2_transactions_orders": {
            "crypto_asset": alert.instrument,
            "venue": _venue(rows, venues),
            "orders_and_transactions": rows,
            "sides": sides,
            "period_start": format_timestamp(alert.window_start),
            "period_end": format_timestamp(alert.window_end),
            "triggering_event_ids": [str(i) for i in alert.triggering_event_ids],
            "instrument_isin_or_dti": na(
                "the DTI of the crypto-asset is not on our instrument events"
            ),
        },
        "section_3_description_of_suspicion": {
            "type_of_market_abuse": ABUSE_TYPE.get(alert.pattern, alert.pattern),
            "pattern": alert.pattern,
            "detector": f"{alert.detector} v{alert.detector_version}",
            "score": format(alert.score, "f"),
            "reasons_for_suspicion": alert.summary,
            "evidence": ev,
        },
        "section_4_identity_of_suspected_person": {
            "account": alert.account,
            "related_accounts": list(alert.related_accounts),
            "beneficial_owner_id": alert.beneficial_owner or na("owner unknown to surveillance"),
            "name": bo.name if bo else na(missing_acct),
            "kind": str(bo.kind) if bo else na(missing_acct),
            "country": bo.country if bo else na(missing_acct),
            "lei": (bo.lei or na("natural person or LEI not recorded")) if bo else na(missing_acct),
            "date_of_birth": na("not carried by AccountOpened; held in the KYC system"),
            "address": na("not carried by AccountOpened; held in the KYC system"),
            "national_id": na("not carried by AccountOpened; held in the KYC system"),
            "relationship_with_issuer": na("not recorded"),
        },
    }


def _t(value: str) -> float:  # seconds since the epoch, not money
    """Seconds since the epoch, for plotting only (never money)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def timeline_svg(rows: list[dict[str, Any]], width: int = 760, height: int = 320) -> str:
    """Price level against time: cancelled orders as hollow bars, fills as solid dots."""
    pts = [r for r in rows if r.get("price") is not None]
    if not pts:
        return "<p>No priced orders in the evidence.</p>"
    times = [_t(r["start"]) for r in pts] + [_t(r["end"]) for r in pts if r.get("end")]
    prices = [Decimal(r["price"]) for r in pts]
    t0, t1 = min(times), max(times)
    p0, p1 = min(prices), max(prices)
    pad = 50
    span_t = (t1 - t0) or 1.0
    span_p = (p1 - p0) or Decimal(1)

    def x(t: float) -> float:  # pixels, not money
        return pad + (t - t0) / span_t * (width - 2 * pad)

    def y(p: Decimal) -> float:  # pixels, not money
        # An SVG pixel coordinate, not money: the price itself stays Decimal in the draft.
        return float(height - pad - (p - p0) / span_p * (height - 2 * pad))  # pixels, not money

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="order timeline">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>',
        f'<text x="{pad}" y="{height - 15}" font-size="11">{html.escape(pts[0]["start"])}</text>',
        f'<text x="{width - pad}" y="{height - 15}" font-size="11" text-anchor="end">'
        f"+{span_t:.3f}s</text>",
        f'<text x="5" y="{y(p1) + 4:.1f}" font-size="11">{html.escape(str(p1))}</text>',
        f'<text x="5" y="{y(p0) + 4:.1f}" font-size="11">{html.escape(str(p0))}</text>',
    ]
    for r in pts:
        py = y(Decimal(r["price"]))
        label = html.escape(
            f"{r['status']} {r['side']} {r['quantity']} @ {r['price']} {r['order_id']}"
        )
        color = "#1f77b4" if r.get("side") == "BUY" else "#d62728"
        if r["status"] == "FILLED":
            parts.append(
                f'<circle class="filled" cx="{x(_t(r["start"])):.1f}" cy="{py:.1f}" r="6" '
                f'fill="{color}"><title>{label}</title></circle>'
            )
        else:
            xs, xe = x(_t(r["start"])), x(_t(r["end"])) if r.get("end") else x(t1)
            parts.append(
                f'<g class="canceled"><title>{label}</title>'
                f'<line x1="{xs:.1f}" y1="{py:.1f}" x2="{xe:.1f}" y2="{py:.1f}" stroke="{color}" '
                f'stroke-width="3" stroke-dasharray="6,3"/>'
                f'<circle cx="{xe:.1f}" cy="{py:.1f}" r="6" fill="#fff" stroke="{color}" '
                f'stroke-width="2"/><line x1="{xe - 4:.1f}" y1="{py - 4:.1f}" x2="{xe + 4:.1f}" '
                f'y2="{py + 4:.1f}" stroke="{color}"/></g>'
            )
    parts.append(
        f'<text x="{width - pad}" y="20" font-size="11" text-anchor="end">'
        "solid dot = filled · dashed bar ending in ⊘ = cancelled unfilled · blue BUY, red SELL</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def render_html(stor: dict[str, Any]) -> str:
    """One self-contained page: no scripts, no external assets."""
    rows = stor["section_2_transactions_orders"]["orders_and_transactions"]

    def table(section: dict[str, Any]) -> str:
        cells = []
        for k, v in section.items():
            if k in ("orders_and_transactions", "evidence"):
                continue
            if isinstance(v, dict) and v.get("value") == "NA":
                text = f"NA — {v['reason']}"
            elif isinstance(v, list | dict):
                text = json.dumps(v)
            else:
                text = str(v)
            cells.append(f"<tr><th>{html.escape(k)}</th><td>{html.escape(text)}</td></tr>")
        return "<table>" + "".join(cells) + "</table>"

    sections = "".join(
        f"<h2>{html.escape(name.replace('_', ' ').title())}</h2>{table(stor[name])}"
        for name in (
            "section_1_reporting_entity",
            "section_2_transactions_orders",
            "section_3_description_of_suspicion",
            "section_4_identity_of_suspected_person",
        )
    )
    evidence = html.escape(
        json.dumps(stor["section_3_description_of_suspicion"]["evidence"], indent=2)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>STOR draft {html.escape(stor['alert_id'])}</title>"
        "<style>body{font-family:sans-serif;max-width:900px;margin:auto}"
        "th{text-align:left;vertical-align:top;padding-right:1em}td{font-family:monospace}"
        "</style></head><body>"
        f"<h1>STOR draft — alert {html.escape(stor['alert_id'])}</h1>"
        f"<p>{html.escape(stor['template'])}. Draft for the compliance officer; not submitted.</p>"
        f"<h2>Timeline</h2>{timeline_svg(rows)}{sections}"
        f"<h2>Evidence</h2><pre>{evidence}</pre></body></html>"
    )
