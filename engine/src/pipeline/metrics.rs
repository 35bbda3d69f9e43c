//! Latency histograms.
//!
//! Log-linear buckets in microseconds: exact below 1,024 µs, then 16 buckets per power of two
//! (at most 6.25% wide) up to ~2^40 µs. The thread that measures owns a plain [`Histogram`]
//! (no atomics on the hot path) and publishes a copy now and then to a [`Shared`] that the
//! stats line and `/metrics` read.

use std::sync::Mutex;

const LINEAR: u64 = 1024;
const SUB: u64 = 16;
const BUCKETS: usize = LINEAR as usize + 31 * SUB as usize;

/// A latency histogram in µs.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    sum: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            sum: 0,
        }
    }
}

fn index(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let p = 63 - u64::from(us.leading_zeros()); // >= 10
    let sub = (us >> (p - 4)) & (SUB - 1);
    ((LINEAR + (p - 10) * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The largest value of bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let p = (i - LINEAR) / SUB + 10;
    let sub = (i - LINEAR) % SUB;
    ((SUB + sub + 1) << (p - 4)) - 1
}

impl Histogram {
    /// Records one value.
    #[inline]
    pub fn record(&mut self, us: u64) {
        self.counts[index(us)] += 1;
        self.total += 1;
        self.sum = self.sum.saturating_add(us);
    }

    /// The values of both `self` and `other`.
    pub fn merged(&self, other: &Histogram) -> Histogram {
        let mut m = self.clone();
        for (a, b) in m.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        m.total += other.total;
        m.sum = m.sum.saturating_add(other.sum);
        m
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Sum of values, µs.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// The value at quantile `q` (0..=1): the upper bound of its bucket; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let target = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= target {
                return upper(i);
            }
        }
        upper(BUCKETS - 1)
    }

    /// How many values are <= `us` (for Prometheus `le` buckets).
    pub fn count_le(&self, us: u64) -> u64 {
        let last = index(us);
        // Bucket `last` may hold values above `us` when it is wider than 1: count it only when
        // its upper bound is <= us.
        let end = if upper(last) <= us { last + 1 } else { last };
        self.counts[..end].iter().sum()
    }
}

/// A histogram published for readers on other threads.
#[derive(Debug, Default)]
pub struct Shared(Mutex<Histogram>);

impl Shared {
    /// Replaces the published copy.
    pub fn publish(&self, h: &Histogram) {
        if let Ok(mut g) = self.0.lock() {
            g.clone_from(h);
        }
    }
    /// A copy of the last published histogram.
    pub fn snapshot(&self) -> Histogram {
        self.0.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_and_bound_values() {
        for v in [0u64, 1, 17, 1023, 1024, 1025, 5000, 1 << 20, 123_456_789] {
            let i = index(v);
            assert!(upper(i) >= v, "{v}: bucket {i} upper {}", upper(i));
            assert!(
                i == 0 || upper(i - 1) < v,
                "{v}: previous bucket already holds it"
            );
            if v >= 1024 {
                assert!(
                    (upper(i) - v) as f64 <= v as f64 * 0.0625,
                    "{v}: bucket too wide"
                );
            }
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 500);
        assert_eq!(h.quantile(0.99), 990);
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(h.count_le(100), 100);
        assert_eq!(h.count(), 1000);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn merged_holds_the_values_of_both() {
        let (mut odd, mut even, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for v in 1..=5000u64 {
            all.record(v);
            if v % 2 == 1 { &mut odd } else { &mut even }.record(v);
        }
        let m = odd.merged(&even);
        assert_eq!(m.count(), 5000);
        assert_eq!(m.sum(), all.sum());
        for q in [0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(m.quantile(q), all.quantile(q), "{q}");
        }
        assert_eq!(m.count_le(1000), 1000);
    }
}
