//! OTLP metrics → metric events.
//!
//! Every data point becomes one event (a histogram one event, a summary several) named as the
//! OTLP metric (unchanged: sinks sanitise for their back-end, remote-write turns
//! `http.server.duration` into `http_server_duration`), with labels, sorted by name, from:
//! the resource attributes, the scope (`otel.scope.name`, `otel.scope.version`, when set) and
//! the point's attributes (which win over the others). Label values are the attribute values
//! as text (lists and maps as JSON). The sample time is the point's `time_unix_nano` (the
//! time received when 0).
//!
//! | OTLP                                          | event                                 |
//! |-----------------------------------------------|---------------------------------------|
//! | Gauge                                         | gauge                                 |
//! | Sum, cumulative, monotonic                    | counter                               |
//! | Sum, cumulative, not monotonic                | gauge                                 |
//! | Sum, delta                                    | the running total per series (counter when monotonic, else gauge) |
//! | Histogram, cumulative                         | histogram (explicit bounds, cumulative counts) |
//! | Histogram, delta                              | the running histogram per series      |
//! | ExponentialHistogram (either temporality)     | histogram, see below                  |
//! | Summary                                       | gauge per quantile (`quantile` label), counters `<name>_sum` and `<name>_count` |
//!
//! Delta points are added up per series (name, kind and labels) into the cumulative form the
//! pipeline's metric model and Prometheus use; the totals live in memory (at most
//! `max_delta_series` series; points of more are refused and answered as rejected) and start
//! from zero when the agent starts. A delta request the client retries after a timeout is
//! counted twice: prefer cumulative temporality when a total must be exact.
//!
//! Exponential histograms become explicit-bound histograms without losing a count: every
//! bucket is one bucket whose upper bound `le` is the bucket's upper boundary. With
//! `base = 2^(2^-scale)`, positive bucket `i` holds values in `(base^i, base^(i+1)]` and gets
//! `le = base^(i+1)`; the zero bucket gets `le = zero_threshold` (0 when unset); negative
//! bucket `i` holds `[-base^(i+1), -base^i)` and gets `le = -base^i`. A point with more than
//! 160 buckets on a side is first downscaled (pairs of buckets merged, scale lowered by one,
//! as the OpenTelemetry SDKs do) until it fits. Bounds that overflow to infinity fold into
//! `+Inf` (the count).
//!
//! Refused (counted, answered in the reply's partial success): points flagged "no recorded
//! value", points of a metric without a name or data, unspecified temporality, histograms
//! whose bucket counts do not match their bounds or whose bounds do not ascend. Exemplars and
//! min/max are not kept.
//!
//! Owns: the mapping and the delta totals. Never: does I/O.

pub use super::delta::DeltaTotals;
pub use super::exponential::exponential_buckets;
use super::logs::nanos;
use super::proto::{self, any_value, metric::Data, number_data_point, AnyValue, KeyValue};
use super::Decoded;
use crate::event::{Event, Metric, MetricValue, Timestamp};

/// Maps every data point of `request` to metric events, appended to `out`.
pub fn to_events(
    request: proto::ExportMetricsServiceRequest,
    received: Timestamp,
    totals: &DeltaTotals,
    out: &mut Vec<Event>,
) -> Decoded {
    let mut decoded = Decoded::default();
    for resource_metrics in request.resource_metrics {
        let mut base: Vec<(String, String)> = resource_metrics
            .resource
            .map(|r| labels(&r.attributes))
            .unwrap_or_default();
        let base_len = base.len();
        for scope_metrics in resource_metrics.scope_metrics {
            base.truncate(base_len);
            if let Some(scope) = &scope_metrics.scope {
                if !scope.name.is_empty() {
                    base.push(("otel.scope.name".into(), scope.name.clone()));
                }
                if !scope.version.is_empty() {
                    base.push(("otel.scope.version".into(), scope.version.clone()));
                }
            }
            for metric in scope_metrics.metrics {
                let mut mapper = Mapper {
                    name: &metric.name,
                    base: &base,
                    received,
                    totals,
                    out: &mut *out,
                    decoded: &mut decoded,
                };
                mapper.metric(metric.data.as_ref());
            }
        }
    }
    decoded
}

struct Mapper<'a> {
    name: &'a str,
    base: &'a [(String, String)],
    received: Timestamp,
    totals: &'a DeltaTotals,
    out: &'a mut Vec<Event>,
    decoded: &'a mut Decoded,
}

