//! Batches of metrics, sent on flush as newline-joined packets that each fit one datagram.

use std::cell::Cell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::client::MetricsClient;
use crate::shared_counter::SharedCounter;
use crate::tags::Tags;
use crate::wire::{Kind, line_prefix, metric_join, metric_join_into, write_line, write_timer_line};

/// A batch of metrics, like baseplate.py's `metrics.Batch`: collected in memory and sent by
/// [`flush`](Batch::flush) in as few packets as fit [`max_packet_size`].
///
/// Timers and gauges are written in the order they were recorded; counters are summed per name,
/// tags and sample rate and written after them, in the order first seen, as baseplate.py does.
/// Dropping a batch without flushing it discards it.
///
/// Values statsd cannot represent are dropped (with a `debug` log) rather than sent: non-finite
/// numbers, negative gauges (statsd reads `-5|g` as "subtract 5"; baseplate.py asserts) and
/// sample rates that are not above zero. A sample rate of 1 or more is written as unsampled.
///
/// ```
/// use std::time::Duration;
/// use baseplate_runtime_metrics::{MemoryTransport, MetricsClient, Tags};
///
/// let transport = MemoryTransport::new();
/// let client = MetricsClient::new(transport.clone(), "ns");
/// let mut batch = client.batch();
/// batch.counter("requests", 1.0);
/// batch.timer("work", Duration::from_micros(12_500));
/// batch.counter("requests", 1.0);
/// batch.counter_sampled("sampled", 1.0, 0.5);
/// batch.tagged(Tags::new().with("client", "foo")).gauge("pool.size", 50.0);
/// batch.flush();
/// assert_eq!(
///     transport.lines(),
///     [
///         "ns.work:12.5|ms",
///         "ns.pool.size,client=foo:50|g",
///         "ns.requests:2|c",
///         "ns.sampled:1|c|@0.5",
///     ]
/// );
/// ```
///
/// [`max_packet_size`]: crate::ClientOptions::max_packet_size
#[derive(Debug)]
pub struct Batch {
    client: MetricsClient,
    /// The client's namespace (shared, not copied, per batch) or a prefixed one of its own.
    namespace: Arc<str>,
    base_tags: Tags,
    /// Finished timer and gauge lines, in order.
    lines: Lines,
    /// Counter sums, in the order their names (with tags) were first seen.
    counters: Vec<CounterSums>,
    /// The counters' prefixes (names with tags), one after another: copied here, not shared
    /// with their [`MetricName`]s, whose reference counts every request would otherwise write.
    counter_prefixes: String,
    counter_index: HashMap<String, usize>,
    /// Counts for shared counters, added to them when the batch is flushed (after its lines).
    shared: Vec<SharedCounter>,
}

/// What a batch's text starts with room for: a request's timer and counter lines, its own and
/// its commands', take a few hundred bytes at most (about 130 for one command, untagged).
const TEXT_CAPACITY: usize = 512;

/// Up to this many counters a batch finds a counter by scanning; beyond, by its index.
const COUNTERS_SCANNED: usize = 16;

/// Finished lines, each ended by a newline: one buffer for a whole batch rather than a string
/// per line.
#[derive(Debug, Default)]
struct Lines {
    text: String,
    count: usize,
}

impl Lines {
    /// Appends the line `prefix:value|kind` (and `|@rate` below 1).
    fn push(&mut self, prefix: &str, value: f64, kind: Kind, sample_rate: f64) {
        self.make_room();
        write_line(&mut self.text, prefix, value, kind, sample_rate);
        self.end_line();
    }

    /// Appends the timer line `prefix:12.5|ms` (and `|@rate` below 1).
    fn push_timer(&mut self, prefix: &str, elapsed: Duration, sample_rate: f64) {
        self.make_room();
        write_timer_line(&mut self.text, prefix, elapsed, sample_rate);
        self.end_line();
    }

    fn make_room(&mut self) {
        if self.text.capacity() == 0 {
            // Room for a request's few lines at once, rather than growing line by line.
            self.text.reserve(TEXT_CAPACITY);
        }
    }

    fn end_line(&mut self) {
        self.text.push('\n');
        self.count += 1;
    }

    fn append(&mut self, other: &Lines) {
        self.text.push_str(&other.text);
        self.count += other.count;
    }

    /// The lines newline-joined, without the last one's newline.
    fn joined(&self) -> &str {
        self.text.strip_suffix('\n').unwrap_or(&self.text)
    }

    fn clear(&mut self) {
        self.text.clear();
        self.count = 0;
    }
}

/// The sums of one counter (name and tags), one per sample rate in the order first seen.
#[derive(Debug)]
struct CounterSums {
    /// Where its prefix is in the batch's `counter_prefixes`.
    prefix: Range<usize>,
    /// The sum at the first sample rate seen, as `(sample_rate, sum)`: usually the only one.
    first: (f64, f64),
    /// The sums at any other rates, in the order first seen.
    more: Vec<(f64, f64)>,
}

