#!/usr/bin/env python3
"""Readiness probes that speak each service's own protocol, with no client library.

  probe.py kafka HOST:PORT      -> prints the broker count of a Metadata (v4) response
  probe.py cassandra HOST:PORT  -> prints release_version from system.local (CQL protocol v4)
  probe.py registry HOST:PORT   -> prints the version a schema registry's /health reports
  probe.py cql HOST:PORT QUERY [CONSISTENCY]
                                -> prints the rows of QUERY, one a line, columns tab-separated
                                   (none for a statement such as CREATE or INSERT); CONSISTENCY
                                   is ONE (the default), QUORUM, ALL, ...

HOST:PORT may be a comma-separated list (as in KAFKA_BOOTSTRAP_SERVERS or
CASSANDRA_CONTACT_POINTS): the first address that answers is used.
Exit 0 with the answer on stdout when the service really answers; exit 1 with the reason on
stderr otherwise.
"""
import ipaddress
import json
import socket
import struct
import sys
import urllib.request
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


def cql_value(column_type, raw):
    """column_type: a simple type id, or (collection id, element type ids) of simple types."""
    if raw is None:
        return "null"
    if isinstance(column_type, tuple):  # list, set (one element type) or map (key, value)
        kind, element_types = column_type
        (count,) = struct.unpack(">i", raw[:4])
        offset, items = 4, []
        for index in range(count * len(element_types)):
            (length,) = struct.unpack(">i", raw[offset:offset + 4])
            offset += 4
            element = None if length < 0 else raw[offset:offset + length]
            offset += max(length, 0)
            items.append(cql_value(element_types[index % len(element_types)], element))
        if kind == 0x0021:
            return "{" + ", ".join(f"{k}: {v}" for k, v in zip(items[::2], items[1::2])) + "}"
        return ("[" if kind == 0x0020 else "{") + ", ".join(items) + ("]" if kind == 0x0020 else "}")
    if column_type in (0x0002, 0x0009):  # bigint, int
        return str(int.from_bytes(raw, "big", signed=True))
    if column_type in (0x000C, 0x000F):  # uuid, timeuuid
        return str(uuid.UUID(bytes=raw))
    if column_type in (0x0001, 0x000D):  # ascii, varchar
        return raw.decode()
    if column_type == 0x0010:  # inet
        return str(ipaddress.ip_address(raw))
    return raw.hex()


CONSISTENCIES = {"ANY": 0x0000, "ONE": 0x0001, "TWO": 0x0002, "THREE": 0x0003, "QUORUM": 0x0004,
                 "ALL": 0x0005, "LOCAL_QUORUM": 0x0006, "EACH_QUORUM": 0x0007, "LOCAL_ONE": 0x000A}


def cql_query(host, port, query, consistency="ONE"):
    """Runs one query; returns the rows as lists of printable strings (none for a statement)."""
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
        body = struct.pack(">i", len(encoded)) + encoded + struct.pack(">hB", CONSISTENCIES[consistency], 0)
        sock.sendall(cql_frame(0x07, body, stream=2))
        opcode, payload = cql_read(sock)
    if opcode != 0x08:
        raise RuntimeError(f"query answered with opcode {opcode:#x}: {payload[6:]!r}")
    (kind,) = struct.unpack(">i", payload[:4])
    if kind != 2:  # void, set keyspace, schema change: no rows
        return []
    flags, column_count = struct.unpack(">ii", payload[4:12])
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
        if type_id in (0x0020, 0x0021, 0x0022):  # list, map, set of simple types
            count = 2 if type_id == 0x0021 else 1
            elements = struct.unpack(f">{count}h", payload[offset:offset + 2 * count])
            offset += 2 * count
            types.append((type_id, elements))
        else:
            types.append(type_id)
    (row_count,) = struct.unpack(">i", payload[offset:offset + 4])
    offset += 4
    rows = []
    for _ in range(row_count):
        row = []
        for column_type in types:
            (length,) = struct.unpack(">i", payload[offset:offset + 4])
            offset += 4
            raw = None if length < 0 else payload[offset:offset + length]
            offset += max(length, 0)
            row.append(cql_value(column_type, raw))
        rows.append(row)
    return rows


def cassandra_release_version(host, port):
    rows = cql_query(host, port, "SELECT release_version FROM system.local")
    if not rows:
        raise RuntimeError("system.local returned no row")
    return rows[0][0]


def registry_version(host, port):
    with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=TIMEOUT_SECONDS) as response:
        health = json.load(response)
    if health.get("status") != "healthy":
        raise RuntimeError(f"health is {health.get('status')!r}")
    return health.get("version", "?")


def answer(command, host, port, args):
    if command == "registry":
        return [registry_version(host, port)]
    if command == "kafka":
        return [kafka_metadata(host, port)]
    if command == "cassandra":
        return [cassandra_release_version(host, port)]
    return ["\t".join(row) for row in cql_query(host, port, *args)]


def main():
    commands = {"kafka": (3, 3), "cassandra": (3, 3), "registry": (3, 3), "cql": (4, 5)}
    shortest, longest = commands.get(sys.argv[1] if len(sys.argv) > 1 else "", (0, -1))
    if not shortest <= len(sys.argv) <= longest or sys.argv[4:5] and sys.argv[4] not in CONSISTENCIES:
        print(__doc__, file=sys.stderr)
        return 2
    errors = []
    for address in sys.argv[2].split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            lines = answer(sys.argv[1], host or "127.0.0.1", int(port), sys.argv[3:])
        except (OSError, RuntimeError, ConnectionError, struct.error, ValueError) as error:
            errors.append(f"{sys.argv[1]} at {address}: {error}")
            continue
        for line in lines:
            print(line)
        return 0
    print("\n".join(errors), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
