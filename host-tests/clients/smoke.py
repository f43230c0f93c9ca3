"""Produce N messages to a topic and consume them back, with librdkafka.

Usage: smoke.py BOOTSTRAP TOPIC N
Prints one JSON line: {"produced": N, "consumed": M, "value_bytes": B}.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
common = {"bootstrap.servers": bootstrap, "client.id": "tally-smoke", "broker.address.family": "v4"}

admin = AdminClient(common)
for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
    try:
        future.result(15)
    except Exception as exc:  # already exists is fine
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise

producer = Producer({**common, "linger.ms": 5})
value_bytes = 0
for i in range(count):
    value = f"smoke-{i:05d}".encode() * 8
    value_bytes += len(value)
    producer.produce(topic, value=value, key=str(i).encode())
assert producer.flush(20) == 0, "messages left unflushed"

consumer = Consumer({**common, "group.id": "tally-smoke", "enable.auto.commit": False})
consumer.assign([TopicPartition(topic, 0, 0)])
consumed = 0
deadline = time.time() + 20
while consumed < count and time.time() < deadline:
    msg = consumer.poll(0.5)
    if msg is not None and msg.error() is None:
        consumed += 1
consumer.close()
print(json.dumps({"produced": count, "consumed": consumed, "value_bytes": value_bytes}))
