"""A raw HTTP/2 client (Python `h2`) for sending what well-behaved gRPC clients never send."""
import socket
import struct

import h2.config
import h2.connection
import h2.events
import h2.settings


def grpc_frame(payload, flag=0, length=None):
    return struct.pack(">BI", flag, len(payload) if length is None else length) + payload


def request_headers(path, content_type="application/grpc", extra=()):
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
            ("content-type", content_type), ("te", "trailers"), *extra]


class RawH2:
    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
        self.conn.increment_flow_control_window(1 << 24)
        self.flush()
        self.streams = {}
        self.terminated = None
        self.goaway = None  # error code of a GOAWAY received (NO_ERROR ones let streams finish)
        self.events = []  # every h2 event, in the order received (tests check the order, never the time)

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError) as e:
                # The server closed first (after its GOAWAY): what it said was already read.
                if self.terminated is None:
                    self.terminated = repr(e)

    def send(self, path, body=b"", end=True, **kw):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, request_headers(path, **kw), end_stream=not body and end)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        self.streams[sid] = {"headers": {}, "data": b"", "trailers": {}, "reset": None, "ended": False}
        return sid

    def pump(self, until):
        """Reads events until `until()` is true or the connection ends."""
        while not until() and self.terminated is None:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout) as e:
                self.terminated = repr(e)
                break
            if not data:
                self.terminated = "closed"
                break
            try:
                events = self.conn.receive_data(data)
            except Exception as e:  # the server said something h2 refuses: count it as the end
                self.terminated = repr(e)
                break
            for ev in events:
                self.events.append(ev)
                s = self.streams.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.ResponseReceived):
                    s["headers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.TrailersReceived):
                    s["trailers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    s["data"] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    s["ended"] = True
                elif isinstance(ev, h2.events.StreamReset):
                    if s is not None:
                        s["reset"] = ev.error_code
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = ev.error_code
                    if ev.error_code != 0:
                        self.terminated = f"GOAWAY {ev.error_code}"
            self.flush()

    def finish(self, sid):
        s = self.streams[sid]
        self.pump(lambda: s["ended"] or s["reset"] is not None)
        return s

    @staticmethod
    def status(s):
        """grpc-status from the trailers, or from the headers of a Trailers-Only response."""
        return (s["trailers"] or s["headers"]).get("grpc-status")

    def close(self):
        self.sock.close()
