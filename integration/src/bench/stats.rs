//! Figures from measurements: latency percentiles through an HDR histogram, the median and spread of
//! repeated rounds, and a process's CPU time, peak and current memory from `/proc`.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::bench::BenchError;

/// Latency percentiles of one cell, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// The median.
    pub p50_us: f64,
    /// The 99th percentile.
    pub p99_us: f64,
    /// The 99.9th percentile, when the source reports it (`redis-benchmark` does not).
    pub p999_us: Option<f64>,
    /// The slowest request, when known.
    pub max_us: Option<f64>,
}

/// Request latencies, recorded in nanoseconds with three significant digits.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Latencies {
    /// The highest latency kept apart from others: one minute. Longer ones count as a minute.
    pub const MAX_NS: u64 = 60_000_000_000;

    /// An empty record.
    ///
    /// # Errors
    /// Never with the fixed bounds; hdrhistogram checks them all the same.
    pub fn new() -> Result<Self, BenchError> {
        let histogram = Histogram::new_with_bounds(1, Self::MAX_NS, 3)
            .map_err(|e| format!("an HDR histogram up to {} ns: {e}", Self::MAX_NS))?;
        Ok(Self { histogram })
    }

    /// Records one latency of `ns` nanoseconds (clamped to `1..=MAX_NS`).
    pub fn record_ns(&mut self, ns: u64) {
        self.histogram.saturating_record(ns.clamp(1, Self::MAX_NS));
    }

    /// Records every latency of `samples`, in nanoseconds.
    pub fn record_all(&mut self, samples: &[u32]) {
        for &ns in samples {
            self.record_ns(u64::from(ns));
        }
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// p50, p99, p99.9 and the maximum; `None` when nothing was recorded.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.histogram.is_empty() {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let us = |ns: u64| ns as f64 / 1_000.0;
        Some(Percentiles {
            p50_us: us(self.histogram.value_at_quantile(0.50)),
            p99_us: us(self.histogram.value_at_quantile(0.99)),
            p999_us: Some(us(self.histogram.value_at_quantile(0.999))),
            max_us: Some(us(self.histogram.max())),
        })
    }
}

/// The median of repeated measurements and their range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The median and range of `values`, ignoring NaNs; `None` when there is nothing left.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            f64::midpoint(sorted[mid - 1], sorted[mid])
        };
        Some(Self { median, min, max })
    }

    /// The range as a share of the median (`(max - min) / median`), 0 for a zero median.
    pub fn relative_range(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median.abs()
        }
    }
}

/// CPU time a process has used, from `/proc/self/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// User plus system time of the process's own threads.
    pub own: Duration,
    /// User plus system time of its children that exited and were waited for.
    pub children: Duration,
}

/// This process's CPU times so far (Linux; zero elsewhere). The kernel counts in clock ticks of
/// 10 ms (`CLK_TCK` is 100 on Linux), so measure over seconds, not milliseconds.
pub fn cpu_times() -> CpuTimes {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    parse_cpu_times(&stat)
}

fn parse_cpu_times(stat: &str) -> CpuTimes {
    // Fields after the command name (which may hold spaces, so split after its closing paren):
    // state is field 3 of proc(5); utime, stime, cutime, cstime are fields 14..=17.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let to_duration = |t: u64| Duration::from_millis(t * 10);
    CpuTimes {
        own: to_duration(ticks(11) + ticks(12)),
        children: to_duration(ticks(13) + ticks(14)),
    }
}

/// Peak resident memory (`VmHWM`) of process `pid`, or of this process for `None`, in KiB.
pub fn peak_rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    parse_vm_hwm(&status)
}

/// Resident memory now (`VmRSS`) of this process, in KiB.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, "VmRSS:")
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    parse_status_kib(status, "VmHWM:")
}

/// The KiB figure of the `/proc/PID/status` line starting with `field` (`VmHWM:`).
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut latencies = Latencies::new().unwrap();
        // 1 µs .. 100 ms in steps of 1 µs: p50 = 50 ms, p99 = 99 ms, p99.9 = 99.9 ms.
        let samples: Vec<u32> = (1..=100_000u32).map(|us| us * 1_000).collect();
        latencies.record_all(&samples);
        assert_eq!(latencies.len(), 100_000);
        let p = latencies.percentiles().unwrap();
        let close = |seen: f64, expected: f64| (seen - expected).abs() <= expected * 0.001;
        assert!(close(p.p50_us, 50_000.0), "{p:?}");
        assert!(close(p.p99_us, 99_000.0), "{p:?}");
        assert!(close(p.p999_us.unwrap(), 99_900.0), "{p:?}");
        assert!(close(p.max_us.unwrap(), 100_000.0), "{p:?}");
    }

    #[test]
    fn a_slow_tail_shows_in_the_high_percentiles_only() {
        let mut latencies = Latencies::new().unwrap();
        // 990 requests of 100 µs, 9 of 5 ms, 1 of 80 ms.
        for _ in 0..990 {
            latencies.record_ns(100_000);
        }
        for _ in 0..9 {
            latencies.record_ns(5_000_000);
        }
        latencies.record_ns(80_000_000);
        let p = latencies.percentiles().unwrap();
        assert!((p.p50_us - 100.0).abs() < 0.1, "{p:?}");
        assert!((p.p99_us - 100.0).abs() < 0.1, "{p:?}");
        assert!((p.p999_us.unwrap() - 5_000.0).abs() < 5.0, "{p:?}");
        assert!((p.max_us.unwrap() - 80_000.0).abs() < 80.0, "{p:?}");
    }

    #[test]
    fn no_latencies_no_percentiles_and_outliers_are_clamped() {
        let mut latencies = Latencies::new().unwrap();
        assert!(latencies.is_empty());
        assert_eq!(latencies.percentiles(), None);
        latencies.record_ns(0);
        latencies.record_ns(u64::MAX);
        assert_eq!(latencies.len(), 2);
        let max = latencies.percentiles().unwrap().max_us.unwrap();
        assert!((max - 60_000_000.0).abs() < 60_000.0, "{max}");
    }

    #[test]
    fn medians_and_spreads() {
        let odd = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        let even = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(even.median, 2.5);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN]), None);
        assert_eq!(Spread::of(&[f64::NAN, 5.0]).unwrap().median, 5.0);
        assert!((odd.relative_range() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn reads_proc_figures() {
        let stat = "1234 (bench cell) S 1 2 3 4 5 6 7 8 9 10 150 25 7 3 20 0 4 0 100 0 0";
        let times = parse_cpu_times(stat);
        assert_eq!(times.own, Duration::from_millis(1_750));
        assert_eq!(times.children, Duration::from_millis(100));
        assert_eq!(parse_cpu_times("garbage"), CpuTimes::default());
        let status = "Name:\tbench\nVmPeak:\t  200 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(12_345));
        assert_eq!(parse_vm_hwm("Name:\tbench\n"), None);
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(100));
        assert!(rss_kib().is_some_and(|kib| kib > 0));
        // This process is alive, so both readers see it.
        assert!(peak_rss_kib(None).is_some_and(|kib| kib > 0));
        assert!(peak_rss_kib(Some(std::process::id())).is_some());
    }
}