impl CounterSums {
    /// `(sample_rate, sum)` pairs, in the order first seen.
    fn sums(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        std::iter::once(self.first).chain(self.more.iter().copied())
    }

    fn add(&mut self, sample_rate: f64, delta: f64) {
        let sums = std::iter::once(&mut self.first).chain(self.more.iter_mut());
        match sums.into_iter().find(|(rate, _)| *rate == sample_rate) {
            Some((_, sum)) => *sum += delta,
            None => self.more.push((sample_rate, delta)),
        }
    }
}

/// A batch's buffers, kept by its thread once the batch is gone, for the thread's next batch: a
/// request's batch would otherwise allocate and free its text, its counters and their names.
#[derive(Debug, Default)]
struct Buffers {
    text: String,
    counters: Vec<CounterSums>,
    counter_prefixes: String,
    shared: Vec<SharedCounter>,
}

/// A kept buffer larger than this (a batch that grew for a large request) is freed instead.
const KEPT_CAPACITY: usize = 4 * TEXT_CAPACITY;

thread_local! {
    static SPARE: Cell<Option<Buffers>> = const { Cell::new(None) };
}

impl Buffers {
    /// The thread's spare buffers, or new ones.
    fn take() -> Self {
        SPARE.with(Cell::take).unwrap_or_default()
    }

    /// Keeps these buffers, emptied, as the thread's spare (unless it has one, or they grew
    /// large).
    fn keep(mut self) {
        if self.text.capacity() > KEPT_CAPACITY
            || self.counter_prefixes.capacity() > KEPT_CAPACITY
            || self.counters.capacity() > COUNTERS_SCANNED
            || self.shared.capacity() > COUNTERS_SCANNED
        {
            return;
        }
        self.text.clear();
        self.counters.clear();
        self.counter_prefixes.clear();
        self.shared.clear();
        // `try_with`: a batch dropped while its thread ends frees its buffers.
        let _ = SPARE.try_with(|spare| {
            let kept = spare.take().unwrap_or(self);
            spare.set(Some(kept));
        });
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        Buffers {
            text: std::mem::take(&mut self.lines.text),
            counters: std::mem::take(&mut self.counters),
            counter_prefixes: std::mem::take(&mut self.counter_prefixes),
            shared: std::mem::take(&mut self.shared),
        }
        .keep();
    }
}

impl Batch {
    pub(crate) fn new(client: MetricsClient) -> Self {
        let namespace = client.shared_namespace();
        let Buffers {
            text,
            counters,
            counter_prefixes,
            shared,
        } = Buffers::take();
        Self {
            client,
            namespace,
            base_tags: Tags::new(),
            lines: Lines { text, count: 0 },
            counters,
            counter_prefixes,
            counter_index: HashMap::new(),
            shared,
        }
    }

