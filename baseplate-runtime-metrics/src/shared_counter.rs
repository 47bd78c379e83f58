//! Counters that many batches add to, summed in the client and written once per packet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::wire::{Kind, write_line};

/// A counter that many batches add to (a request counter every request bumps), summed in its
/// client and written into the next packet the client sends, `name:57|c`, instead of a
/// `name:1|c` line in each batch. statsd adds up a counter's lines, so it aggregates the same
/// sums; the packets carry fewer lines and the requests format fewer.
///
/// The sum goes out with the next packet that leaves the client (full, after the coalescing
/// delay, on [`MetricsClient::flush_pending`](crate::MetricsClient::flush_pending) or when the
/// client is dropped). A batch counts with [`Batch::count_shared`](crate::Batch::count_shared),
/// which adds when the batch is flushed: a count then goes out with the batch's lines or after
/// them, never ahead of them. Made by
/// [`MetricsClient::shared_counter`](crate::MetricsClient::shared_counter).
///
/// ```
/// use std::time::Duration;
/// use baseplate_runtime_metrics::{ClientOptions, MemoryTransport, MetricsClient};
///
/// let transport = MemoryTransport::new();
/// let options = ClientOptions::new().with_coalesce(Duration::from_secs(60));
/// let client = MetricsClient::with_options(transport.clone(), "ns", options);
/// let served = client.shared_counter("server.visit.success", 1.0).unwrap();
/// for _ in 0..3 {
///     let mut batch = client.batch();
///     batch.timer("server.visit", Duration::from_millis(2));
///     batch.count_shared(&served);
///     batch.flush();
/// }
/// client.flush_pending();
/// assert_eq!(
///     transport.lines(),
///     [
///         "ns.server.visit:2|ms",
///         "ns.server.visit:2|ms",
///         "ns.server.visit:2|ms",
///         "ns.server.visit.success:3|c",
///     ]
/// );
/// ```
#[derive(Debug, Clone)]
pub struct SharedCounter {
    cell: Arc<CounterCell>,
    counted: Arc<Counted>,
}

/// One shared counter's line up to its value, and its count since it was last written.
#[derive(Debug)]
struct CounterCell {
    prefix: Box<str>,
    sample_rate: f64,
    count: AtomicU64,
}

/// A client's shared counters that have a count to write, in the order they were first added to
/// since they were last written.
#[derive(Debug, Default)]
pub(crate) struct Counted(Mutex<Vec<Arc<CounterCell>>>);

impl SharedCounter {
    /// A counter written as `prefix:N|c` (and `|@sample_rate` below 1) into `counted`'s client's
    /// packets.
    pub(crate) fn new(prefix: Box<str>, sample_rate: f64, counted: Arc<Counted>) -> Self {
        Self {
            cell: Arc::new(CounterCell {
                prefix,
                sample_rate,
                count: AtomicU64::new(0),
            }),
            counted,
        }
    }

    /// Adds 1 now: one event, as `name:1|c` in a batch would count it (a count that belongs
    /// with a batch's lines goes through [`Batch::count_shared`](crate::Batch::count_shared)).
    pub fn increment(&self) {
        // The first count since the counter was last written puts it on the list; the writer
        // takes the list before it zeroes the counts, so a counter is on it at most once.
        if self.cell.count.fetch_add(1, Ordering::Relaxed) == 0 {
            self.counted.lock().push(Arc::clone(&self.cell));
        }
    }
}

impl Counted {
    /// Hands each counted counter's line (`prefix:N|c`) to `write`, in the order the counters were
    /// first added to, and starts their counts again from 0.
    pub(crate) fn write_all(&self, mut write: impl FnMut(&str)) {
        let cells = std::mem::take(&mut *self.lock());
        let mut line = String::new();
        for cell in cells {
            let count = cell.count.swap(0, Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            line.clear();
            // Exact: no counter reaches 2^53 between two packets.
            #[allow(clippy::cast_precision_loss)]
            let count = count as f64;
            write_line(
                &mut line,
                &cell.prefix,
                count,
                Kind::Counter,
                cell.sample_rate,
            );
            write(&line);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<CounterCell>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
