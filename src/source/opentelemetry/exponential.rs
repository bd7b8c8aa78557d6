//! Exponential histograms as explicit-bound histograms, without losing a count (the
//! conversion is documented in `metrics.rs`'s module notes).
//!
//! Owns: bucket boundaries, downscaling. Never: maps points to events.

use super::proto;

/// Most buckets kept on each side of an exponential histogram.
pub(super) const MAX_EXPONENTIAL_BUCKETS: usize = 160;

/// `(explicit bounds, per-bucket counts)` of an exponential histogram point, ascending (see
/// the module notes); buckets whose bound overflows are left to `+Inf`.
pub fn exponential_buckets(point: &proto::ExponentialHistogramDataPoint) -> (Vec<f64>, Vec<u64>) {
    let empty = proto::Buckets::default();
    let positive = point.positive.as_ref().unwrap_or(&empty);
    let negative = point.negative.as_ref().unwrap_or(&empty);
    let mut scale = point.scale;
    let (mut pos_offset, mut pos) = (i64::from(positive.offset), positive.bucket_counts.clone());
    let (mut neg_offset, mut neg) = (i64::from(negative.offset), negative.bucket_counts.clone());
    while (pos.len() > MAX_EXPONENTIAL_BUCKETS || neg.len() > MAX_EXPONENTIAL_BUCKETS)
        && scale > -10
    {
        (pos_offset, pos) = downscale(pos_offset, &pos);
        (neg_offset, neg) = downscale(neg_offset, &neg);
        scale -= 1;
    }
    // Still too many (an absurd offset spread at the lowest scale): keep the first ones.
    pos.truncate(MAX_EXPONENTIAL_BUCKETS * 2);
    neg.truncate(MAX_EXPONENTIAL_BUCKETS * 2);
    let boundary = |index: i64| -> f64 { (index as f64 * (-f64::from(scale)).exp2()).exp2() };
    let mut bounds = Vec::with_capacity(pos.len() + neg.len() + 1);
    let mut counts = Vec::with_capacity(pos.len() + neg.len() + 1);
    // Negative buckets, most negative first: bucket i's largest value is -base^i.
    for (i, n) in neg.iter().enumerate().rev() {
        let bound = -boundary(neg_offset + i as i64);
        if bound.is_finite() {
            bounds.push(bound);
            counts.push(*n);
        } else if let Some(first) = counts.first_mut() {
            *first = first.saturating_add(*n);
        } else {
            // Below every finite bound: it still belongs before the first one.
            bounds.push(f64::MIN);
            counts.push(*n);
        }
    }
    let zero_bound = point.zero_threshold.max(0.0);
    bounds.push(zero_bound);
    counts.push(point.zero_count);
    for (i, n) in pos.iter().enumerate() {
        let bound = boundary(pos_offset + i as i64 + 1);
        if !bound.is_finite() {
            // Left for +Inf: the caller puts the count's remainder there.
            break;
        }
        if bound <= *bounds.last().unwrap_or(&f64::NEG_INFINITY) {
            // At or under the zero threshold: those values are counted with the zero bucket.
            if let Some(last) = counts.last_mut() {
                *last = last.saturating_add(*n);
            }
            continue;
        }
        bounds.push(bound);
        counts.push(*n);
    }
    // Negative bounds at or above the zero bound cannot ascend: merge them forward.
    let mut merged_bounds: Vec<f64> = Vec::with_capacity(bounds.len());
    let mut merged_counts: Vec<u64> = Vec::with_capacity(counts.len());
    for (bound, n) in bounds.into_iter().zip(counts) {
        if let Some(last) = merged_bounds.last_mut() {
            if bound <= *last {
                let c = merged_counts.last_mut().expect("same length");
                *c = c.saturating_add(n);
                continue;
            }
        }
        merged_bounds.push(bound);
        merged_counts.push(n);
    }
    (merged_bounds, merged_counts)
}

/// Halves the resolution of one side's buckets: index `i` goes to `i >> 1`.
fn downscale(offset: i64, counts: &[u64]) -> (i64, Vec<u64>) {
    if counts.is_empty() {
        return (offset >> 1, Vec::new());
    }
    let new_offset = offset >> 1;
    let last = (offset + counts.len() as i64 - 1) >> 1;
    let mut out = vec![0u64; (last - new_offset + 1) as usize];
    for (i, n) in counts.iter().enumerate() {
        let index = ((offset + i as i64) >> 1) - new_offset;
        out[index as usize] = out[index as usize].saturating_add(*n);
    }
    (new_offset, out)
}
