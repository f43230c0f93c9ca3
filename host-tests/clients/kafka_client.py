#!/usr/bin/env python3
"""A real Kafka client for tally's metering host tests.

Produces COUNT records of SIZE bytes with CODEC to TOPIC (partition 0), then
consumes the topic from offset 0 with one consumer until COUNT records are
read, and prints one JSON line: {"produced": n, "consumed": n, "lib": ...}.

Two client libraries: `confluent` (librdkafka) and `kafka-python`. TLS client
certificates (--ca/--cert/--key) and SASL (--sasl MECH USER PASSWORD) are
passed through; for OAUTHBEARER (librdkafka only) USER is the `sub` of an
unsecured JWT that librdkafka makes itself (`enable.sasl.oauthbearer.unsecure.jwt`)
and PASSWORD is ignored. With --expect-auth-failure the script only tries to fetch
metadata and exits 0 if authentication failed (1 otherwise).
"""
import argparse
import json
import sys
import time


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--lib", choices=["confluent", "kafka-python"], required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--codec", default="none")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--client-id", default="tally-test")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--sasl", nargs=3, metavar=("MECH", "USER", "PASSWORD"))
    p.add_argument("--expect-auth-failure", action="store_true")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--produce-only", action="store_true")
    p.add_argument("--linger-ms", type=int, default=50)
    p.add_argument("--batch-bytes", type=int, default=0, help="confluent batch.size (0: default)")
    p.add_argument("--one-record-per-request", action="store_true")
    return p.parse_args()


def payload(i, size):
    stem = ("record-%08d-" % i).encode()
    return (stem * (size // len(stem) + 1))[:size]


def confluent(a):
    import confluent_kafka as ck

    conf = {"bootstrap.servers": a.bootstrap, "client.id": a.client_id}
    if a.ca:
        conf.update({
            "security.protocol": "SSL",
            "ssl.ca.location": a.ca,
            "ssl.certificate.location": a.cert,
            "ssl.key.location": a.key,
            "ssl.endpoint.identification.algorithm": "none",
        })
    if a.sasl:
        conf.update({
            "security.protocol": "SASL_SSL" if a.ca else "SASL_PLAINTEXT",
            "sasl.mechanism": a.sasl[0],
        })
        if a.sasl[0] == "OAUTHBEARER":
            conf.update({
                "enable.sasl.oauthbearer.unsecure.jwt": True,
                "sasl.oauthbearer.config": "principal=" + a.sasl[1],
            })
        else:
            conf.update({"sasl.username": a.sasl[1], "sasl.password": a.sasl[2]})
    if a.expect_auth_failure:
        errors = []
        p = ck.Producer(dict(conf, error_cb=lambda e: errors.append(e)))
        try:
            p.list_topics(timeout=5)
            return 1
        except ck.KafkaException as e:
            # librdkafka logs the SASL failure on stderr; the caller checks it.
            print(json.dumps({"metadata_failed": str(e), "errors": [str(x) for x in errors[:3]]}))
            return 0
    pconf = {"compression.type": a.codec, "linger.ms": a.linger_ms, "acks": "all"}
    if a.batch_bytes:
        pconf.update({"batch.size": a.batch_bytes, "message.max.bytes": max(a.batch_bytes * 2, 1000000)})
    if a.one_record_per_request:
        pconf.update({"batch.num.messages": 1, "max.in.flight.requests.per.connection": 1})
    p = ck.Producer(dict(conf, **pconf))
    for i in range(a.count):
        while True:
            try:
                p.produce(a.topic, value=payload(i, a.size), partition=0)
                break
            except BufferError:
                p.poll(0.1)
    left = p.flush(a.timeout)
    if left:
        raise SystemExit("%d records not delivered" % left)
    if a.produce_only:
        return {"produced": a.count, "consumed": a.count, "lib": "confluent"}
    c = ck.Consumer(dict(conf, **{"group.id": "tally-test-" + a.client_id, "enable.auto.commit": False,
                                  "fetch.wait.max.ms": 100}))
    c.assign([ck.TopicPartition(a.topic, 0, 0)])
    got = 0
    deadline = time.time() + a.timeout
    while got < a.count and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got += 1
    c.close()
    return {"produced": a.count, "consumed": got, "lib": "confluent"}


def kafka_python(a):
    import kafka
    from kafka import TopicPartition

    conf = {"bootstrap_servers": a.bootstrap, "client_id": a.client_id}
    if a.ca:
        conf.update({"security_protocol": "SSL", "ssl_cafile": a.ca, "ssl_certfile": a.cert,
                     "ssl_keyfile": a.key, "ssl_check_hostname": False})
    if a.sasl:
        if a.sasl[0] == "OAUTHBEARER":
            raise SystemExit("OAUTHBEARER is run with --lib confluent only")
        conf.update({"security_protocol": "SASL_SSL" if a.ca else "SASL_PLAINTEXT",
                     "sasl_mechanism": a.sasl[0], "sasl_plain_username": a.sasl[1],
                     "sasl_plain_password": a.sasl[2]})
    codec = None if a.codec == "none" else a.codec
    p = kafka.KafkaProducer(compression_type=codec, linger_ms=50, acks="all", **conf)
    futures = [p.send(a.topic, value=payload(i, a.size), partition=0) for i in range(a.count)]
    p.flush(a.timeout)
    for f in futures:
        f.get(timeout=a.timeout)
    p.close()
    c = kafka.KafkaConsumer(enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100, **conf)
    tp = TopicPartition(a.topic, 0)
    c.assign([tp])
    c.seek(tp, 0)
    got = 0
    deadline = time.time() + a.timeout
    while got < a.count and time.time() < deadline:
        for records in c.poll(timeout_ms=500).values():
            got += len(records)
    c.close()
    return {"produced": a.count, "consumed": got, "lib": "kafka-python"}


def main():
    a = args()
    if a.lib == "confluent":
        out = confluent(a)
    else:
        out = kafka_python(a)
    if isinstance(out, int):
        return out
    print(json.dumps(out))
    return 0 if out["consumed"] == out["produced"] else 1


if __name__ == "__main__":
    sys.exit(main())
