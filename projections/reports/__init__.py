"""Regulatory reports built from the log: pure builders (no Kafka, no PostgreSQL) and the
`tradetape export` command that feeds them what it reads from the log."""