    /// Returns the batch with `prefix` joined to its namespace, as the reporter puts its metrics
    /// under `{namespace}.runtime`.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// let batch = MetricsClient::new(NullTransport, "ns").batch().with_prefix("runtime");
    /// assert_eq!(batch.namespace(), "ns.runtime");
    /// ```
    #[must_use]
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.namespace = Arc::from(metric_join([&*self.namespace, prefix]));
        self
    }

    /// Returns the batch with `tags` added to the tags of every metric it records from now on
    /// (baseplate.py's `batch.base_tags`). They come first, before any tag given when recording.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MemoryTransport, MetricsClient, Tags};
    ///
    /// let transport = MemoryTransport::new();
    /// let client = MetricsClient::new(transport.clone(), "ns");
    /// let mut batch = client.batch().with_base_tags(&Tags::new().with("hostname", "web-1"));
    /// batch.gauge("workers", 4.0);
    /// batch.flush();
    /// assert_eq!(transport.lines(), ["ns.workers,hostname=web-1:4|g"]);
    /// ```
    #[must_use]
    pub fn with_base_tags(mut self, tags: &Tags) -> Self {
        self.base_tags.merge(tags);
        self
    }

    /// The namespace metric names are joined to.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// assert_eq!(MetricsClient::new(NullTransport, "ns").batch().namespace(), "ns");
    /// ```
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The tags every metric of this batch carries first.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// assert!(MetricsClient::new(NullTransport, "ns").batch().base_tags().is_empty());
    /// ```
    #[must_use]
    pub fn base_tags(&self) -> &Tags {
        &self.base_tags
    }

    /// Records a timer, written in milliseconds: `name:12.5|ms`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// let mut batch = MetricsClient::new(NullTransport, "ns").batch();
    /// batch.timer("clients.foo.GET", Duration::from_micros(420));
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn timer(&mut self, name: &str, elapsed: Duration) {
        self.record_timer(name, None, elapsed, 1.0);
    }

    /// Records a timer of an event the caller samples at `sample_rate` (0 to 1):
    /// `name:12.5|ms|@0.5`, so that statsd counts the timer's events as it counts a sampled
    /// counter's.
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_runtime_metrics::{MemoryTransport, MetricsClient};
    ///
    /// let transport = MemoryTransport::new();
    /// let mut batch = MetricsClient::new(transport.clone(), "ns").batch();
    /// batch.timer_sampled("server.visit", Duration::from_micros(1200), 0.5);
    /// batch.flush();
    /// assert_eq!(transport.lines(), ["ns.server.visit:1.2|ms|@0.5"]);
    /// ```
    pub fn timer_sampled(&mut self, name: &str, elapsed: Duration, sample_rate: f64) {
        self.record_sampled_timer(name, None, elapsed, sample_rate);
    }

    /// Adds `delta` to a counter: `name:1|c`.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// let mut batch = MetricsClient::new(NullTransport, "ns").batch();
    /// batch.counter("requests", 1.0);
    /// batch.counter("requests", 1.0);
    /// assert_eq!(batch.len(), 1); // summed into one line: `ns.requests:2|c`
    /// ```
    pub fn counter(&mut self, name: &str, delta: f64) {
        self.record_counter(name, None, delta, 1.0);
    }

    /// Adds `delta` to a counter the caller samples at `sample_rate` (0 to 1): `name:1|c|@0.5`.
    /// The batch does not sample; it tells statsd the rate so that statsd scales the count.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// let mut batch = MetricsClient::new(NullTransport, "ns").batch();
    /// batch.counter_sampled("requests", 1.0, 0.5);
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn counter_sampled(&mut self, name: &str, delta: f64, sample_rate: f64) {
        self.record_counter(name, None, delta, sample_rate);
    }

    /// Records a timer under a name made ready with [`MetricsClient::metric_name`], at
    /// `sample_rate` (1 for every event): the same line as [`timer_sampled`](Self::timer_sampled)
    /// writes, without joining and checking the name again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_runtime_metrics::{MemoryTransport, MetricsClient};
    ///
    /// let transport = MemoryTransport::new();
    /// let client = MetricsClient::new(transport.clone(), "ns");
    /// let get = client.metric_name("clients.foo.GET");
    /// let mut batch = client.batch();
    /// batch.timer_named(&get, Duration::from_micros(420), 1.0);
    /// batch.counter_named(&client.metric_name("clients.foo.GET.success"), 1.0, 1.0);
    /// batch.flush();
    /// assert_eq!(transport.lines(), ["ns.clients.foo.GET:0.42|ms", "ns.clients.foo.GET.success:1|c"]);
    /// ```
    pub fn timer_named(&mut self, name: &MetricName, elapsed: Duration, sample_rate: f64) {
        if !self.fits(name) {
            return self.record_sampled_timer(&name.name, None, elapsed, sample_rate);
        }
        if let Some(rate) = writable_rate(&name.name, Kind::Timer, 0.0, sample_rate) {
            self.lines.push_timer(&name.ready, elapsed, rate);
        }
    }

    /// Adds `delta` to a counter under a name made ready with [`MetricsClient::metric_name`],
    /// sampled at `sample_rate` (1 for every event), as
    /// [`counter_sampled`](Self::counter_sampled) does.
    pub fn counter_named(&mut self, name: &MetricName, delta: f64, sample_rate: f64) {
        if !self.fits(name) {
            return self.record_counter(&name.name, None, delta, sample_rate);
        }
        if let Some(rate) = writable_rate(&name.name, Kind::Counter, delta, sample_rate) {
            self.add_to_counter(&name.ready, delta, rate);
        }
    }

    /// Adds 1 to `counter`, a counter summed in the client across batches, when this batch is
    /// flushed: after its lines are in the client, so the sum goes out with the packet that
    /// carries them or a later one. Dropped unflushed, the batch counts nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_runtime_metrics::{ClientOptions, MemoryTransport, MetricsClient};
    ///
    /// let transport = MemoryTransport::new();
    /// let options = ClientOptions::new().with_coalesce(Duration::from_secs(60));
    /// let client = MetricsClient::with_options(transport.clone(), "ns", options);
    /// let served = client.shared_counter("server.visit.success", 1.0).unwrap();
    /// let mut batch = client.batch();
    /// batch.count_shared(&served);
    /// batch.timer("server.visit", Duration::from_millis(2));
    /// client.flush_pending();
    /// assert!(transport.lines().is_empty(), "not counted before the batch's flush");
    /// batch.flush();
    /// client.flush_pending();
    /// assert_eq!(transport.lines(), ["ns.server.visit:2|ms", "ns.server.visit.success:1|c"]);
    /// ```
    pub fn count_shared(&mut self, counter: &SharedCounter) {
        self.shared.push(counter.clone());
    }

    /// Records a gauge's current value: `name:50|g`.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// let mut batch = MetricsClient::new(NullTransport, "ns").batch();
    /// batch.gauge("workers", 4.0);
    /// batch.gauge("workers", -1.0); // dropped: negative gauges mean "subtract" to statsd
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn gauge(&mut self, name: &str, value: f64) {
        self.record_gauge(name, None, value);
    }

    /// A view of this batch that adds `tags` (after the base tags) to every metric recorded
    /// through it.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MemoryTransport, MetricsClient, Tags};
    ///
    /// let transport = MemoryTransport::new();
    /// let client = MetricsClient::new(transport.clone(), "ns");
    /// let mut batch = client.batch();
    /// let mut tagged = batch.tagged(Tags::new().with("client", "foo"));
    /// tagged.gauge("pool.size", 50.0);
    /// tagged.gauge("pool.in_use", 3.0);
    /// batch.flush();
    /// assert_eq!(
    ///     transport.lines(),
    ///     ["ns.pool.size,client=foo:50|g", "ns.pool.in_use,client=foo:3|g"]
    /// );
    /// ```
    pub fn tagged(&mut self, tags: Tags) -> TaggedBatch<'_> {
        TaggedBatch { batch: self, tags }
    }

    /// How many lines the batch would send now.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// let mut batch = MetricsClient::new(NullTransport, "ns").batch();
    /// batch.counter("a", 1.0);
    /// batch.counter_sampled("a", 1.0, 0.5);
    /// assert_eq!(batch.len(), 2);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.lines.count
            + self
                .counters
                .iter()
                .map(|counter| 1 + counter.more.len())
                .sum::<usize>()
    }

    /// Whether the batch holds nothing to send.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport};
    ///
    /// assert!(MetricsClient::new(NullTransport, "ns").batch().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lines.count == 0 && self.counters.is_empty()
    }

    /// Sends everything recorded and empties the batch, which can then be used again.
    ///
    /// Lines are newline-joined into packets of at most
    /// [`max_packet_size`](crate::ClientOptions::max_packet_size) bytes, split only between lines;
    /// a line longer than that is sent alone (baseplate.py drops the whole batch when it does not
    /// fit one datagram). Send errors are counted by the client, never returned.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{ClientOptions, MemoryTransport, MetricsClient};
    ///
    /// let transport = MemoryTransport::new();
    /// let options = ClientOptions::new().with_max_packet_size(16);
    /// let client = MetricsClient::with_options(transport.clone(), "", options);
    /// let mut batch = client.batch();
    /// batch.gauge("a", 1.0);
    /// batch.gauge("b", 2.0);
    /// batch.gauge("c", 3.0);
    /// batch.flush();
    /// assert_eq!(transport.packets(), ["a:1|g\nb:2|g", "c:3|g"]);
    /// assert!(batch.is_empty());
    /// ```
    pub fn flush(&mut self) {
        for counter in self.counters.drain(..) {
            let prefix = &self.counter_prefixes[counter.prefix.clone()];
            for (sample_rate, sum) in counter.sums() {
                self.lines.push(prefix, sum, Kind::Counter, sample_rate);
            }
        }
        self.counter_prefixes.clear();
        self.counter_index.clear();
        self.client.send_lines(self.lines.joined());
        self.lines.clear();
        // Counted once the lines are in the client: the sums go out with their packet or a
        // later one, never ahead of them.
        for counter in self.shared.drain(..) {
            counter.increment();
        }
    }

    /// An empty batch with the same client, namespace and base tags.
    pub(crate) fn empty_like(&self) -> Batch {
        Batch {
            client: self.client.clone(),
            namespace: self.namespace.clone(),
            base_tags: self.base_tags.clone(),
            lines: Lines::default(),
            counters: Vec::new(),
            counter_prefixes: String::new(),
            counter_index: HashMap::new(),
            shared: Vec::new(),
        }
    }

    /// Moves everything `other` recorded into this batch, as if it had been recorded here.
    pub(crate) fn absorb(&mut self, mut other: Batch) {
        self.lines.append(&other.lines);
        self.shared.append(&mut other.shared);
        for counter in &other.counters {
            for (sample_rate, delta) in counter.sums() {
                let prefix = &other.counter_prefixes[counter.prefix.clone()];
                self.add_to_counter(prefix, delta, sample_rate);
            }
        }
    }

    /// Whether `name` was made ready for batches like this one: the same client's namespace,
    /// and no base tags of its own.
    fn fits(&self, name: &MetricName) -> bool {
        Arc::ptr_eq(&self.namespace, &name.namespace) && self.base_tags.is_empty()
    }

    fn prefix(&self, name: &str, extra_tags: Option<&Tags>) -> String {
        // Room for the tags, so that it is allocated once.
        let tags = self.base_tags.written_len() + extra_tags.map_or(0, Tags::written_len);
        let mut joined = String::with_capacity(self.namespace.len() + name.len() + tags + 1);
        metric_join_into(&mut joined, [&*self.namespace, name]);
        let name = joined;
        match extra_tags {
            Some(extra) if !extra.is_empty() => {
                let mut tags = self.base_tags.clone();
                tags.merge(extra);
                line_prefix(name, &tags)
            }
            _ => line_prefix(name, &self.base_tags),
        }
    }

    fn record_timer(
        &mut self,
        name: &str,
        extra_tags: Option<&Tags>,
        elapsed: Duration,
        sample_rate: f64,
    ) {
        let prefix = self.prefix(name, extra_tags);
        self.lines.push_timer(&prefix, elapsed, sample_rate);
    }

    fn record_sampled_timer(
        &mut self,
        name: &str,
        extra_tags: Option<&Tags>,
        elapsed: Duration,
        sample_rate: f64,
    ) {
        if let Some(rate) = writable_rate(name, Kind::Timer, 0.0, sample_rate) {
            self.record_timer(name, extra_tags, elapsed, rate);
        }
    }

    fn record_gauge(&mut self, name: &str, extra_tags: Option<&Tags>, value: f64) {
        if !value.is_finite() || value < 0.0 {
            tracing::debug!(
                metric = name,
                value,
                "dropped a gauge statsd cannot represent"
            );
            return;
        }
        let prefix = self.prefix(name, extra_tags);
        self.lines.push(&prefix, value, Kind::Gauge, 1.0);
    }

    fn record_counter(
        &mut self,
        name: &str,
        extra_tags: Option<&Tags>,
        delta: f64,
        sample_rate: f64,
    ) {
        if let Some(rate) = writable_rate(name, Kind::Counter, delta, sample_rate) {
            let prefix = self.prefix(name, extra_tags);
            self.add_to_counter(&prefix, delta, rate);
        }
    }

    fn add_to_counter(&mut self, prefix: &str, delta: f64, sample_rate: f64) {
        // A request's batch holds a handful of counters: a scan beats hashing (and keeps the
        // index's allocations) until there are many.
        let found = if self.counters.len() <= COUNTERS_SCANNED {
            let prefixes = &self.counter_prefixes;
            self.counters
                .iter()
                .position(|c| &prefixes[c.prefix.clone()] == prefix)
        } else {
            if self.counter_index.is_empty() {
                self.counter_index = (self.counters.iter().enumerate())
                    .map(|(index, c)| (self.counter_prefixes[c.prefix.clone()].to_owned(), index))
                    .collect();
            }
            self.counter_index.get(prefix).copied()
        };
        match found {
            Some(index) => self.counters[index].add(sample_rate, delta),
            None => {
                if !self.counter_index.is_empty() {
                    self.counter_index
                        .insert(prefix.to_owned(), self.counters.len());
                }
                if self.counter_prefixes.capacity() == 0 {
                    self.counter_prefixes.reserve(TEXT_CAPACITY / 2);
                }
                let start = self.counter_prefixes.len();
                self.counter_prefixes.push_str(prefix);
                self.counters.push(CounterSums {
                    prefix: start..self.counter_prefixes.len(),
                    first: (sample_rate, delta),
                    more: Vec::new(),
                });
            }
        }
    }
}

