"""Read side: exactly-once projectors from Kafka into PostgreSQL, rebuilds and queries."""
