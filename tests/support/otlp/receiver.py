"""A fake OTLP/HTTP receiver for sluice's end-to-end tests. It decodes with the official
protobuf classes of the `opentelemetry-proto` package (installed with the SDK's exporter), so
a wrong field number or wire type in sluice's encoder fails the tests.

    python3 receiver.py --out received.jsonl [--control control.txt]

Prints `port <n>` once listening on 127.0.0.1 (an ephemeral port). Takes POST /v1/logs and
/v1/metrics, protobuf, optionally gzip; appends one JSON line per log record or metric data
point to --out: {"signal", "resource": {attrs}, "scope": {name, version}, "item": {...}} with
the item as protobuf's JSON mapping (MessageToDict, original field names) plus, for metrics,
"metric" (name) and "kind" (gauge/sum/histogram/...), "temporality" and "monotonic". While the
--control file holds a status code (e.g. 503), every request is answered with it (and
`Retry-After: 1`) and nothing is recorded. Protocol violations are appended to <out>.errors.
"""

import argparse
import gzip
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

LOCK = threading.Lock()


def attributes(kvs):
    out = {}
    for kv in kvs:
        value = MessageToDict(kv.value, preserving_proto_field_name=True)
        out[kv.key] = value
    return out


def scope_of(scope):
    return {"name": scope.name, "version": scope.version}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", content_type="application/x-protobuf", retry_after=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.end_headers()
        self.wfile.write(body)

    def error(self, message):
        with LOCK:
            with open(self.server.out + ".errors", "a") as f:
                f.write(message + "\n")

    def do_POST(self):
        try:
            self.post()
        except ConnectionError:
            # The agent went away mid-request (the kill -9 test): nothing to answer.
            self.close_connection = True

    def post(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        control = self.server.control
        if control and os.path.exists(control):
            text = open(control).read().strip()
            if text:
                self.reply(int(text), retry_after=1)
                return
        if self.headers.get("Content-Type") != "application/x-protobuf":
            self.error(f"content type {self.headers.get('Content-Type')!r}")
            self.reply(415)
            return
        encoding = self.headers.get("Content-Encoding", "")
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding not in ("", "identity"):
                raise ValueError(f"content encoding {encoding!r}")
            if self.path == "/v1/logs":
                lines = self.logs(body)
                response = ExportLogsServiceResponse()
            elif self.path == "/v1/metrics":
                lines = self.metrics(body)
                response = ExportMetricsServiceResponse()
            else:
                self.error(f"path {self.path}")
                self.reply(404)
                return
        except Exception as e:  # a body the official classes cannot read
            self.error(f"{self.path}: {e!r}")
            self.reply(400)
            return
        with LOCK:
            with open(self.server.out, "a") as f:
                for line in lines:
                    f.write(json.dumps(line) + "\n")
        self.reply(200, response.SerializeToString())

    def logs(self, body):
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        lines = []
        for rl in request.resource_logs:
            resource = attributes(rl.resource.attributes)
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    item = MessageToDict(record, preserving_proto_field_name=True)
                    item["attributes"] = attributes(record.attributes)
                    item["trace_id_hex"] = record.trace_id.hex()
                    item["span_id_hex"] = record.span_id.hex()
                    lines.append(
                        {"signal": "logs", "resource": resource, "scope": scope_of(sl.scope), "item": item}
                    )
        return lines

    def metrics(self, body):
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        lines = []
        for rm in request.resource_metrics:
            resource = attributes(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    data = getattr(metric, kind)
                    for point in data.data_points:
                        item = MessageToDict(point, preserving_proto_field_name=True)
                        item["attributes"] = attributes(point.attributes)
                        lines.append(
                            {
                                "signal": "metrics",
                                "resource": resource,
                                "scope": scope_of(sm.scope),
                                "metric": metric.name,
                                "kind": kind,
                                "temporality": getattr(data, "aggregation_temporality", 0),
                                "monotonic": getattr(data, "is_monotonic", False),
                                "item": item,
                            }
                        )
        return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--control", default="")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.out = args.out
    server.control = args.control
    server.daemon_threads = True
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