/// A metric name made ready once, by [`MetricsClient::metric_name`], for the batches of one
/// client: joined to the client's namespace and checked for characters statsd cannot take, so
/// [`Batch::timer_named`] and [`Batch::counter_named`] write it as it is. A batch with a prefix
/// or base tags of its own, or another client's, formats it from the plain name instead.
#[derive(Debug, Clone)]
pub struct MetricName {
    name: Box<str>,
    ready: Box<str>,
    namespace: Arc<str>,
}

impl MetricName {
    pub(crate) fn new(name: &str, batch: &Batch) -> Self {
        Self {
            name: name.into(),
            ready: batch.prefix(name, None).into_boxed_str(),
            namespace: Arc::clone(&batch.namespace),
        }
    }

    /// The name as given, before the namespace.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The name as its client writes it: the namespace joined, statsd's characters replaced.
    pub(crate) fn ready(&self) -> &str {
        &self.ready
    }
}

/// A view of a [`Batch`] that adds its tags to every metric recorded through it; made by
/// [`Batch::tagged`], and what a [`RuntimeMetricsSource`](crate::RuntimeMetricsSource) reports into.
///
/// ```
/// use baseplate_runtime_metrics::{MemoryTransport, MetricsClient, Tags};
///
/// let transport = MemoryTransport::new();
/// let client = MetricsClient::new(transport.clone(), "ns");
/// let mut batch = client.batch();
/// let mut by_client = batch.tagged(Tags::new().with("client", "foo"));
/// by_client.tagged(Tags::new().with("node", "n1")).counter("errors", 1.0);
/// batch.flush();
/// assert_eq!(transport.lines(), ["ns.errors,client=foo,node=n1:1|c"]);
/// ```
#[derive(Debug)]
pub struct TaggedBatch<'a> {
    batch: &'a mut Batch,
    tags: Tags,
}

