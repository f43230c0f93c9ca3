"""A SASL-terminating front for the tansu broker — the one stand-in of the host tests.

Why it exists: tansu 0.6.0 cannot complete a SASL login of any mechanism (its
SaslHandshake answers UNSUPPORTED_SASL_MECHANISM while listing that very mechanism,
and with --authentication it refuses even its own `tansu user create`). tally's
filter must be tested against a broker that *answers* SASL, because it attributes a
principal only after the broker's success answer. This front plays the broker's
SASL part and nothing else:

  Kafka client ──► Envoy (tally filter) ──► sasl_front ──► tansu

It answers SaslHandshake (v0/v1, header-framed) and SaslAuthenticate (v0-v2) itself,
with real server-side PLAIN, SCRAM-SHA-256/512 (RFC 5802/7677, salted PBKDF2,
proof checked, server signature returned) and OAUTHBEARER (RFC 7628, unsecured JWT
as Kafka's dev-mode validator accepts: `sub` taken, signature not checked); a bad
password gets SASL_AUTHENTICATION_FAILED (58) and the connection is closed, as a
Kafka broker does. Every other frame is forwarded byte for byte to tansu, and
tansu's answers byte for byte back. Clients are real (librdkafka, kafka-python),
so the SASL exchanges crossing the filter are the real ones.

Usage: sasl_front.py LISTEN_PORT UPSTREAM_PORT USER:PASSWORD [USER:PASSWORD ...]
"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import struct
import sys

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
SCRAM_ITERATIONS = 4096

USERS = {}


def uvarint(data, pos):
    shift = value = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def put_uvarint(value):
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def parse_request(frame):
    """(api_key, api_version, correlation_id, body) of a request frame without its size."""
    api_key, api_version, correlation_id = struct.unpack_from(">hhi", frame, 0)
    (client_id_len,) = struct.unpack_from(">h", frame, 8)
    pos = 10 + max(client_id_len, 0)
    flexible = api_key == SASL_AUTHENTICATE and api_version >= 2
    if flexible:  # request header v2: tagged fields
        count, pos = uvarint(frame, pos)
        for _ in range(count):
            _, pos = uvarint(frame, pos)
            size, pos = uvarint(frame, pos)
            pos += size
    return api_key, api_version, correlation_id, frame[pos:]


class Scram:
    def __init__(self, digest):
        self.digest = digest
        self.first_bare = self.server_first = self.user = self.nonce = None

    def step(self, token):
        """Returns (ok, reply_bytes, principal_or_None, done)."""
        text = token.decode()
        if self.server_first is None:
            _gs2, _authz, bare = text.split(",", 2)
            attrs = dict(a.split("=", 1) for a in bare.split(","))
            self.user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
            self.first_bare = bare
            self.nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
            salt = hashlib.sha256(self.user.encode()).digest()[:16]
            self.salted = hashlib.pbkdf2_hmac(
                self.digest, USERS.get(self.user, os.urandom(16).hex()).encode(), salt, SCRAM_ITERATIONS)
            self.server_first = f"r={self.nonce},s={base64.b64encode(salt).decode()},i={SCRAM_ITERATIONS}"
            return True, self.server_first.encode(), None, False
        final_no_proof, proof_attr = text.rsplit(",p=", 1)
        attrs = dict(a.split("=", 1) for a in final_no_proof.split(","))
        auth_message = f"{self.first_bare},{self.server_first},{final_no_proof}".encode()
        h = lambda key, msg: hmac.new(key, msg, self.digest).digest()
        client_key = h(self.salted, b"Client Key")
        stored_key = hashlib.new(self.digest, client_key).digest()
        signature = h(stored_key, auth_message)
        expected = bytes(a ^ b for a, b in zip(client_key, signature))
        if attrs.get("r") != self.nonce or self.user not in USERS or \
                not hmac.compare_digest(expected, base64.b64decode(proof_attr)):
            return False, b"", None, True
        server_signature = h(h(self.salted, b"Server Key"), auth_message)
        return True, b"v=" + base64.b64encode(server_signature), self.user, True


def plain(token):
    _authzid, authcid, password = token.split(b"\x00", 2)
    user = authcid.decode()
    ok = USERS.get(user) is not None and hmac.compare_digest(USERS[user].encode(), password)
    return ok, b"", user if ok else None, True


def oauthbearer(token):
    # gs2 header "n,," then \x01-separated key=value pairs; auth=Bearer <jwt>
    fields = dict(kv.split("=", 1) for kv in token.decode().split("\x01") if "=" in kv and not kv.startswith("n,"))
    jwt = fields.get("auth", "").removeprefix("Bearer ").strip()
    try:
        payload = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return True, b"", str(claims["sub"]), True
    except Exception:
        return False, b"", None, True


def handshake_response(correlation_id, mechanism):
    error = 0 if mechanism in MECHANISMS else UNSUPPORTED_SASL_MECHANISM
    body = struct.pack(">hi", error, len(MECHANISMS))
    for m in MECHANISMS:
        body += struct.pack(">h", len(m)) + m.encode()
    return struct.pack(">i", correlation_id) + body


def authenticate_response(correlation_id, version, ok, reply):
    error = 0 if ok else SASL_AUTHENTICATION_FAILED
    message = None if ok else b"Authentication failed: invalid credentials"
    if version >= 2:  # flexible: response header v1, compact fields, tagged fields
        out = struct.pack(">i", correlation_id) + b"\x00" + struct.pack(">h", error)
        out += b"\x00" if message is None else put_uvarint(len(message) + 1) + message
        out += put_uvarint(len(reply) + 1) + reply + struct.pack(">q", 0) + b"\x00"
        return out
    out = struct.pack(">ih", correlation_id, error)
    out += struct.pack(">h", -1) if message is None else struct.pack(">h", len(message)) + message
    out += struct.pack(">i", len(reply)) + reply
    if version >= 1:
        out += struct.pack(">q", 0)
    return out


async def read_frame(reader):
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    return await reader.readexactly(size)


async def pump(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(client_reader, client_writer, upstream_port):
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    back = asyncio.create_task(pump(up_reader, client_writer))
    mechanism, scram = None, None
    try:
        while True:
            frame = await read_frame(client_reader)
            api_key, version, correlation_id, body = parse_request(frame)
            if api_key == SASL_HANDSHAKE:
                (n,) = struct.unpack_from(">h", body, 0)
                mechanism = body[2:2 + n].decode()
                reply = handshake_response(correlation_id, mechanism)
            elif api_key == SASL_AUTHENTICATE:
                if version >= 2:
                    n, pos = uvarint(body, 0)
                    token = body[pos:pos + n - 1]
                else:
                    (n,) = struct.unpack_from(">i", body, 0)
                    token = body[4:4 + n]
                if mechanism == "PLAIN":
                    ok, out, who, done = plain(token)
                elif mechanism == "OAUTHBEARER":
                    ok, out, who, done = oauthbearer(token)
                else:
                    scram = scram or Scram("sha512" if mechanism == "SCRAM-SHA-512" else "sha256")
                    ok, out, who, done = scram.step(token)
                reply = authenticate_response(correlation_id, version, ok, out)
                if not ok or done:
                    # One line per finished login: the host test counts them.
                    print(f"sasl_front: {mechanism} {'ok ' + str(who) if ok else 'failed'}", flush=True)
                if not ok:
                    client_writer.write(struct.pack(">i", len(reply)) + reply)
                    await client_writer.drain()
                    break
            else:
                up_writer.write(struct.pack(">i", len(frame)) + frame)
                await up_writer.drain()
                continue
            client_writer.write(struct.pack(">i", len(reply)) + reply)
            await client_writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError, struct.error, IndexError, KeyError):
        pass
    finally:
        up_writer.close()
        back.cancel()
        client_writer.close()


async def main():
    listen_port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
    for spec in sys.argv[3:]:
        user, password = spec.split(":", 1)
        USERS[user] = password
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, upstream_port), "127.0.0.1", listen_port)
    print(f"sasl_front listening on 127.0.0.1:{listen_port} -> tansu 127.0.0.1:{upstream_port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
