"""A demo application: produces to and/or consumes from topics through Envoy as
one principal, at a steady rate, for a fixed time, with librdkafka.

Usage:
  traffic.py --bootstrap HOST:PORT --client-id ID [--sasl MECH USER PASS]
             [--tls CA CERT KEY] [--produce TOPIC:MSGS_PER_S:BYTES[:CODEC]]...
             [--consume TOPIC]... --duration SECONDS

Prints one JSON line at the end: messages and value bytes produced and consumed per topic.
"""
import argparse
import json
import os
import time

from confluent_kafka import Consumer, Producer, TopicPartition


def config(args):
    conf = {"bootstrap.servers": args.bootstrap, "client.id": args.client_id, "broker.address.family": "v4"}
    protocol = "PLAINTEXT"
    if args.sasl:
        mech, user, password = args.sasl
        conf.update({"sasl.mechanism": mech, "sasl.username": user, "sasl.password": password})
        protocol = "SASL_PLAINTEXT"
    if args.tls:
        ca, cert, key = args.tls
        conf.update({"ssl.ca.location": ca, "ssl.certificate.location": cert, "ssl.key.location": key,
                     "ssl.endpoint.identification.algorithm": "none"})
        protocol = "SASL_SSL" if args.sasl else "SSL"
    conf["security.protocol"] = protocol
    return conf


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--sasl", nargs=3)
    p.add_argument("--tls", nargs=3)
    p.add_argument("--produce", action="append", default=[])
    p.add_argument("--consume", action="append", default=[])
    p.add_argument("--duration", type=float, required=True)
    args = p.parse_args()
    conf = config(args)

    producers = []
    for spec in args.produce:
        parts = spec.split(":")
        topic, rate, size = parts[0], float(parts[1]), int(parts[2])
        codec = parts[3] if len(parts) > 3 else "none"
        producer = Producer({**conf, "compression.type": codec, "linger.ms": 50})
        producers.append({"topic": topic, "rate": rate, "size": size, "producer": producer, "sent": 0, "bytes": 0})

    consumer = None
    consumed = {t: {"messages": 0, "bytes": 0} for t in args.consume}
    if args.consume:
        consumer = Consumer({**conf, "group.id": f"{args.client_id}-group", "enable.auto.commit": False,
                             "fetch.wait.max.ms": 200})
        consumer.assign([TopicPartition(t, 0, 0) for t in args.consume])

    start = time.time()
    while time.time() - start < args.duration:
        elapsed = time.time() - start
        for p_ in producers:
            due = int(elapsed * p_["rate"]) - p_["sent"]
            for _ in range(max(0, due)):
                value = os.urandom(p_["size"] // 2).hex().encode()[: p_["size"]]
                p_["producer"].produce(p_["topic"], value=value, key=str(p_["sent"]).encode())
                p_["sent"] += 1
                p_["bytes"] += len(value)
            p_["producer"].poll(0)
        if consumer is not None:
            for msg in consumer.consume(num_messages=500, timeout=0.1):
                if msg.error() is None:
                    stats = consumed[msg.topic()]
                    stats["messages"] += 1
                    stats["bytes"] += len(msg.value() or b"")
        else:
            time.sleep(0.05)
    for p_ in producers:
        p_["producer"].flush(20)
    if consumer is not None:
        consumer.close()
    print(json.dumps({
        "client_id": args.client_id,
        "produced": {p_["topic"]: {"messages": p_["sent"], "bytes": p_["bytes"]} for p_ in producers},
        "consumed": consumed,
    }))


if __name__ == "__main__":
    main()