impl TaggedBatch<'_> {
    /// The tags this view adds (after the batch's base tags).
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, Tags};
    ///
    /// let mut batch = MetricsClient::new(NullTransport, "ns").batch();
    /// let tagged = batch.tagged(Tags::new().with("client", "foo"));
    /// assert_eq!(tagged.tags().get("client"), Some("foo"));
    /// ```
    #[must_use]
    pub fn tags(&self) -> &Tags {
        &self.tags
    }

    /// Records a timer with this view's tags; see [`Batch::timer`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, Tags};
    ///
    /// let mut batch = MetricsClient::new(NullTransport, "ns").batch();
    /// batch.tagged(Tags::new().with("a", 1)).timer("work", Duration::from_millis(3));
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn timer(&mut self, name: &str, elapsed: Duration) {
        self.batch
            .record_timer(name, Some(&self.tags), elapsed, 1.0);
    }

    /// Records a sampled timer with this view's tags; see [`Batch::timer_sampled`]. What
    /// baseplate.py's tagged observer sends for a sampled request:
    ///
    /// ```
    /// use std::time::Duration;
    /// use baseplate_runtime_metrics::{MemoryTransport, MetricsClient, Tags};
    ///
    /// let transport = MemoryTransport::new();
    /// let mut batch = MetricsClient::new(transport.clone(), "").batch();
    /// let tags = Tags::new().with("client", "foo").with("endpoint", "GET");
    /// batch.tagged(tags).timer_sampled("baseplate.client.latency", Duration::from_micros(420), 0.5);
    /// batch.flush();
    /// assert_eq!(
    ///     transport.lines(),
    ///     ["baseplate.client.latency,client=foo,endpoint=GET:0.42|ms|@0.5"]
    /// );
    /// ```
    pub fn timer_sampled(&mut self, name: &str, elapsed: Duration, sample_rate: f64) {
        self.batch
            .record_sampled_timer(name, Some(&self.tags), elapsed, sample_rate);
    }

    /// Adds to a counter with this view's tags; see [`Batch::counter`].
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, Tags};
    ///
    /// let mut batch = MetricsClient::new(NullTransport, "ns").batch();
    /// batch.tagged(Tags::new().with("a", 1)).counter("requests", 1.0);
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn counter(&mut self, name: &str, delta: f64) {
        self.batch
            .record_counter(name, Some(&self.tags), delta, 1.0);
    }

    /// Adds to a sampled counter with this view's tags; see [`Batch::counter_sampled`].
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, Tags};
    ///
    /// let mut batch = MetricsClient::new(NullTransport, "ns").batch();
    /// batch.tagged(Tags::new().with("a", 1)).counter_sampled("requests", 1.0, 0.1);
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn counter_sampled(&mut self, name: &str, delta: f64, sample_rate: f64) {
        self.batch
            .record_counter(name, Some(&self.tags), delta, sample_rate);
    }

    /// Records a gauge with this view's tags; see [`Batch::gauge`].
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, Tags};
    ///
    /// let mut batch = MetricsClient::new(NullTransport, "ns").batch();
    /// batch.tagged(Tags::new().with("client", "foo")).gauge("pool.size", 50.0);
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn gauge(&mut self, name: &str, value: f64) {
        self.batch.record_gauge(name, Some(&self.tags), value);
    }

    /// A narrower view that adds `tags` after this view's tags.
    ///
    /// ```
    /// use baseplate_runtime_metrics::{MetricsClient, NullTransport, Tags};
    ///
    /// let mut batch = MetricsClient::new(NullTransport, "ns").batch();
    /// let mut outer = batch.tagged(Tags::new().with("client", "foo"));
    /// let inner = outer.tagged(Tags::new().with("node", "n1"));
    /// assert_eq!(inner.tags().len(), 2);
    /// ```
    pub fn tagged(&mut self, tags: Tags) -> TaggedBatch<'_> {
        let mut merged = self.tags.clone();
        merged.merge(&tags);
        TaggedBatch {
            batch: self.batch,
            tags: merged,
        }
    }
}

