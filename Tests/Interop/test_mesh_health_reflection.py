"""Health and server reflection, checked with clients nobody here wrote: grpcio's stub for the
health.proto of Debian's grpc-proto, and grpcio-reflection's descriptor database (PyPI)."""
import signal
import threading

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from mesh_fixtures import Replica
from waiting import HANG_GUARD, wait_for


@pytest.fixture
def replica(tmp_path):
    r = Replica("r1", tmp_path, env={"BAZAAR_DRAIN_DELAY": "1500ms"})
    yield r
    if r.proc.poll() is None:
        r.stop()


def test_reflection_lists_and_describes_services(replica):
    with grpc.insecure_channel(replica.address) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = set(db.get_services())
        assert {"meshtest.v1.MeshTest", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection"} <= services
        pool = descriptor_pool.DescriptorPool(db)
        svc = pool.FindServiceByName("meshtest.v1.MeshTest")
        assert [m.name for m in svc.methods] == ["Get", "Add", "Relay", "SetFault"]
        relay = svc.methods_by_name["Relay"]
        assert relay.input_type.full_name == "meshtest.v1.RelayRequest"
        assert [f.name for f in relay.output_type.fields] == ["hops"]
        assert [f.name for f in pool.FindMessageTypeByName("meshtest.v1.Hop").fields] == ["replica", "deadline_ms"]
        # Symbols nested in a message, and a method, resolve to their file too.
        assert pool.FindEnumTypeByName("meshtest.v1.FaultRequest.Fault").values_by_name["HANG"].number == 2
        assert db.FindFileContainingSymbol("meshtest.v1.MeshTest.Relay").name == "meshtest/v1/mesh_test.proto"
        # A request built from the reflected types is served.
        from google.protobuf import message_factory
        Request = message_factory.GetMessageClass(pool.FindMessageTypeByName("meshtest.v1.MeshRequest"))
        Reply = message_factory.GetMessageClass(pool.FindMessageTypeByName("meshtest.v1.MeshReply"))
        call = ch.unary_unary("/meshtest.v1.MeshTest/Get", request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=Reply.FromString)
        assert call(Request(id="x"), timeout=5).replica == "r1"
        with pytest.raises(KeyError):
            db.FindFileContainingSymbol("no.such.Symbol")


def test_bad_reflection_requests_fail_alone(replica):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    with grpc.insecure_channel(replica.address) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        requests = [reflection_pb2.ServerReflectionRequest(),  # no question at all
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol=""),
                    reflection_pb2.ServerReflectionRequest(all_extension_numbers_of_type="no.such.Type"),
                    reflection_pb2.ServerReflectionRequest(file_containing_extension=reflection_pb2.ExtensionRequest(
                        containing_type="meshtest.v1.Hop", extension_number=100)),
                    reflection_pb2.ServerReflectionRequest(list_services="")]
        answers = list(stub.ServerReflectionInfo(iter(requests), timeout=5))
        codes = [a.error_response.error_code for a in answers[:4]]
        assert codes == [grpc.StatusCode.INVALID_ARGUMENT.value[0]] + [grpc.StatusCode.NOT_FOUND.value[0]] * 3
        # The stream goes on after errors, and echoes what was asked.
        assert answers[4].list_services_response.service
        assert answers[2].original_request.all_extension_numbers_of_type == "no.such.Type"
        # Bytes that are not a reflection request end that call only.
        bad = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            list(bad(iter([b"\xff\xff\xff"]), timeout=5))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(iter(requests[4:]), timeout=5).next()


def test_reflection_v1_answers_too(replica, pb2):
    reflection = pb2("grpc/reflection/v1/reflection.proto")
    stubs = pb2("grpc/reflection/v1/reflection.proto", "_pb2_grpc")
    with grpc.insecure_channel(replica.address) as ch:
        stub = stubs.ServerReflectionStub(ch)
        requests = [reflection.ServerReflectionRequest(list_services=""),
                    reflection.ServerReflectionRequest(file_by_filename="grpc/health/v1/health.proto"),
                    reflection.ServerReflectionRequest(file_by_filename="missing.proto")]
        answers = list(stub.ServerReflectionInfo(iter(requests), timeout=5))
        assert "meshtest.v1.MeshTest" in [s.name for s in answers[0].list_services_response.service]
        assert len(answers[1].file_descriptor_response.file_descriptor_proto) >= 1
        assert answers[2].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_health_is_serving_then_not_serving_during_a_drain(replica, pb2):
    health_pb2 = pb2("grpc/health/v1/health.proto")
    health_pb2_grpc = pb2("grpc/health/v1/health.proto", "_pb2_grpc")
    with grpc.insecure_channel(replica.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == serving
        assert health.Check(health_pb2.HealthCheckRequest(service="meshtest.v1.MeshTest"), timeout=5).status == serving
        with pytest.raises(grpc.RpcError) as e:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND

        watched, ended = [], []
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=HANG_GUARD)

        def read():
            try:
                for r in watch:
                    watched.append(r.status)
                ended.append(watch.code())
            except grpc.RpcError as e:
                ended.append(e.code())

        reader = threading.Thread(target=read)
        reader.start()
        wait_for("the first health update", lambda: watched)
        assert watched == [serving]

        replica.proc.send_signal(signal.SIGTERM)
        wait_for("the health update of the drain", lambda: len(watched) >= 2)
        assert watched[:2] == [serving, not_serving]
        # During the drain delay the server still answers, and says it is going away.
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == not_serving
        assert replica.proc.wait(timeout=HANG_GUARD) == 0
        reader.join(HANG_GUARD)
        # The watch ended with the drain (OK), not held open until its deadline or the drain's end.
        assert ended == [grpc.StatusCode.OK], ended
