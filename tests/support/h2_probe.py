#!/usr/bin/python3
"""Crafted HTTP/2 client for lb's tests: sends what a well-behaved client never would
(the hpack-level and frame-level attacks that HTTP/2 limits exist for) and reports,
as one JSON object on stdout, what lb answered.

Usage: h2_probe.py HOST PORT SCENARIO

Uses the `h2` and `hyperframe` packages (Debian: python3-h2) with every outbound
validation turned off, and writes raw frames where even that is not enough.
"""

import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

HOST, PORT, SCENARIO = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def connect(settings=None):
    sock = socket.create_connection((HOST, PORT), timeout=10)
    config = h2.config.H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    if settings:
        conn.update_settings(settings)
    sock.sendall(conn.data_to_send())
    return sock, conn


def request_headers(path="/", method="GET", extra=()):
    return [
        (":method", method),
        (":scheme", "http"),
        (":authority", "lb.test"),
        (":path", path),
    ] + list(extra)


def pump(sock, conn, until, timeout=5.0):
    """Reads events until `until(events_so_far)` is true, the peer closes, or timeout.
    Returns (events, closed)."""
    events = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        if until(events):
            return events, False
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return events, True
        if not data:
            return events, True
        try:
            events += conn.receive_data(data)
        except Exception as e:  # a frame the client library itself refuses
            events.append(("client-error", str(e)))
            return events, True
        out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                return events, True
    return events, False


def summary(events):
    out = {"responses": {}, "resets": {}, "goaway": None, "bodies": {}}
    for e in events:
        if isinstance(e, h2.events.ResponseReceived):
            status = dict(e.headers).get(b":status", b"").decode()
            out["responses"][str(e.stream_id)] = int(status)
        elif isinstance(e, h2.events.DataReceived):
            key = str(e.stream_id)
            out["bodies"][key] = out["bodies"].get(key, "") + e.data.decode("latin-1")
        elif isinstance(e, h2.events.StreamReset):
            out["resets"][str(e.stream_id)] = int(e.error_code)
        elif isinstance(e, h2.events.ConnectionTerminated):
            out["goaway"] = int(e.error_code)
        elif isinstance(e, tuple):
            out["client_error"] = e[1]
    return out


def ends(stream_ids):
    def check(events):
        done = set()
        for e in events:
            if isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                done.add(e.stream_id)
            if isinstance(e, h2.events.ConnectionTerminated):
                return True
        return all(s in done for s in stream_ids)

    return check


def goaway(events):
    return any(isinstance(e, h2.events.ConnectionTerminated) for e in events)


def one_request_after(sock, conn):
    """A valid GET on the same connection: whether it is still served."""
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, request_headers("/after"), end_stream=True)
    sock.sendall(conn.data_to_send())
    events, _ = pump(sock, conn, ends([sid]))
    return summary(events)["responses"].get(str(sid))


def malformed(extra, path="/m"):
    sock, conn = connect()
    conn.send_headers(1, extra if extra is not None else request_headers(path), end_stream=True)
    sock.sendall(conn.data_to_send())
    events, closed = pump(sock, conn, ends([1]))
    result = summary(events)
    result["after"] = None if closed or result["goaway"] is not None else one_request_after(sock, conn)
    return result


