"""The peer of `mesh-test load` for the failover measurement: grpcio with round_robin and gRPC's
retry policy (the same attempts, backoff and codes as the mesh's defaults), over mutual TLS.

  python grpcio_failover.py TARGETS CERTS_DIR DURATION CONCURRENCY TRACE

TARGETS is host:port,host:port,...; TRACE gets one line per call, as `mesh-test load --trace`
writes it: id, start and end (Unix ms), replica or !CODE."""
import json
import pathlib
import sys
import tempfile
import threading
import time

import grpc
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]


def messages():
    out = tempfile.mkdtemp()
    assert protoc.main(["protoc", f"-I{ROOT / 'Tests/Fixtures/proto'}", f"--python_out={out}",
                        "meshtest/v1/mesh_test.proto"]) == 0
    sys.path.insert(0, out)
    from meshtest.v1 import mesh_test_pb2
    return mesh_test_pb2


def main():
    targets, certs, duration, concurrency, trace = sys.argv[1], pathlib.Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    pb = messages()
    config = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [{"name": [{"service": "meshtest.v1.MeshTest"}],
                          "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "1s",
                                          "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}],
    }
    creds = grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes(), (certs / "client-key.pem").read_bytes(),
                                         (certs / "client.pem").read_bytes())
    channel = grpc.secure_channel("ipv4:" + targets, creds, options=[
        ("grpc.service_config", json.dumps(config)), ("grpc.enable_retries", 1), ("grpc.ssl_target_name_override", "localhost")])
    get = channel.unary_unary("/meshtest.v1.MeshTest/Get", request_serializer=pb.MeshRequest.SerializeToString,
                              response_deserializer=pb.MeshReply.FromString)
    grpc.channel_ready_future(channel).result(timeout=10)
    lines, lock = [], threading.Lock()
    end = time.monotonic() + duration

    def worker(w):
        i = 0
        while time.monotonic() < end:
            i += 1
            start = int(time.time() * 1000)
            try:
                outcome = get(pb.MeshRequest(id=f"w{w}-{i}"), timeout=2).replica
            except grpc.RpcError as e:
                outcome = "!" + e.code().name
            with lock:
                lines.append(f"w{w}-{i} {start} {int(time.time() * 1000)} {outcome}\n")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pathlib.Path(trace).write_text("".join(lines))
    failed = sum(1 for line in lines if line.split()[3].startswith("!"))
    print(f"RESULT {{\"ok\": {len(lines) - failed}, \"failed\": {failed}}}")


if __name__ == "__main__":
    main()
