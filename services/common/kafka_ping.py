"""`python -m services.common.kafka_ping HOST:PORT`: exit 0 once the broker answers a metadata request."""

import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient


async def ping(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        await admin.describe_cluster()
    finally:
        await admin.close()


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(ping(sys.argv[1]), timeout=5))
    except Exception as exc:  # any failure means "not ready yet"
        print(f"kafka not ready: {exc!r}", file=sys.stderr)
        sys.exit(1)
