"""The engine: signed intents in, risk decisions, orders and fills out, exactly once."""
