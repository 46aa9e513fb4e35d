"""Travel-rule checks: IVMS-101 validation and jurisdiction thresholds (pure), and the
processor that answers each `TransferRequested` with a `TransferChecked`
(docs/travel_rule.md)."""
