"""A minimal OTLP/HTTP trace receiver for tests: decodes ExportTraceServiceRequest
protobufs (the opentelemetry-proto package from PyPI) posted to /v1/traces and appends
every span to a file as one JSON line.

Usage: .venv/bin/python tests/python/otlp_receiver.py --out spans.jsonl [--port 0]
Prints "listening on <port>" once bound, then serves until killed.

Each line: {"trace_id", "span_id", "parent_span_id" (hex, "" for a root), "name",
"kind" (SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL), "start_ns", "end_ns", "service", "attributes" {key: value},
"status" (UNSET, OK, ERROR), "links" [{"trace_id", "span_id"}]}.
"""

import argparse
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

KINDS = {
    Span.SPAN_KIND_UNSPECIFIED: "UNSPECIFIED",
    Span.SPAN_KIND_INTERNAL: "INTERNAL",
    Span.SPAN_KIND_SERVER: "SERVER",
    Span.SPAN_KIND_CLIENT: "CLIENT",
    Span.SPAN_KIND_PRODUCER: "PRODUCER",
    Span.SPAN_KIND_CONSUMER: "CONSUMER",
}

STATUSES = {
    Status.STATUS_CODE_UNSET: "UNSET",
    Status.STATUS_CODE_OK: "OK",
    Status.STATUS_CODE_ERROR: "ERROR",
}


def any_value(value):
    """An AnyValue as a plain JSON value."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def attributes(pairs):
    return {kv.key: any_value(kv.value) for kv in pairs}


def spans_of(request):
    for resource_spans in request.resource_spans:
        service = attributes(resource_spans.resource.attributes).get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": KINDS.get(span.kind, str(span.kind)),
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "service": service,
                    "attributes": attributes(span.attributes),
                    "status": STATUSES.get(span.status.code, str(span.status.code)),
                    "links": [
                        {"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()}
                        for l in span.links
                    ],
                }


def make_handler(out_path, lock):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.path.rstrip("/") != "/v1/traces":
                self.send_error(404)
                return
            if "protobuf" not in self.headers.get("Content-Type", ""):
                self.send_error(415, "only application/x-protobuf")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding", "") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except Exception as error:  # a malformed export is the client's bug: say so
                self.send_error(400, f"undecodable ExportTraceServiceRequest: {error}")
                return
            lines = [json.dumps(span, sort_keys=True) for span in spans_of(request)]
            with lock, open(out_path, "a", encoding="utf-8") as out:
                for line in lines:
                    out.write(line + "\n")
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    open(args.out, "a").close()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.out, threading.Lock()))
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
