//! OTLP/JSON metrics: `ResourceMetrics` down to data points, over the readers of `json.rs`.

use super::proto::{self, metric::Data, number_data_point};
use super::*;

const TEMPORALITIES: &[&str] = &[
    "AGGREGATION_TEMPORALITY_UNSPECIFIED",
    "AGGREGATION_TEMPORALITY_DELTA",
    "AGGREGATION_TEMPORALITY_CUMULATIVE",
];

pub(super) fn resource_metrics(object: &Object) -> Result<proto::ResourceMetrics, Error> {
    Ok(proto::ResourceMetrics {
        resource: message(object, "resource", "resource", resource)?,
        scope_metrics: list(object, "scopeMetrics", "scope_metrics", scope_metrics)?,
        schema_url: string(object, "schemaUrl", "schema_url")?,
    })
}

fn scope_metrics(object: &Object) -> Result<proto::ScopeMetrics, Error> {
    Ok(proto::ScopeMetrics {
        scope: message(object, "scope", "scope", scope)?,
        metrics: list(object, "metrics", "metrics", metric)?,
        schema_url: string(object, "schemaUrl", "schema_url")?,
    })
}

fn temporality(object: &Object) -> Result<i32, Error> {
    enumeration(
        object,
        "aggregationTemporality",
        "aggregation_temporality",
        TEMPORALITIES,
    )
}

fn metric(object: &Object) -> Result<proto::Metric, Error> {
    let data = if let Some(gauge) = message(object, "gauge", "gauge", |o| {
        Ok(proto::Gauge {
            data_points: list(o, "dataPoints", "data_points", number_point)?,
        })
    })? {
        Some(Data::Gauge(gauge))
    } else if let Some(sum) = message(object, "sum", "sum", |o| {
        Ok(proto::Sum {
            data_points: list(o, "dataPoints", "data_points", number_point)?,
            aggregation_temporality: temporality(o)?,
            is_monotonic: boolean(o, "isMonotonic", "is_monotonic")?,
        })
    })? {
        Some(Data::Sum(sum))
    } else if let Some(histogram) = message(object, "histogram", "histogram", |o| {
        Ok(proto::Histogram {
            data_points: list(o, "dataPoints", "data_points", histogram_point)?,
            aggregation_temporality: temporality(o)?,
        })
    })? {
        Some(Data::Histogram(histogram))
    } else if let Some(histogram) = message(
        object,
        "exponentialHistogram",
        "exponential_histogram",
        |o| {
            Ok(proto::ExponentialHistogram {
                data_points: list(o, "dataPoints", "data_points", exponential_point)?,
                aggregation_temporality: temporality(o)?,
            })
        },
    )? {
        Some(Data::ExponentialHistogram(histogram))
    } else {
        message(object, "summary", "summary", |o| {
            Ok(proto::Summary {
                data_points: list(o, "dataPoints", "data_points", summary_point)?,
            })
        })?
        .map(Data::Summary)
    };
    Ok(proto::Metric {
        name: string(object, "name", "name")?,
        description: string(object, "description", "description")?,
        unit: string(object, "unit", "unit")?,
        data,
    })
}

fn number_point(object: &Object) -> Result<proto::NumberDataPoint, Error> {
    let value = if let Some(v) = field(object, "asDouble", "as_double") {
        Some(number_data_point::Value::AsDouble(double(v, "asDouble")?))
    } else if let Some(v) = field(object, "asInt", "as_int") {
        Some(number_data_point::Value::AsInt(signed(v, "asInt")?))
    } else {
        None
    };
    Ok(proto::NumberDataPoint {
        attributes: attributes(object)?,
        start_time_unix_nano: u64_field(object, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(object, "timeUnixNano", "time_unix_nano")?,
        value,
        flags: u32_field(object, "flags", "flags")?,
    })
}

fn unsigned_list(object: &Object, camel: &str, snake: &str) -> Result<Vec<u64>, Error> {
    match field(object, camel, snake) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(|v| unsigned(v, camel)).collect(),
        Some(_) => Err(format!("{camel}: expected a list")),
    }
}

fn histogram_point(object: &Object) -> Result<proto::HistogramDataPoint, Error> {
    let bounds = match field(object, "explicitBounds", "explicit_bounds") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| double(v, "explicitBounds"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("explicitBounds: expected a list".into()),
    };
    Ok(proto::HistogramDataPoint {
        attributes: attributes(object)?,
        start_time_unix_nano: u64_field(object, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(object, "timeUnixNano", "time_unix_nano")?,
        count: u64_field(object, "count", "count")?,
        sum: f64_field(object, "sum", "sum")?,
        bucket_counts: unsigned_list(object, "bucketCounts", "bucket_counts")?,
        explicit_bounds: bounds,
        flags: u32_field(object, "flags", "flags")?,
        min: f64_field(object, "min", "min")?,
        max: f64_field(object, "max", "max")?,
    })
}

fn buckets(object: &Object) -> Result<proto::Buckets, Error> {
    Ok(proto::Buckets {
        offset: i32_field(object, "offset", "offset")?,
        bucket_counts: unsigned_list(object, "bucketCounts", "bucket_counts")?,
    })
}

fn exponential_point(object: &Object) -> Result<proto::ExponentialHistogramDataPoint, Error> {
    Ok(proto::ExponentialHistogramDataPoint {
        attributes: attributes(object)?,
        start_time_unix_nano: u64_field(object, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(object, "timeUnixNano", "time_unix_nano")?,
        count: u64_field(object, "count", "count")?,
        sum: f64_field(object, "sum", "sum")?,
        scale: i32_field(object, "scale", "scale")?,
        zero_count: u64_field(object, "zeroCount", "zero_count")?,
        positive: message(object, "positive", "positive", buckets)?,
        negative: message(object, "negative", "negative", buckets)?,
        flags: u32_field(object, "flags", "flags")?,
        min: f64_field(object, "min", "min")?,
        max: f64_field(object, "max", "max")?,
        zero_threshold: f64_field(object, "zeroThreshold", "zero_threshold")?.unwrap_or(0.0),
    })
}

fn summary_point(object: &Object) -> Result<proto::SummaryDataPoint, Error> {
    Ok(proto::SummaryDataPoint {
        attributes: attributes(object)?,
        start_time_unix_nano: u64_field(object, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(object, "timeUnixNano", "time_unix_nano")?,
        count: u64_field(object, "count", "count")?,
        sum: f64_field(object, "sum", "sum")?.unwrap_or(0.0),
        quantile_values: list(object, "quantileValues", "quantile_values", |o| {
            Ok(proto::ValueAtQuantile {
                quantile: f64_field(o, "quantile", "quantile")?.unwrap_or(0.0),
                value: f64_field(o, "value", "value")?.unwrap_or(0.0),
            })
        })?,
        flags: u32_field(object, "flags", "flags")?,
    })
}