def raw_read(sock, stop, timeout=5.0):
    """Reads frames without a client state machine (after raw frames were sent, h2's
    own would refuse the answers): counts HEADERS, RST_STREAM codes and GOAWAY until
    `stop(result)` or the peer closes or the timeout passes."""
    from hyperframe.frame import Frame, GoAwayFrame

    result = {"headers": 0, "resets": {}, "goaway": None, "closed": False}
    buf = b""
    deadline = time.time() + timeout
    while time.time() < deadline and not stop(result):
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            result["closed"] = True
            break
        if not data:
            result["closed"] = True
            break
        buf += data
        while len(buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            frame.parse_body(memoryview(buf[9 : 9 + length]))
            buf = buf[9 + length :]
            if isinstance(frame, HeadersFrame):
                result["headers"] += 1
            elif isinstance(frame, RstStreamFrame):
                code = str(frame.error_code)
                result["resets"][code] = result["resets"].get(code, 0) + 1
            elif isinstance(frame, GoAwayFrame):
                result["goaway"] = frame.error_code
    return result


def frame_log(sock, conn, stop, timeout=10.0):
    """Reads frames raw until `stop(log)`: each frame's type, stream, END_STREAM, the
    :status of HEADERS and the code of GOAWAY/RST_STREAM, in order."""
    from hyperframe.frame import Frame, GoAwayFrame

    log = []
    buf = b""
    deadline = time.time() + timeout
    while time.time() < deadline and not stop(log):
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            log.append({"type": "RESET-TCP"})
            break
        if not data:
            log.append({"type": "EOF"})
            break
        buf += data
        while len(buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            frame.parse_body(memoryview(buf[9 : 9 + length]))
            buf = buf[9 + length :]
            entry = {"type": type(frame).__name__.replace("Frame", "").upper(), "stream": frame.stream_id}
            if "END_STREAM" in frame.flags:
                entry["end"] = True
            if isinstance(frame, HeadersFrame):
                fields = dict(conn.decoder.decode(frame.data))
                status = fields.get(b":status", fields.get(":status"))
                entry["status"] = int(status)
            elif isinstance(frame, (GoAwayFrame, RstStreamFrame)):
                entry["code"] = frame.error_code
            elif isinstance(frame, DataFrame):
                entry["bytes"] = len(frame.data)
            log.append(entry)
    return log


def settled(sock, conn):
    """Waits for lb's SETTINGS (so its limits are known) before raw frames go out."""
    pump(sock, conn, lambda ev: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in ev), 2)


def raw_headers(conn, sid, headers, end_stream):
    frame = HeadersFrame(sid)
    frame.data = conn.encoder.encode(headers)
    frame.flags.add("END_HEADERS")
    if end_stream:
        frame.flags.add("END_STREAM")
    return frame.serialize()


def scenario():
    base = request_headers("/m")
    if SCENARIO == "uppercase":
        return malformed(base + [("X-Upper", "1")])
    if SCENARIO == "connection-header":
        return malformed(base + [("connection", "keep-alive")])
    if SCENARIO == "te-gzip":
        return malformed(base + [("te", "gzip")])
    if SCENARIO == "pseudo-after-regular":
        return malformed([(":method", "GET"), ("x-a", "1"), (":scheme", "http"), (":authority", "lb.test"), (":path", "/m")])
    if SCENARIO == "duplicate-path":
        return malformed(base + [(":path", "/other")])
    if SCENARIO == "missing-path":
        return malformed([(":method", "GET"), (":scheme", "http"), (":authority", "lb.test")])
    if SCENARIO == "host-mismatch":
        return malformed(base + [("host", "other.test")])
    if SCENARIO == "header-list-too-large":
        return malformed(base + [("x-big-%d" % i, "v" * 1000) for i in range(100)])
    if SCENARIO == "too-many-streams":
        # Streams left open (no END_STREAM) beyond SETTINGS_MAX_CONCURRENT_STREAMS: the
        # extra ones are refused (REFUSED_STREAM, 7), the connection lives.
        sock, conn = connect()
        settled(sock, conn)
        limit = conn.remote_settings.max_concurrent_streams
        frames = b"".join(
            raw_headers(conn, 1 + 2 * i, request_headers("/count", "POST"), False)
            for i in range(limit + 5)
        )
        sock.sendall(frames)
        result = raw_read(sock, lambda r: sum(r["resets"].values()) >= 5)
        result["limit"] = limit
        return result
    if SCENARIO == "rapid-reset":
        # CVE-2023-44487: requests each reset by the client at once.
        sock, conn = connect()
        settled(sock, conn)
        frames = b"".join(
            raw_headers(conn, 1 + 2 * i, request_headers("/m?delay_ms=1000"), True)
            + RstStreamFrame(1 + 2 * i, error_code=8).serialize()
            for i in range(2000)
        )
        try:
            sock.sendall(frames)
        except OSError:
            pass
        return raw_read(sock, lambda r: r["goaway"] is not None)
    if SCENARIO == "made-you-reset":
        # CVE-2025-8671: valid requests, each followed by a frame that makes the server
        # reset the stream itself (DATA beyond the declared content-length).
        sock, conn = connect()
        settled(sock, conn)
        frames = b"".join(
            raw_headers(
                conn,
                1 + 2 * i,
                request_headers("/m?delay_ms=1000", "POST", [("content-length", "1")]),
                False,
            )
            + DataFrame(1 + 2 * i, data=b"xx", flags=["END_STREAM"]).serialize()
            for i in range(2000)
        )
        try:
            sock.sendall(frames)
        except OSError:
            pass
        return raw_read(sock, lambda r: r["goaway"] is not None)
    if SCENARIO == "continuation-flood":
        # One header block that never ends: CONTINUATION frames, each a new header.
        sock, conn = connect()
        settled(sock, conn)
        head = HeadersFrame(1)
        head.data = conn.encoder.encode(request_headers("/flood"))
        frames = head.serialize()
        for i in range(10000):
            c = ContinuationFrame(1)
            c.data = conn.encoder.encode([("x-flood-%d" % i, "a" * 100)])
            frames += c.serialize()
        try:
            sock.sendall(frames)
        except OSError:
            pass
        return raw_read(sock, lambda r: r["goaway"] is not None)
    if SCENARIO == "data-on-closed-stream":
        # DATA after END_STREAM: a stream error (STREAM_CLOSED), the connection lives.
        sock, conn = connect()
        conn.send_headers(1, request_headers("/ok"), end_stream=True)
        sock.sendall(conn.data_to_send() + DataFrame(1, data=b"x" * 10).serialize())
        events, closed = pump(sock, conn, ends([1]))
        result = summary(events)
        result["after"] = None if closed or result["goaway"] is not None else one_request_after(sock, conn)
        return result
    if SCENARIO == "slow-reader":
        # A window of 0: lb may not send body bytes; the request ends at lb's write
        # timeout with a reset, and lb must not buffer the whole body meanwhile.
        sock, conn = connect({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        conn.send_headers(1, request_headers("/big?size=5000000"), end_stream=True)
        sock.sendall(conn.data_to_send())
        started = time.time()
        events, closed = pump(sock, conn, ends([1]), timeout=float(sys.argv[4]) if len(sys.argv) > 4 else 8)
        result = summary(events)
        result["closed"] = closed
        result["seconds"] = round(time.time() - started, 2)
        result["bodies"] = {k: len(v) for k, v in result["bodies"].items()}
        return result
    if SCENARIO == "drain":
        # A slow request in flight while lb shuts down: GOAWAY comes first, then the
        # whole response. (Frames are read raw: the h2 library refuses the PING that
        # follows a graceful GOAWAY.)
        sock, conn = connect()
        settled(sock, conn)
        sock.sendall(raw_headers(conn, 1, request_headers("/drain?delay_ms=1000"), True))
        return frame_log(sock, conn, lambda log: any(f.get("end") for f in log))
    if SCENARIO == "reload":
        # One request, then (after the test reloads lb and writes a line to stdin)
        # another on the same connection: it is served, and GOAWAY tells the client to
        # open a new connection for what follows.
        sock, conn = connect()
        settled(sock, conn)
        sock.sendall(raw_headers(conn, 1, request_headers("/before"), True))
        first = frame_log(sock, conn, lambda log: any(f.get("end") for f in log))
        print("ready", flush=True)
        sys.stdin.readline()
        sock.sendall(raw_headers(conn, 3, request_headers("/after-reload"), True))
        second = frame_log(
            sock,
            conn,
            lambda log: any(f.get("end") for f in log) and any(f["type"] == "GOAWAY" for f in log),
        )
        return {"first": first, "second": second}
    if SCENARIO == "idle":
        # A connection with no stream: GOAWAY at lb's idle timeout, then the close.
        sock, conn = connect()
        settled(sock, conn)
        started = time.time()
        log = frame_log(sock, conn, lambda log: any(f["type"] in ("GOAWAY", "EOF") for f in log), timeout=15)
        seconds = round(time.time() - started, 2)
        log += frame_log(sock, conn, lambda log: any(f["type"] == "EOF" for f in log), timeout=15)
        return {"frames": log, "seconds": seconds, "closed_after": round(time.time() - started, 2)}
    if SCENARIO == "request-trailers":
        # A body ended by a trailer section (as gRPC clients may send).
        sock, conn = connect()
        conn.send_headers(1, request_headers("/trailers", "POST"), end_stream=False)
        conn.send_data(1, b"body")
        conn.send_headers(1, [("x-checksum", "abc123")], end_stream=True)
        sock.sendall(conn.data_to_send())
        events, _ = pump(sock, conn, ends([1]))
        return summary(events)
    if SCENARIO == "preface-then-silence":
        sock = socket.create_connection((HOST, PORT), timeout=30)
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        started = time.time()
        try:
            data = sock.recv(65536)
            while data:
                data = sock.recv(65536)
        except OSError:
            pass
        return {"closed_after": round(time.time() - started, 2)}
    raise SystemExit("unknown scenario " + SCENARIO)


print(json.dumps(scenario()))
