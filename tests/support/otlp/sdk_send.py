"""Sends logs and metrics to an OTLP/HTTP endpoint with the official OpenTelemetry Python SDK
(opentelemetry-sdk + opentelemetry-exporter-otlp-proto-http), for sluice's end-to-end tests.

    python3 sdk_send.py --endpoint http://127.0.0.1:4318 --logs 10000 --metrics \
        --dump exported.json [--timeout 60] [--start 0]

Logs go through Python's `logging` with the SDK's LoggingHandler (the way applications use
it): record `seq` has body "record <seq>", a level cycling DEBUG/INFO/WARNING/ERROR, the
attributes `seq` (int), `user.id` (str), `ok` (bool), `ratio` (float), and a trace context
with trace id `seq + 1` and span id `seq + 1`, inside the resource below. Metrics (optional)
are a counter, an up-down counter, an explicit-bucket histogram, an exponential histogram
and an observable gauge (cumulative), and a delta-temporality counter; every export the SDK
made is written to --dump as JSON (the SDK's own `to_json`), so the test compares what
arrived with what the SDK sent. Exits non-zero when an export failed for good.
"""

import argparse
import json
import logging
import sys

from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableGauge,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

RESOURCE = Resource.create(
    {
        "service.name": "otlp-e2e",
        "service.version": "1.2.3",
        "host.name": "e2e-host",
        "deployment.environment.name": "test",
    }
)

failures = []
exported = []


class CheckedLogExporter(OTLPLogExporter):
    def export(self, batch):
        result = super().export(batch)
        if result != LogRecordExportResult.SUCCESS:
            failures.append(f"logs export of {len(batch)} records: {result}")
        return result


class RecordingMetricExporter(OTLPMetricExporter):
    """Keeps what it exported (when the export succeeded)."""

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        if result == MetricExportResult.SUCCESS:
            exported.append(json.loads(metrics_data.to_json()))
        else:
            failures.append(f"metrics export: {result}")
        return result


def send_logs(endpoint, count, start, timeout):
    provider = LoggerProvider(resource=RESOURCE)
    exporter = CheckedLogExporter(endpoint=f"{endpoint}/v1/logs", timeout=timeout)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            exporter,
            max_queue_size=max(count, 2048),
            max_export_batch_size=512,
            schedule_delay_millis=50,
        )
    )
    set_logger_provider(provider)
    logger = logging.getLogger("e2e.app")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR]
    for seq in range(start, start + count):
        context = SpanContext(
            trace_id=seq + 1,
            span_id=seq + 1,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        with trace.use_span(NonRecordingSpan(context)):
            logger.log(
                levels[seq % 4],
                "record %d",
                seq,
                extra={"seq": seq, "user.id": f"u{seq % 7}", "ok": seq % 2 == 0, "ratio": seq / 4},
            )
    provider.force_flush(timeout_millis=int(timeout * 1000) * 4)
    provider.shutdown()


def send_metrics(endpoint, timeout, dump):
    cumulative = RecordingMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=timeout)
    reader = PeriodicExportingMetricReader(cumulative, export_interval_millis=300)
    provider = MeterProvider(
        resource=RESOURCE,
        metric_readers=[reader],
        views=[
            View(
                instrument_name="e2e.size",
                aggregation=ExponentialBucketHistogramAggregation(max_size=40),
            )
        ],
    )
    delta_exporter = RecordingMetricExporter(
        endpoint=f"{endpoint}/v1/metrics",
        timeout=timeout,
        preferred_temporality={
            Counter: AggregationTemporality.DELTA,
            UpDownCounter: AggregationTemporality.DELTA,
            Histogram: AggregationTemporality.DELTA,
        },
    )
    delta_reader = PeriodicExportingMetricReader(delta_exporter, export_interval_millis=300)
    delta_provider = MeterProvider(resource=RESOURCE, metric_readers=[delta_reader])

    meter = provider.get_meter("e2e.meter", "0.1")
    requests = meter.create_counter("e2e.requests", unit="1", description="requests")
    queue = meter.create_up_down_counter("e2e.queue.depth")
    latency = meter.create_histogram("e2e.latency", unit="ms")
    size = meter.create_histogram("e2e.size", unit="By")
    meter.create_observable_gauge(
        "e2e.temperature", callbacks=[lambda options: [Observation(21.5, {"room": "lab"})]]
    )
    delta_counter = delta_provider.get_meter("e2e.delta").create_counter("e2e.delta.events")
    for i in range(1000):
        route = "/a" if i % 3 else "/b"
        requests.add(1 + i % 5, {"route": route})
        queue.add(1 if i % 4 else -2, {"queue": "q1"})
        latency.record((i * 7) % 900 + 0.5, {"route": route})
        size.record(2 ** (i % 20) + i, {})
        delta_counter.add(i % 3 + 1, {"kind": "x"})
        if i % 250 == 0:
            import time

            time.sleep(0.35)
    provider.force_flush()
    delta_provider.force_flush()
    provider.shutdown()
    delta_provider.shutdown()
    with open(dump, "w") as out:
        json.dump(exported, out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--logs", type=int, default=0)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--metrics", action="store_true")
    parser.add_argument("--dump", default="exported.json")
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    if args.logs:
        send_logs(args.endpoint, args.logs, args.start, args.timeout)
    if args.metrics:
        send_metrics(args.endpoint, args.timeout, args.dump)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
