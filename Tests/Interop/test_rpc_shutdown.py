"""Graceful shutdown: SIGTERM during 100 in-flight calls. Every call completes, new calls get
UNAVAILABLE, and the process exits 0."""
import asyncio
import signal
import socket
import time

import grpc
import pytest

from rpc_fixtures import BazaarServer
from waiting import HANG_GUARD, wait_for


def listener_closed(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD).close()
        return False
    except ConnectionRefusedError:
        return True


def test_sigterm_drains_in_flight_calls(pb2):
    messages = pb2("grpc/testing/messages.proto")
    test_grpc = pb2("grpc/testing/test.proto", "_pb2_grpc")
    empty = pb2("grpc/testing/empty.proto")
    # A drain timeout far beyond the hang guard: the exit below shows that the server left as soon
    # as the calls had finished, not when the drain gave up on them.
    server = BazaarServer("--drain_timeout_ms", "3600000")

    async def scenario():
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = test_grpc.TestServiceStub(channel)
            # A first answer at once, the second after 3 s (the workload): each call is seen in
            # flight before SIGTERM, and stays open while the server drains.
            req = messages.StreamingOutputCallRequest(
                response_parameters=[messages.ResponseParameters(size=1),
                                     messages.ResponseParameters(size=100, interval_us=3_000_000)])
            answered = [asyncio.get_running_loop().create_future() for _ in range(100)]

            async def one(first):
                sizes = []
                try:
                    async for r in stub.StreamingOutputCall(req, timeout=HANG_GUARD):
                        sizes.append(len(r.payload.body))
                        if not first.done():
                            first.set_result(None)
                finally:
                    if not first.done():
                        first.set_result(None)  # failed before its first answer: the results say so
                return sizes

            calls = [asyncio.ensure_future(one(first)) for first in answered]
            await asyncio.wait_for(asyncio.gather(*answered), HANG_GUARD)
            server.proc.send_signal(signal.SIGTERM)
            # A new connection is refused while the old calls drain.
            await asyncio.to_thread(wait_for, "the listener to close", lambda: listener_closed(server.port))
            async with grpc.aio.insecure_channel(server.address) as fresh:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await test_grpc.TestServiceStub(fresh).EmptyCall(empty.Empty(), timeout=HANG_GUARD)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            # And once the draining connection's GOAWAY is in (the channel leaves READY), a new
            # call is not served on it either.
            async def goaway_seen():
                while (state := channel.get_state()) == grpc.ChannelConnectivity.READY:
                    await channel.wait_for_state_change(state)
            await asyncio.wait_for(goaway_seen(), HANG_GUARD)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.EmptyCall(empty.Empty(), timeout=HANG_GUARD)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            return await asyncio.gather(*calls, return_exceptions=True)

    try:
        results = asyncio.run(scenario())
        failures = [r for r in results if not isinstance(r, list) or r != [1, 100]]
        assert not failures, failures[:3]
        server.proc.wait(timeout=HANG_GUARD)
    finally:
        code, out = server.stop()
    assert code == 0, out
    assert "shut down cleanly" in out


def test_sigterm_at_any_moment_exits_cleanly():
    """Kubelets and supervisors send SIGTERM whenever they like, sometimes again while the process
    drains. Two windows used to kill the server with the signal's default action (exit -15)
    instead of a clean exit: right after it announced it was listening (the handler was installed
    later, on the loop), and between the end of the drain and the exit (the handler was gone).
    Here SIGTERM comes at once after startup and then every half millisecond until exit."""
    codes = []
    for _ in range(10):
        server = BazaarServer()
        while server.proc.poll() is None:
            try:
                server.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                break
            time.sleep(0.0005)  # the pace of the signals (the workload), not a wait for anything
        code, out = server.stop(timeout=30)
        codes.append(code)
    assert codes == [0] * 10, codes