/// The rate to write a timer or counter line with, at most 1; `None` (logged at debug level)
/// when statsd cannot represent the event: a rate not above zero (NaN included), or a counter's
/// delta that is not finite (a timer passes 0).
fn writable_rate(name: &str, kind: Kind, delta: f64, sample_rate: f64) -> Option<f64> {
    if delta.is_finite() && sample_rate > 0.0 {
        return Some(sample_rate.min(1.0));
    }
    let kind = match kind {
        Kind::Timer => "timer",
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    tracing::debug!(
        metric = name,
        delta,
        sample_rate,
        "dropped a {kind} statsd cannot represent"
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientOptions;
    use crate::transport::MemoryTransport;

    #[test]
    fn a_threads_next_batch_reuses_the_last_ones_buffers_and_nothing_it_held() {
        let (client, transport) = client("ns");
        let mut first = client.batch();
        first.timer("a", Duration::from_millis(1));
        first.counter("b", 1.0);
        first.flush();
        first.gauge("dropped unflushed", 1.0);
        first.counter("dropped.too", 1.0);
        drop(first);

        let mut next = client.batch();
        assert!(next.lines.text.capacity() >= TEXT_CAPACITY);
        assert!(next.counter_prefixes.capacity() > 0 && next.counters.capacity() > 0);
        next.counter("c", 2.0);
        next.flush();
        assert_eq!(transport.lines(), ["ns.a:1|ms", "ns.b:1|c", "ns.c:2|c"]);
    }

    fn client(namespace: &str) -> (MetricsClient, MemoryTransport) {
        let transport = MemoryTransport::new();
        (MetricsClient::new(transport.clone(), namespace), transport)
    }

    #[test]
    fn ready_names_write_the_lines_plain_names_write_in_any_batch() {
        // Another client with the same namespace: its names are not the first one's.
        let (other, _) = client("ns");
        let (client, transport) = client("ns");
        let names = [
            client.metric_name("clients.foo.GET"),
            client.metric_name("bad:name|x"),
            other.metric_name("clients.foo.GET"),
        ];
        let tagged = || client.batch().with_base_tags(&Tags::new().with("k", "v"));
        let prefixed = || client.batch().with_prefix("p");
        for make in [
            &(|| client.batch()) as &dyn Fn() -> Batch,
            &tagged,
            &prefixed,
        ] {
            for name in &names {
                for rate in [1.0, 0.5, 0.0] {
                    let elapsed = Duration::from_micros(1250);
                    let (mut ready, mut plain) = (make(), make());
                    ready.timer_named(name, elapsed, rate);
                    ready.counter_named(name, 2.0, rate);
                    ready.counter_named(name, 1.0, rate);
                    plain.timer_sampled(name.as_str(), elapsed, rate);
                    plain.counter_sampled(name.as_str(), 2.0, rate);
                    plain.counter_sampled(name.as_str(), 1.0, rate);
                    ready.flush();
                    let ready_lines = transport.lines();
                    transport.clear();
                    plain.flush();
                    assert_eq!(ready_lines, transport.lines(), "{name:?} at {rate}");
                    transport.clear();
                }
            }
        }
    }

    #[test]
    fn exact_lines_for_each_kind() {
        let (client, transport) = client("ns");
        let mut batch = client.batch();
        batch.timer("t", Duration::from_micros(12_500));
        batch.timer("whole", Duration::from_secs(3));
        batch.timer("tiny", Duration::from_nanos(10));
        batch.gauge("g", 50.0);
        batch.gauge("half", 0.5);
        batch.counter("c", 1.0);
        batch.counter("down", -3.0);
        batch.counter_sampled("s", 2.0, 0.5);
        batch.counter_sampled("s", 2.0, 0.5);
        batch.counter_sampled("unsampled", 1.0, 1.0);
        batch.flush();
        assert_eq!(
            transport.lines(),
            [
                "ns.t:12.5|ms",
                "ns.whole:3000|ms",
                "ns.tiny:1e-05|ms",
                "ns.g:50|g",
                "ns.half:0.5|g",
                "ns.c:1|c",
                "ns.down:-3|c",
                "ns.s:4|c|@0.5",
                "ns.unsampled:1|c",
            ]
        );
    }

    #[test]
    fn counters_are_summed_per_name_tags_and_rate_in_first_seen_order() {
        let (client, transport) = client("ns");
        let mut batch = client.batch();
        batch.counter("a", 1.0);
        batch.counter("b", 1.0);
        batch.counter_sampled("a", 1.0, 0.5);
        batch.counter("a", 2.0);
        batch.tagged(Tags::new().with("k", "v")).counter("a", 5.0);
        batch.flush();
        assert_eq!(
            transport.lines(),
            ["ns.a:3|c", "ns.a:1|c|@0.5", "ns.b:1|c", "ns.a,k=v:5|c"]
        );
    }

    #[test]
    fn tags_follow_base_tags_in_order() {
        let (client, transport) = client("ns");
        let base = Tags::new().with("hostname", "web-1").with("PID", 4242);
        let mut batch = client.batch().with_prefix("runtime").with_base_tags(&base);
        batch
            .tagged(Tags::new().with("client", "foo"))
            .gauge("pool.size", 50.0);
        batch.gauge("plain", 1.0);
        batch.flush();
        assert_eq!(
            transport.lines(),
            [
                "ns.runtime.pool.size,hostname=web-1,PID=4242,client=foo:50|g",
                "ns.runtime.plain,hostname=web-1,PID=4242:1|g",
            ]
        );
    }

    #[test]
    fn many_counters_are_summed_in_the_order_first_seen() {
        // Past the scanned few, counters are found through the index; the lines are the same.
        let (client, transport) = client("ns");
        let mut batch = client.batch();
        for round in 0..3 {
            for i in 0..40 {
                batch.counter(&format!("c{i}"), 1.0);
                if round == 0 && i % 10 == 0 {
                    batch.counter_sampled(&format!("c{i}"), 1.0, 0.5);
                }
            }
        }
        batch.flush();
        let mut expected = Vec::new();
        for i in 0..40 {
            expected.push(format!("ns.c{i}:3|c"));
            if i % 10 == 0 {
                expected.push(format!("ns.c{i}:1|c|@0.5"));
            }
        }
        assert_eq!(transport.lines(), expected);

        // The next round of the same batch, with other counters in another order, must not
        // find the first round's positions in its index.
        let before = transport.lines().len();
        for round in 0..2 {
            for i in (0..30).rev() {
                batch.counter(&format!("d{i}"), 1.0);
                if round == 1 && i == 0 {
                    batch.counter("c0", 5.0);
                }
            }
        }
        batch.flush();
        let mut expected: Vec<String> = (0..30).rev().map(|i| format!("ns.d{i}:2|c")).collect();
        expected.push("ns.c0:5|c".to_owned());
        assert_eq!(transport.lines()[before..], expected);
    }

    #[test]
    fn namespace_joining_never_doubles_dots() {
        for (namespace, name, expected) in [
            ("ns", "a.b", "ns.a.b:1|g"),
            ("ns.", "a", "ns.a:1|g"),
            ("ns", ".a.", "ns.a:1|g"),
            (".ns.", "..a", "ns.a:1|g"),
            ("", "a", "a:1|g"),
            ("", ".a", "a:1|g"),
        ] {
            let (client, transport) = client(namespace);
            let mut batch = client.batch();
            batch.gauge(name, 1.0);
            batch.flush();
            assert_eq!(transport.lines(), [expected], "{namespace:?} + {name:?}");
        }
    }

    #[test]
    fn unrepresentable_values_are_dropped() {
        let (client, transport) = client("ns");
        let mut batch = client.batch();
        batch.gauge("negative", -1.0);
        batch.gauge("nan", f64::NAN);
        batch.counter("inf", f64::INFINITY);
        batch.counter_sampled("zero_rate", 1.0, 0.0);
        batch.counter_sampled("nan_rate", 1.0, f64::NAN);
        batch.counter_sampled("over_one", 1.0, 2.0);
        batch.gauge("zero", 0.0);
        batch.flush();
        assert_eq!(transport.lines(), ["ns.zero:0|g", "ns.over_one:1|c"]);
    }

    #[test]
    fn ten_thousand_metrics_split_into_full_packets_without_cut_or_loss() {
        let (client, transport) = client("service");
        let mut batch = client.batch();
        let mut expected = Vec::new();
        for i in 0..10_000 {
            let name = format!("metric.number_{i}");
            batch.gauge(&name, f64::from(i));
            expected.push(format!("service.{name}:{i}|g"));
        }
        batch.flush();

        let packets = transport.packets();
        assert!(packets.len() > 1);
        for packet in &packets {
            assert!(
                packet.len() <= crate::DEFAULT_MAX_PACKET_SIZE,
                "{}",
                packet.len()
            );
            assert!(!packet.starts_with('\n') && !packet.ends_with('\n'));
        }
        // Greedy packing: the next packet's first line would not have fitted in this one.
        for pair in packets.windows(2) {
            let first_line = pair[1].split('\n').next().unwrap();
            assert!(pair[0].len() + 1 + first_line.len() > crate::DEFAULT_MAX_PACKET_SIZE);
        }
        assert_eq!(transport.lines(), expected);
    }

    #[test]
    fn an_oversized_line_is_sent_alone() {
        let transport = MemoryTransport::new();
        let options = ClientOptions::new().with_max_packet_size(100);
        let client = MetricsClient::with_options(transport.clone(), "ns", options);
        let mut batch = client.batch();
        let long_name = "x".repeat(300);
        batch.gauge("before", 1.0);
        batch.gauge(&long_name, 2.0);
        batch.gauge("after", 3.0);
        batch.gauge("after2", 4.0);
        batch.flush();
        assert_eq!(
            transport.packets(),
            [
                "ns.before:1|g".to_owned(),
                format!("ns.{long_name}:2|g"),
                "ns.after:3|g\nns.after2:4|g".to_owned(),
            ]
        );
    }

    #[test]
    fn flush_empties_the_batch_and_an_empty_flush_sends_nothing() {
        let (client, transport) = client("ns");
        let mut batch = client.batch();
        batch.counter("a", 1.0);
        batch.flush();
        batch.flush();
        assert_eq!(transport.len(), 1);
        batch.counter("a", 1.0);
        batch.flush();
        assert_eq!(transport.lines(), ["ns.a:1|c", "ns.a:1|c"]);
    }

    #[test]
    fn absorbing_merges_counters_and_keeps_order() {
        let (client, transport) = client("ns");
        let mut batch = client.batch();
        batch.gauge("g1", 1.0);
        batch.counter("c", 1.0);
        let mut other = batch.empty_like();
        other.gauge("g2", 2.0);
        other.counter("c", 2.0);
        other.counter("d", 1.0);
        batch.absorb(other);
        batch.flush();
        assert_eq!(
            transport.lines(),
            ["ns.g1:1|g", "ns.g2:2|g", "ns.c:3|c", "ns.d:1|c"]
        );
    }
}
