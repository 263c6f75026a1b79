"""The outputs' partitions: Kafka's murmur2 of the key, as the Java client and aiokafka's
default partitioner compute it (keys must land where they always did)."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.kafka import murmur2

# Kafka's own test vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
# testMurmur2), signed 32-bit as Java gives them.
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_kafkas_own_vectors() -> None:
    for key, java in KAFKA_VECTORS.items():
        assert murmur2(key) == java & 0xFFFFFFFF, key


@settings(max_examples=2000)
@given(st.binary(max_size=200))
def test_the_same_hash_as_aiokafkas_partitioner(key: bytes) -> None:
    assert murmur2(key) & 0x7FFFFFFF == aiokafka_murmur2(key) & 0x7FFFFFFF
