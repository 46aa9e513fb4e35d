"""Operations: settings, the embedded local stack, Kafka plumbing and the `tradetape` CLI."""
