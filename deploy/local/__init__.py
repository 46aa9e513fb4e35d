"""The embedded local stack: a real KRaft Kafka broker and a real PostgreSQL server.

Both run as background processes under the data directory, with pid files, so
`tradetape up` is idempotent and `tradetape down` stops exactly what it started.
"""

from deploy.local.stack import LocalStack, StackError

__all__ = ["LocalStack", "StackError"]
