"""A trace collector for the tests: an OTLP/gRPC TraceService (grpcio) that decodes what it
receives with the official classes from PyPI's opentelemetry-proto and writes each span as one
JSON line to a file.

  python otlp_collector.py PORT OUTPUT

Prints "collector listening on PORT" when ready. Runs in its own process, so that its
opentelemetry modules never meet the test session's generated ones."""
import json
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def main():
    port, output = int(sys.argv[1]), sys.argv[2]
    lock = threading.Lock()

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            with lock, open(output, "a") as f:
                for rs in request.resource_spans:
                    resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            record = MessageToDict(span, preserving_proto_field_name=True)
                            record["trace_id"] = span.trace_id.hex()
                            record["span_id"] = span.span_id.hex()
                            record["parent_span_id"] = span.parent_span_id.hex()
                            record["attributes"] = {a.key: MessageToDict(a.value) for a in span.attributes}
                            record["resource"] = resource
                            record["scope"] = ss.scope.name
                            f.write(json.dumps(record) + "\n")
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"collector listening on {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
