//! Running totals of delta series: OTLP delta sums and histograms are added up per series
//! into the cumulative form the pipeline's metric model and Prometheus use (see
//! `metrics.rs` for the mapping; the totals start from zero when the agent starts).
//!
//! Owns: the table and its bound (`max_delta_series`). Never: maps points to events.

use std::collections::HashMap;
use std::sync::Mutex;

/// Running totals of delta series, shared by a source's connections.
#[derive(Debug)]
pub struct DeltaTotals {
    series: Mutex<HashMap<String, Total>>,
    max_series: usize,
}

#[derive(Debug, Clone)]
enum Total {
    Number(f64),
    Histogram {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

impl DeltaTotals {
    /// An empty table tracking at most `max_series` series.
    pub fn new(max_series: usize) -> Self {
        DeltaTotals {
            series: Mutex::new(HashMap::new()),
            max_series,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Total>> {
        self.series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `delta` to the series' total; `None` when the table is full.
    pub(super) fn add(&self, key: String, delta: f64) -> Option<f64> {
        let mut series = self.lock();
        let full = series.len() >= self.max_series;
        match series.get_mut(&key) {
            Some(Total::Number(total)) => {
                *total += delta;
                Some(*total)
            }
            _ if full => None,
            _ => {
                series.insert(key, Total::Number(delta));
                Some(delta)
            }
        }
    }

    /// Adds a delta histogram (per-bucket counts, not cumulative) to the series' total. A
    /// point whose bounds differ from the total's starts the total again.
    pub(super) fn add_histogram(
        &self,
        key: String,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
        count: u64,
    ) -> Option<(Vec<f64>, Vec<u64>, f64, u64)> {
        let mut series = self.lock();
        let full = series.len() >= self.max_series;
        match series.get_mut(&key) {
            Some(Total::Histogram {
                bounds: total_bounds,
                counts: total_counts,
                sum: total_sum,
                count: total_count,
            }) if total_bounds.as_slice() == bounds && total_counts.len() == counts.len() => {
                for (total, add) in total_counts.iter_mut().zip(counts) {
                    *total = total.saturating_add(*add);
                }
                *total_sum += sum;
                *total_count = total_count.saturating_add(count);
                Some((
                    total_bounds.clone(),
                    total_counts.clone(),
                    *total_sum,
                    *total_count,
                ))
            }
            existing if existing.is_none() && full => None,
            _ => {
                series.insert(
                    key,
                    Total::Histogram {
                        bounds: bounds.to_vec(),
                        counts: counts.to_vec(),
                        sum,
                        count,
                    },
                );
                Some((bounds.to_vec(), counts.to_vec(), sum, count))
            }
        }
    }
}
