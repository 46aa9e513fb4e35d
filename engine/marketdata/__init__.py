"""Feeding the market-data topic: real captures and a seeded simulation."""
