//! Reading the registry out: the Prometheus text exposition format for `/metrics`, and
//! samples for the `internal_metrics` source.

use std::fmt::Write as _;

use super::{Kind, Labels, Registry, Series};

impl Registry {
    /// Every series as (name, labels, value) samples, histograms expanded the Prometheus way
    /// (`_bucket{le}`, `_sum`, `_count`). Used by the `internal_metrics` source.
    pub fn samples(&self) -> Vec<Sample> {
        let families = self
            .families
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = Vec::new();
        for (name, family) in families.iter() {
            for (labels, series) in &family.series {
                let value = match series {
                    Series::Counter(c) => SampleValue::Counter(c.get() as f64),
                    Series::Gauge(g) => SampleValue::Gauge(g.get() as f64),
                    Series::Probe(p) => SampleValue::Gauge(p()),
                    Series::Histogram(h) => {
                        let (buckets, sum, count) = h.snapshot();
                        SampleValue::Histogram {
                            buckets,
                            sum,
                            count,
                        }
                    }
                };
                out.push(Sample {
                    name: name.clone(),
                    labels: labels.clone(),
                    value,
                });
            }
        }
        out
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let families = self
            .families
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::with_capacity(16 * 1024);
        for (name, family) in families.iter() {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, series) in &family.series {
                match series {
                    Series::Counter(c) => line(&mut out, name, labels, None, c.get() as f64),
                    Series::Gauge(g) => line(&mut out, name, labels, None, g.get() as f64),
                    Series::Probe(p) => line(&mut out, name, labels, None, p()),
                    Series::Histogram(h) => {
                        let (buckets, sum, count) = h.snapshot();
                        let bucket_name = format!("{name}_bucket");
                        for (bound, n) in buckets {
                            let le = format_float(bound);
                            line(&mut out, &bucket_name, labels, Some(&le), n as f64);
                        }
                        line(&mut out, &bucket_name, labels, Some("+Inf"), count as f64);
                        line(&mut out, &format!("{name}_sum"), labels, None, sum);
                        line(
                            &mut out,
                            &format!("{name}_count"),
                            labels,
                            None,
                            count as f64,
                        );
                    }
                }
            }
        }
        out
    }
}

/// One value read from the registry.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric family name.
    pub name: String,
    /// Sorted labels.
    pub labels: Labels,
    /// The value.
    pub value: SampleValue,
}

/// The value of a [`Sample`].
#[derive(Clone, Debug, PartialEq)]
pub enum SampleValue {
    /// Counter total.
    Counter(f64),
    /// Gauge value.
    Gauge(f64),
    /// Cumulative buckets, sum, count.
    Histogram {
        /// (upper bound, cumulative count).
        buckets: Vec<(f64, u64)>,
        /// Sum of observations.
        sum: f64,
        /// Number of observations.
        count: u64,
    },
}

fn format_float(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if value.is_nan() {
        return "NaN".into();
    }
    format!("{value}")
}

fn line(out: &mut String, name: &str, labels: &Labels, le: Option<&str>, value: f64) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let extra = le.map(|le| ("le", le));
        for (key, val) in labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra)
        {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(key);
            out.push_str("=\"");
            for c in val.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_float(value));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::super::Registry;

    #[test]
    fn renders_text_format() {
        let registry = Registry::default();
        registry
            .counter("t_total", "help", &[("b", "2"), ("a", "x\"y")])
            .add(3);
        registry
            .histogram("t_hist", "h", &[], &[1.0, 10.0])
            .observe(5.0);
        let text = registry.render();
        assert!(text.contains("# TYPE t_total counter\nt_total{a=\"x\\\"y\",b=\"2\"} 3\n"));
        assert!(text.contains("t_hist_bucket{le=\"1\"} 0\n"));
        assert!(text.contains("t_hist_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("t_hist_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("t_hist_sum 5\n"));
    }
}