impl Mapper<'_> {
    fn metric(&mut self, data: Option<&Data>) {
        let points = match data {
            None => 1,
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
        };
        if self.name.is_empty() {
            self.decoded
                .reject(points, "a metric without a name".to_owned());
            return;
        }
        match data {
            None => self
                .decoded
                .reject(points, format!("metric {:?} has no data", self.name)),
            Some(Data::Gauge(gauge)) => {
                for point in &gauge.data_points {
                    self.number(point, Kind::Gauge, false);
                }
            }
            Some(Data::Sum(sum)) => {
                let kind = if sum.is_monotonic {
                    Kind::Counter
                } else {
                    Kind::Gauge
                };
                let Some(delta) = self.delta(sum.aggregation_temporality, points) else {
                    return;
                };
                for point in &sum.data_points {
                    self.number(point, kind, delta);
                }
            }
            Some(Data::Histogram(histogram)) => {
                let Some(delta) = self.delta(histogram.aggregation_temporality, points) else {
                    return;
                };
                for point in &histogram.data_points {
                    self.histogram(point, delta);
                }
            }
            Some(Data::ExponentialHistogram(histogram)) => {
                let Some(delta) = self.delta(histogram.aggregation_temporality, points) else {
                    return;
                };
                for point in &histogram.data_points {
                    self.exponential(point, delta);
                }
            }
            Some(Data::Summary(summary)) => {
                for point in &summary.data_points {
                    self.summary(point);
                }
            }
        }
    }

    /// Whether points of this temporality are deltas; `None` (all refused) when unspecified.
    fn delta(&mut self, temporality: i32, points: usize) -> Option<bool> {
        match temporality {
            proto::TEMPORALITY_DELTA => Some(true),
            proto::TEMPORALITY_CUMULATIVE => Some(false),
            _ => {
                self.decoded.reject(
                    points,
                    format!(
                        "metric {:?}: unspecified aggregation temporality",
                        self.name
                    ),
                );
                None
            }
        }
    }

    /// A point's labels: the base (resource, scope) overridden by its attributes, sorted.
    fn labels(&self, attributes: &[KeyValue]) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(self.base.len() + attributes.len());
        out.extend(attributes.iter().map(label));
        out.extend(self.base.iter().cloned());
        // Stable: of equal names the first (the point's own) is kept.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|later, earlier| later.0 == earlier.0);
        out
    }

    fn time(&self, time_unix_nano: u64) -> Timestamp {
        match time_unix_nano {
            0 => self.received,
            t => nanos(t),
        }
    }

    /// False (and the point refused) when the point carries no value.
    fn recorded(&mut self, flags: u32) -> bool {
        if flags & proto::FLAG_NO_RECORDED_VALUE != 0 {
            self.decoded.reject(
                1,
                format!("metric {:?}: a point without a recorded value", self.name),
            );
            return false;
        }
        true
    }

    fn push(&mut self, name: String, labels: Vec<(String, String)>, value: MetricValue, at: u64) {
        let timestamp = self.time(at);
        self.out.push(Event::Metric(Metric {
            name,
            labels,
            value,
            timestamp,
        }));
    }

    fn series_key(&self, kind: &str, labels: &[(String, String)]) -> String {
        let mut key = format!("{kind}\u{0}{}", self.name);
        for (name, value) in labels {
            key.push('\u{0}');
            key.push_str(name);
            key.push('\u{1}');
            key.push_str(value);
        }
        key
    }

    fn full(&mut self) {
        self.decoded.reject(
            1,
            format!(
                "metric {:?}: max_delta_series reached, delta point refused",
                self.name
            ),
        );
    }

    fn number(&mut self, point: &proto::NumberDataPoint, kind: Kind, delta: bool) {
        if !self.recorded(point.flags) {
            return;
        }
        let value = match point.value {
            Some(number_data_point::Value::AsDouble(x)) => x,
            Some(number_data_point::Value::AsInt(n)) => n as f64,
            None => {
                self.decoded.reject(
                    1,
                    format!("metric {:?}: a point without a value", self.name),
                );
                return;
            }
        };
        let labels = self.labels(&point.attributes);
        let value = if delta {
            let key = self.series_key(kind.name(), &labels);
            match self.totals.add(key, value) {
                Some(total) => total,
                None => return self.full(),
            }
        } else {
            value
        };
        let value = match kind {
            Kind::Counter => MetricValue::Counter(value),
            Kind::Gauge => MetricValue::Gauge(value),
        };
        self.push(self.name.to_owned(), labels, value, point.time_unix_nano);
        self.decoded.accepted += 1;
    }

    fn histogram(&mut self, point: &proto::HistogramDataPoint, delta: bool) {
        if !self.recorded(point.flags) {
            return;
        }
        let bounds = &point.explicit_bounds;
        let counts = &point.bucket_counts;
        if !counts.is_empty() && counts.len() != bounds.len() + 1 {
            return self.decoded.reject(
                1,
                format!(
                    "metric {:?}: {} bucket counts for {} bounds (expected bounds + 1)",
                    self.name,
                    counts.len(),
                    bounds.len()
                ),
            );
        }
        if bounds.iter().any(|b| b.is_nan()) || !bounds.windows(2).all(|w| w[0] < w[1]) {
            return self.decoded.reject(
                1,
                format!("metric {:?}: bucket bounds do not ascend", self.name),
            );
        }
        let labels = self.labels(&point.attributes);
        let sum = point.sum.unwrap_or(f64::NAN);
        let (bounds, counts, sum, count) = if delta {
            let key = self.series_key("histogram", &labels);
            match self
                .totals
                .add_histogram(key, bounds, counts, sum, point.count)
            {
                Some(total) => total,
                None => return self.full(),
            }
        } else {
            (bounds.clone(), counts.clone(), sum, point.count)
        };
        let mut cumulative = 0u64;
        let buckets = bounds
            .iter()
            .zip(&counts)
            .filter_map(|(bound, n)| {
                cumulative = cumulative.saturating_add(*n);
                // +Inf as an explicit bound is the count already.
                bound.is_finite().then_some((*bound, cumulative))
            })
            .collect();
        self.push(
            self.name.to_owned(),
            labels,
            MetricValue::Histogram {
                buckets,
                sum,
                count,
            },
            point.time_unix_nano,
        );
        self.decoded.accepted += 1;
    }

    fn exponential(&mut self, point: &proto::ExponentialHistogramDataPoint, delta: bool) {
        if !self.recorded(point.flags) {
            return;
        }
        let (bounds, counts) = exponential_buckets(point);
        // Same path as an explicit histogram: bucket counts for the bounds, then the rest of
        // the count (values above the last finite bound) in +Inf.
        let listed: u64 = counts.iter().fold(0u64, |a, n| a.saturating_add(*n));
        let mut counts = counts;
        counts.push(point.count.saturating_sub(listed));
        let explicit = proto::HistogramDataPoint {
            attributes: point.attributes.clone(),
            start_time_unix_nano: point.start_time_unix_nano,
            time_unix_nano: point.time_unix_nano,
            count: point.count,
            sum: point.sum,
            bucket_counts: counts,
            explicit_bounds: bounds,
            flags: 0,
            min: None,
            max: None,
        };
        self.histogram(&explicit, delta);
    }

    fn summary(&mut self, point: &proto::SummaryDataPoint) {
        if !self.recorded(point.flags) {
            return;
        }
        let labels = self.labels(&point.attributes);
        for quantile in &point.quantile_values {
            let mut with_quantile = labels.clone();
            let at = with_quantile.partition_point(|(name, _)| name.as_str() < "quantile");
            let text = quantile.quantile.to_string();
            match with_quantile.get_mut(at) {
                Some((name, value)) if name == "quantile" => *value = text,
                _ => with_quantile.insert(at, ("quantile".into(), text)),
            }
            self.push(
                self.name.to_owned(),
                with_quantile,
                MetricValue::Gauge(quantile.value),
                point.time_unix_nano,
            );
        }
        self.push(
            format!("{}_sum", self.name),
            labels.clone(),
            MetricValue::Counter(point.sum),
            point.time_unix_nano,
        );
        self.push(
            format!("{}_count", self.name),
            labels,
            MetricValue::Counter(point.count as f64),
            point.time_unix_nano,
        );
        self.decoded.accepted += 1;
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Attributes as labels (values as text).
fn labels(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes.iter().map(label).collect()
}

fn label(kv: &KeyValue) -> (String, String) {
    (
        kv.key.clone(),
        kv.value.as_ref().map(any_text).unwrap_or_default(),
    )
}

/// An attribute value as label text: scalars plainly, lists and maps as JSON.
fn any_text(value: &AnyValue) -> String {
    match &value.value {
        None => String::new(),
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(n)) => n.to_string(),
        Some(any_value::Value::DoubleValue(x)) => x.to_string(),
        Some(other) => {
            let value = super::logs::any_to_value(AnyValue {
                value: Some(other.clone()),
            });
            value.to_text().into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Metric;
    use crate::source::opentelemetry::exponential::MAX_EXPONENTIAL_BUCKETS;
    use proto::{
        Buckets, ExponentialHistogram, ExponentialHistogramDataPoint, ExportMetricsServiceRequest,
        Gauge, Histogram, HistogramDataPoint, InstrumentationScope, NumberDataPoint, Resource,
        ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, ValueAtQuantile,
        FLAG_NO_RECORDED_VALUE, TEMPORALITY_CUMULATIVE, TEMPORALITY_DELTA, TEMPORALITY_UNSPECIFIED,
    };

    fn attr(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
        }
    }

    fn request(metrics: Vec<proto::Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![attr("service.name", "shop"), attr("a", "resource")],
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "meter".into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn number(value: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            time_unix_nano: 1_000,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    fn sum(
        name: &str,
        temporality: i32,
        monotonic: bool,
        points: Vec<NumberDataPoint>,
    ) -> proto::Metric {
        proto::Metric {
            name: name.into(),
            data: Some(Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: temporality,
                is_monotonic: monotonic,
            })),
            ..Default::default()
        }
    }

    fn map(metrics: Vec<proto::Metric>, totals: &DeltaTotals) -> (Vec<Metric>, Decoded) {
        let mut out = Vec::new();
        let decoded = to_events(request(metrics), Timestamp(7), totals, &mut out);
        let metrics = out
            .into_iter()
            .map(|e| match e {
                Event::Metric(m) => m,
                Event::Log(_) => panic!("a log event"),
            })
            .collect();
        (metrics, decoded)
    }

    #[test]
    fn sums_and_labels() {
        let totals = DeltaTotals::new(10);
        let (metrics, decoded) = map(
            vec![
                sum(
                    "requests",
                    TEMPORALITY_CUMULATIVE,
                    true,
                    vec![number(5.0, vec![attr("a", "point")])],
                ),
                sum(
                    "queue",
                    TEMPORALITY_CUMULATIVE,
                    false,
                    vec![number(-2.0, vec![])],
                ),
            ],
            &totals,
        );
        assert_eq!(decoded.accepted, 2);
        assert_eq!(metrics[0].name, "requests");
        assert_eq!(metrics[0].value, MetricValue::Counter(5.0));
        assert_eq!(
            metrics[0].labels,
            vec![
                ("a".to_owned(), "point".to_owned()),
                ("otel.scope.name".to_owned(), "meter".to_owned()),
                ("service.name".to_owned(), "shop".to_owned()),
            ],
            "sorted; the point's attribute wins"
        );
        assert_eq!(metrics[0].timestamp, Timestamp(1_000));
        assert_eq!(metrics[1].value, MetricValue::Gauge(-2.0));
    }

    #[test]
    fn deltas_add_up_per_series() {
        let totals = DeltaTotals::new(2);
        for (expected, add) in [(3.0, 3.0), (7.0, 4.0)] {
            let (metrics, _) = map(
                vec![sum(
                    "d",
                    TEMPORALITY_DELTA,
                    true,
                    vec![number(add, vec![attr("k", "1")])],
                )],
                &totals,
            );
            assert_eq!(metrics[0].value, MetricValue::Counter(expected));
        }
        let (metrics, _) = map(
            vec![sum(
                "d",
                TEMPORALITY_DELTA,
                true,
                vec![number(1.0, vec![attr("k", "2")])],
            )],
            &totals,
        );
        assert_eq!(
            metrics[0].value,
            MetricValue::Counter(1.0),
            "another series"
        );
        let (metrics, decoded) = map(
            vec![sum(
                "d",
                TEMPORALITY_DELTA,
                true,
                vec![number(1.0, vec![attr("k", "3")])],
            )],
            &totals,
        );
        assert!(metrics.is_empty());
        assert_eq!(decoded.rejected, 1, "the table is full");
        assert!(decoded.warning.contains("max_delta_series"));
    }

    #[test]
    fn histograms_become_cumulative() {
        let totals = DeltaTotals::new(10);
        let point = HistogramDataPoint {
            count: 6,
            sum: Some(21.0),
            bucket_counts: vec![1, 2, 3],
            explicit_bounds: vec![1.0, 5.0],
            ..Default::default()
        };
        let metric = |temporality, point: HistogramDataPoint| proto::Metric {
            name: "latency".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![point],
                aggregation_temporality: temporality,
            })),
            ..Default::default()
        };
        let (metrics, _) = map(vec![metric(TEMPORALITY_CUMULATIVE, point.clone())], &totals);
        assert_eq!(
            metrics[0].value,
            MetricValue::Histogram {
                buckets: vec![(1.0, 1), (5.0, 3)],
                sum: 21.0,
                count: 6
            }
        );
        map(vec![metric(TEMPORALITY_DELTA, point.clone())], &totals);
        let (metrics, _) = map(vec![metric(TEMPORALITY_DELTA, point.clone())], &totals);
        assert_eq!(
            metrics[0].value,
            MetricValue::Histogram {
                buckets: vec![(1.0, 2), (5.0, 6)],
                sum: 42.0,
                count: 12
            }
        );
        let bad = HistogramDataPoint {
            bucket_counts: vec![1, 2],
            ..point
        };
        let (metrics, decoded) = map(vec![metric(TEMPORALITY_CUMULATIVE, bad)], &totals);
        assert!(metrics.is_empty());
        assert_eq!(decoded.rejected, 1);
    }

    #[test]
    fn exponential_buckets_keep_every_count() {
        // scale 0: base 2. Positive buckets at offset 0: (1,2], (2,4], (4,8].
        let point = ExponentialHistogramDataPoint {
            count: 10,
            sum: Some(30.0),
            scale: 0,
            zero_count: 1,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![2, 3, 1],
            }),
            negative: Some(Buckets {
                offset: 1,
                bucket_counts: vec![2, 1],
            }),
            ..Default::default()
        };
        let (bounds, counts) = exponential_buckets(&point);
        // Negative bucket 2 holds [-8,-4) → le -4; bucket 1 holds [-4,-2) → le -2.
        assert_eq!(bounds, vec![-4.0, -2.0, 0.0, 2.0, 4.0, 8.0]);
        assert_eq!(counts, vec![1, 2, 1, 2, 3, 1]);
        let totals = DeltaTotals::new(10);
        let (metrics, _) = map(
            vec![proto::Metric {
                name: "e".into(),
                data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![point],
                    aggregation_temporality: TEMPORALITY_CUMULATIVE,
                })),
                ..Default::default()
            }],
            &totals,
        );
        let MetricValue::Histogram { buckets, count, .. } = &metrics[0].value else {
            panic!("a histogram")
        };
        assert_eq!(*count, 10);
        assert_eq!(buckets.last(), Some(&(8.0, 10)));
    }

    #[test]
    fn wide_exponential_histograms_are_downscaled() {
        let point = ExponentialHistogramDataPoint {
            count: 1000,
            scale: 3,
            positive: Some(Buckets {
                offset: -500,
                bucket_counts: vec![1; 1000],
            }),
            ..Default::default()
        };
        let (bounds, counts) = exponential_buckets(&point);
        assert!(bounds.len() <= MAX_EXPONENTIAL_BUCKETS + 1);
        assert_eq!(counts.iter().sum::<u64>(), 1000);
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn summaries_and_refusals() {
        let totals = DeltaTotals::new(10);
        let (metrics, decoded) = map(
            vec![
                proto::Metric {
                    name: "rpc".into(),
                    data: Some(Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            count: 4,
                            sum: 10.0,
                            quantile_values: vec![
                                ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 2.0,
                                },
                                ValueAtQuantile {
                                    quantile: 0.99,
                                    value: 4.0,
                                },
                            ],
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                },
                sum(
                    "u",
                    TEMPORALITY_UNSPECIFIED,
                    true,
                    vec![number(1.0, vec![]), number(2.0, vec![])],
                ),
                proto::Metric {
                    name: "g".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            flags: FLAG_NO_RECORDED_VALUE,
                            ..number(1.0, vec![])
                        }],
                    })),
                    ..Default::default()
                },
            ],
            &totals,
        );
        let names: Vec<(&str, Option<&str>)> = metrics
            .iter()
            .map(|m| {
                (
                    m.name.as_str(),
                    m.labels
                        .iter()
                        .find(|(k, _)| k == "quantile")
                        .map(|(_, v)| v.as_str()),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("rpc", Some("0.5")),
                ("rpc", Some("0.99")),
                ("rpc_sum", None),
                ("rpc_count", None)
            ]
        );
        assert_eq!(metrics[3].value, MetricValue::Counter(4.0));
        assert_eq!(decoded.accepted, 1, "one summary point");
        assert_eq!(decoded.rejected, 3, "two unspecified, one without a value");
    }
}
