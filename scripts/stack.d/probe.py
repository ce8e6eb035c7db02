#!/usr/bin/env python3
"""Readiness probes that speak each service's own protocol, with no client library.

  probe.py kafka HOST:PORT      -> prints the broker count of a Metadata (v4) response
  probe.py cassandra HOST:PORT  -> prints release_version from system.local (CQL protocol v4)
  probe.py cql HOST:PORT QUERY  -> prints the rows of QUERY, one a line, columns tab-separated

Exit 0 with the answer on stdout when the service really answers; exit 1 with the reason on
stderr otherwise.
"""
import socket
import struct
import sys
import uuid

TIMEOUT_SECONDS = 3


def read_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed before the whole response arrived")
        data += chunk
    return data


def kafka_metadata(host, port):
    # Metadata v4 (KIP-896 removed v0-v3 from Kafka 4): request header v1, topics = null (all).
    client_id = b"updraft-stack"
    header = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id
    body = struct.pack(">i?", -1, False)
    request = header + body
    with socket.create_connection((host, port), TIMEOUT_SECONDS) as sock:
        sock.settimeout(TIMEOUT_SECONDS)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", read_exact(sock, 4))
        response = read_exact(sock, size)
    # correlation_id, throttle_time_ms, then the brokers array
    _correlation, _throttle, broker_count = struct.unpack(">iii", response[:12])
    if broker_count < 1:
        raise RuntimeError("metadata response lists no broker yet")
    return f"{broker_count} broker(s)"


def cql_frame(opcode, body, stream=1):
    return struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body


def cql_read(sock):
    _version, flags, _stream, opcode, length = struct.unpack(">BBhBi", read_exact(sock, 9))
    body = read_exact(sock, length)
    if flags & 0x02:  # tracing id
        body = body[16:]
    if flags & 0x08:  # warnings: a string list before the body
        (count,) = struct.unpack(">h", body[:2])
        offset = 2
        for _ in range(count):
            _, offset = cql_string(body, offset)
        body = body[offset:]
    return opcode, body


def cql_string(data, offset):
    (length,) = struct.unpack(">h", data[offset:offset + 2])
    return data[offset + 2:offset + 2 + length].decode(), offset + 2 + length


def cql_value(type_id, raw):
    if raw is None:
        return "null"
    if type_id in (0x0002, 0x0009):  # bigint, int
        return str(int.from_bytes(raw, "big", signed=True))
    if type_id in (0x000C, 0x000F):  # uuid, timeuuid
        return str(uuid.UUID(bytes=raw))
    if type_id in (0x0001, 0x000D):  # ascii, varchar
        return raw.decode()
    return raw.hex()


def cql_query(host, port, query):
    """Runs one query at consistency ONE; returns the rows as lists of printable strings."""
    with socket.create_connection((host, port), TIMEOUT_SECONDS) as sock:
        sock.settimeout(TIMEOUT_SECONDS * 5)
        options = {b"CQL_VERSION": b"3.0.0"}
        body = struct.pack(">h", len(options))
        for key, value in options.items():
            body += struct.pack(">h", len(key)) + key + struct.pack(">h", len(value)) + value
        sock.sendall(cql_frame(0x01, body))
        opcode, payload = cql_read(sock)
        if opcode != 0x02:
            raise RuntimeError(f"STARTUP answered with opcode {opcode:#x}, not READY: {payload[6:]!r}")
        encoded = query.encode()
        body = struct.pack(">i", len(encoded)) + encoded + struct.pack(">hB", 0x0001, 0)
        sock.sendall(cql_frame(0x07, body, stream=2))
        opcode, payload = cql_read(sock)
    if opcode != 0x08:
        raise RuntimeError(f"query answered with opcode {opcode:#x}: {payload[6:]!r}")
    kind, flags, column_count = struct.unpack(">iii", payload[:12])
    if kind != 2:
        raise RuntimeError(f"query returned result kind {kind}, not rows")
    offset = 12
    if flags & 0x0002:  # has_more_pages: paging state
        (length,) = struct.unpack(">i", payload[offset:offset + 4])
        offset += 4 + max(length, 0)
    if flags & 0x0001:  # global table spec
        _, offset = cql_string(payload, offset)
        _, offset = cql_string(payload, offset)
    types = []
    for _ in range(column_count):
        if not flags & 0x0001:
            _, offset = cql_string(payload, offset)
            _, offset = cql_string(payload, offset)
        _, offset = cql_string(payload, offset)
        (type_id,) = struct.unpack(">h", payload[offset:offset + 2])
        offset += 2
        if type_id in (0x0020, 0x0022):  # list, set: one element type (simple types only)
            offset += 2
        elif type_id == 0x0021:  # map
            offset += 4
        types.append(type_id)
    (row_count,) = struct.unpack(">i", payload[offset:offset + 4])
    offset += 4
    rows = []
    for _ in range(row_count):
        row = []
        for type_id in types:
            (length,) = struct.unpack(">i", payload[offset:offset + 4])
            offset += 4
            raw = None if length < 0 else payload[offset:offset + length]
            offset += max(length, 0)
            row.append(cql_value(type_id, raw))
        rows.append(row)
    return rows


def cassandra_release_version(host, port):
    rows = cql_query(host, port, "SELECT release_version FROM system.local")
    if not rows:
        raise RuntimeError("system.local returned no row")
    return rows[0][0]


def main():
    commands = {"kafka": 3, "cassandra": 3, "cql": 4}
    if len(sys.argv) < 2 or commands.get(sys.argv[1]) != len(sys.argv):
        print(__doc__, file=sys.stderr)
        return 2
    host, _, port = sys.argv[2].rpartition(":")
    host = host or "127.0.0.1"
    try:
        if sys.argv[1] == "kafka":
            print(kafka_metadata(host, int(port)))
        elif sys.argv[1] == "cassandra":
            print(cassandra_release_version(host, int(port)))
        else:
            for row in cql_query(host, int(port), sys.argv[3]):
                print("\t".join(row))
    except (OSError, RuntimeError, ConnectionError, struct.error, ValueError) as error:
        print(f"{sys.argv[1]} at {sys.argv[2]}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
