"""grpcio peers for the RPC interop matrix: a TestService server and the interop client cases,
written from gRPC's interop test descriptions (grpcio's own interop driver is not in the wheel)."""
import threading
import time
from concurrent import futures

import grpc

from waiting import HANG_GUARD

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"

CASES = [
    "empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong", "empty_stream",
    "cancel_after_begin", "cancel_after_first_response", "timeout_on_sleeping_server", "custom_metadata",
    "status_code_and_message", "special_status_message", "unimplemented_method", "unimplemented_service",
    "client_compressed_unary", "server_compressed_unary", "client_compressed_streaming", "server_compressed_streaming",
]


class Peer:
    """The generated modules: messages_pb2, empty_pb2, test_pb2_grpc."""

    def __init__(self, messages, empty, test_grpc):
        self.m, self.e, self.g = messages, empty, test_grpc

    # ---------------------------------------------------------------- server

    def servicer(self):
        m, e, g = self.m, self.e, self.g

        def echo(context):
            md = dict(context.invocation_metadata())
            if ECHO_INITIAL in md:
                context.send_initial_metadata(((ECHO_INITIAL, md[ECHO_INITIAL]),))
            if ECHO_TRAILING in md:
                context.set_trailing_metadata(((ECHO_TRAILING, md[ECHO_TRAILING]),))

        def status(context, s):
            if s is not None and s.code != 0:
                context.abort(grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == s.code).value), s.message)

        def payload(n):
            return m.Payload(body=b"\0" * n)

        class TestService(g.TestServiceServicer):
            def EmptyCall(self, request, context):
                echo(context)
                return e.Empty()

            def UnaryCall(self, request, context):
                echo(context)
                if request.HasField("response_status"):
                    status(context, request.response_status)
                if request.response_compressed.value:
                    context.set_compression(grpc.Compression.Gzip)
                return m.SimpleResponse(payload=payload(request.response_size))

            def StreamingOutputCall(self, request, context):
                echo(context)
                for p in request.response_parameters:
                    if p.interval_us:
                        time.sleep(p.interval_us / 1e6)  # the pace the request asks for (the workload)
                    if p.compressed.value:
                        context.set_compression(grpc.Compression.Gzip)
                    else:
                        context.disable_next_message_compression()
                    yield m.StreamingOutputCallResponse(payload=payload(p.size))
                if request.HasField("response_status"):
                    status(context, request.response_status)

            def StreamingInputCall(self, request_iterator, context):
                return m.StreamingInputCallResponse(
                    aggregated_payload_size=sum(len(r.payload.body) for r in request_iterator))

            def FullDuplexCall(self, request_iterator, context):
                echo(context)
                for r in request_iterator:
                    if r.HasField("response_status"):
                        status(context, r.response_status)
                    for p in r.response_parameters:
                        if p.interval_us:
                            time.sleep(p.interval_us / 1e6)  # the pace the request asks for (the workload)
                        yield m.StreamingOutputCallResponse(payload=payload(p.size))

            def HalfDuplexCall(self, request_iterator, context):
                for r in list(request_iterator):
                    for p in r.response_parameters:
                        yield m.StreamingOutputCallResponse(payload=payload(p.size))

        return TestService()

    def start_server(self, credentials=None):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self.g.add_TestServiceServicer_to_server(self.servicer(), server)
        address = "localhost:0"
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        server.start()
        return server, port

    # ---------------------------------------------------------------- client

    def run_case(self, name, channel):
        getattr(self, "case_" + name)(channel)

    def stub(self, channel):
        return self.g.TestServiceStub(channel)

    @staticmethod
    def expect_error(code, fn, message=None):
        try:
            fn()
        except grpc.RpcError as err:
            assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
            if message is not None:
                assert err.details() == message, f"expected message {message!r}, got {err.details()!r}"
            return err
        raise AssertionError(f"expected {code}, but the call succeeded")

    def case_empty_unary(self, ch):
        assert self.stub(ch).EmptyCall(self.e.Empty(), timeout=10) == self.e.Empty()

    def case_large_unary(self, ch):
        r = self.stub(ch).UnaryCall(self.m.SimpleRequest(response_size=314159, payload=self.m.Payload(body=b"\0" * 271828)), timeout=10)
        assert r.payload.body == b"\0" * 314159

    def _client_streaming(self, ch, compression=None, expect=False):
        sizes = [27182, 8, 1828, 45904]
        reqs = (self.m.StreamingInputCallRequest(payload=self.m.Payload(body=b"\0" * n),
                                                 expect_compressed=self.m.BoolValue(value=expect)) for n in sizes)
        r = self.stub(ch).StreamingInputCall(reqs, timeout=10, compression=compression)
        assert r.aggregated_payload_size == 74922

    def case_client_streaming(self, ch):
        self._client_streaming(ch)

    def case_client_compressed_streaming(self, ch):
        probe = [self.m.StreamingInputCallRequest(payload=self.m.Payload(body=b"\0" * 27182), expect_compressed=self.m.BoolValue(value=True))]
        self.expect_error(grpc.StatusCode.INVALID_ARGUMENT, lambda: self.stub(ch).StreamingInputCall(iter(probe), timeout=10))
        self._client_streaming(ch, compression=grpc.Compression.Gzip, expect=True)

    def _server_streaming(self, ch, sizes, compressed=None):
        params = [self.m.ResponseParameters(size=n, compressed=self.m.BoolValue(value=bool(compressed and compressed[i])))
                  for i, n in enumerate(sizes)]
        got = [len(r.payload.body) for r in self.stub(ch).StreamingOutputCall(
            self.m.StreamingOutputCallRequest(response_parameters=params), timeout=10)]
        assert got == sizes, got

    def case_server_streaming(self, ch):
        self._server_streaming(ch, [31415, 9, 2653, 58979])

    def case_server_compressed_streaming(self, ch):
        self._server_streaming(ch, [31415, 92653], compressed=[True, False])

    def case_ping_pong(self, ch):
        pairs = [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)]
        import queue
        q = queue.Queue()

        def requests():
            while True:
                item = q.get()
                if item is None:
                    return
                yield item

        def req(i):
            return self.m.StreamingOutputCallRequest(response_parameters=[self.m.ResponseParameters(size=pairs[i][0])],
                                                     payload=self.m.Payload(body=b"\0" * pairs[i][1]))
        q.put(req(0))
        call = self.stub(ch).FullDuplexCall(requests(), timeout=10)
        for i, r in enumerate(call):
            assert len(r.payload.body) == pairs[i][0]
            q.put(req(i + 1) if i + 1 < len(pairs) else None)

    def case_empty_stream(self, ch):
        assert list(self.stub(ch).FullDuplexCall(iter([]), timeout=10)) == []

    def case_cancel_after_begin(self, ch):
        gate = threading.Event()
        began = threading.Event()

        def never():
            began.set()  # grpcio asks for the first request once the call has started
            gate.wait(10)
            return
            yield

        future = self.stub(ch).StreamingInputCall.future(never(), timeout=10)
        assert began.wait(HANG_GUARD), "the call never began"
        future.cancel()
        assert future.cancelled()
        gate.set()

    def case_cancel_after_first_response(self, ch):
        gate = threading.Event()

        def reqs():
            yield self.m.StreamingOutputCallRequest(response_parameters=[self.m.ResponseParameters(size=31415)],
                                                    payload=self.m.Payload(body=b"\0" * 27182))
            gate.wait(10)

        call = self.stub(ch).FullDuplexCall(reqs(), timeout=10)
        assert len(next(call).payload.body) == 31415
        call.cancel()
        self.expect_error(grpc.StatusCode.CANCELLED, lambda: next(call))
        gate.set()

    def case_timeout_on_sleeping_server(self, ch):
        gate = threading.Event()

        def reqs():
            yield self.m.StreamingOutputCallRequest(payload=self.m.Payload(body=b"\0" * 27182))
            gate.wait(10)

        call = self.stub(ch).FullDuplexCall(reqs(), timeout=0.001)
        self.expect_error(grpc.StatusCode.DEADLINE_EXCEEDED, lambda: list(call))
        gate.set()

    def case_custom_metadata(self, ch):
        md = ((ECHO_INITIAL, "test_initial_metadata_value"), (ECHO_TRAILING, b"\xab\xab\xab"))
        req = self.m.SimpleRequest(response_size=314159, payload=self.m.Payload(body=b"\0" * 271828))
        _, call = self.stub(ch).UnaryCall.with_call(req, metadata=md, timeout=10)
        assert (ECHO_INITIAL, "test_initial_metadata_value") in call.initial_metadata(), call.initial_metadata()
        assert (ECHO_TRAILING, b"\xab\xab\xab") in call.trailing_metadata(), call.trailing_metadata()
        sreq = self.m.StreamingOutputCallRequest(response_parameters=[self.m.ResponseParameters(size=314159)],
                                                 payload=self.m.Payload(body=b"\0" * 271828))
        call = self.stub(ch).FullDuplexCall(iter([sreq]), metadata=md, timeout=10)
        assert [len(r.payload.body) for r in call] == [314159]
        assert (ECHO_INITIAL, "test_initial_metadata_value") in call.initial_metadata()
        assert (ECHO_TRAILING, b"\xab\xab\xab") in call.trailing_metadata()

    def _status(self, ch, message):
        st = self.m.EchoStatus(code=2, message=message)
        self.expect_error(grpc.StatusCode.UNKNOWN, lambda: self.stub(ch).UnaryCall(self.m.SimpleRequest(response_status=st), timeout=10), message)
        self.expect_error(grpc.StatusCode.UNKNOWN,
                          lambda: list(self.stub(ch).FullDuplexCall(iter([self.m.StreamingOutputCallRequest(response_status=st)]), timeout=10)),
                          message)

    def case_status_code_and_message(self, ch):
        self._status(ch, "test status message")

    def case_special_status_message(self, ch):
        self._status(ch, SPECIAL_MESSAGE)

    def case_unimplemented_method(self, ch):
        self.expect_error(grpc.StatusCode.UNIMPLEMENTED, lambda: self.stub(ch).UnimplementedCall(self.e.Empty(), timeout=10))

    def case_unimplemented_service(self, ch):
        stub = self.g.UnimplementedServiceStub(ch)
        self.expect_error(grpc.StatusCode.UNIMPLEMENTED, lambda: stub.UnimplementedCall(self.e.Empty(), timeout=10))

    def case_client_compressed_unary(self, ch):
        req = self.m.SimpleRequest(response_size=314159, payload=self.m.Payload(body=b"\0" * 271828),
                                   expect_compressed=self.m.BoolValue(value=True))
        self.expect_error(grpc.StatusCode.INVALID_ARGUMENT, lambda: self.stub(ch).UnaryCall(req, timeout=10))
        r = self.stub(ch).UnaryCall(req, timeout=10, compression=grpc.Compression.Gzip)
        assert len(r.payload.body) == 314159

    def case_server_compressed_unary(self, ch):
        for compressed in (True, False):
            req = self.m.SimpleRequest(response_size=314159, payload=self.m.Payload(body=b"\0" * 271828),
                                       response_compressed=self.m.BoolValue(value=compressed))
            assert len(self.stub(ch).UnaryCall(req, timeout=10).payload.body) == 314159
