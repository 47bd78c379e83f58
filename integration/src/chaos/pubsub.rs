//! The pub/sub traffic of the `pubsub-kill-primary` scenario: a publisher that sends numbered
//! messages at a steady rate through the client, a subscriber of the same client that receives
//! them, and the count of what was lost, inside and outside the failover window.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baseplate::{MonitoredClusterRedisConnection, Subscriber};
use futures_util::StreamExt as _;
use redis::AsyncCommands as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A channel the publisher sends to and the subscriber listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Its name.
    pub name: String,
    /// Sharded (`SSUBSCRIBE`/`SPUBLISH`) or classic (`SUBSCRIBE`/`PUBLISH`).
    pub sharded: bool,
}

/// One message the publisher sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Its number, from 0, per channel.
    pub n: u64,
    /// When the publish call started, from the origin.
    pub at: Duration,
    /// Whether the node acknowledged it (otherwise the call failed).
    pub acknowledged: bool,
}

/// What happened to one channel's messages.
#[derive(Debug, Clone)]
pub struct ChannelRecords {
    /// The channel.
    pub channel: Channel,
    /// Every publish, in order.
    pub sent: Vec<Sent>,
    /// How many times each number arrived, and when it first did (from the origin).
    pub received: Arrivals,
}

/// Per message number: how many times it arrived, and when it first did (from the origin).
pub type Arrivals = BTreeMap<u64, (usize, Duration)>;

/// A channel's losses around the death of the primary holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Losses {
    /// The publish time of the first message sent after the node was gone that arrived (on
    /// whichever node the subscriber subscribed again); `None` when none did.
    pub first_after_kill: Option<Duration>,
    /// When the subscriber received again for good, closing the window: the publish time of the
    /// first message sent after the failover was over that arrived; `None` when none did.
    pub resumed_at: Option<Duration>,
    /// Acknowledged messages published inside the window (from [`BUFFERED`] before the kill
    /// until the subscriber received again after the failover).
    pub in_window: usize,
    /// Of those, the ones that never arrived.
    pub lost_in_window: usize,
    /// When the first and the last message lost inside the window were published.
    pub lost_in_window_between: Option<(Duration, Duration)>,
    /// Acknowledged messages published outside the window.
    pub outside: usize,
    /// Of those, the ones that never arrived.
    pub lost_outside: usize,
    /// When the first and the last message lost outside the window were published.
    pub lost_outside_between: Option<(Duration, Duration)>,
    /// Publishes that failed (the client returned an error).
    pub failed_publishes: usize,
    /// Messages published inside the window that arrived more than once: a publish whose node
    /// ran it and died before its reply came back may be sent again by redis-rs, which retries a
    /// request whose connection dropped, so the message goes out twice.
    pub duplicated_in_window: usize,
    /// Messages published outside the window that arrived more than once.
    pub duplicated_outside: usize,
}

/// How long before a primary is killed a message may have been acknowledged and still sit in the
/// killed node's buffers (or on the cluster bus to it), never to reach its subscribers.
pub const BUFFERED: Duration = Duration::from_millis(100);

impl ChannelRecords {
    /// The channel's losses when its node was killed at `fault_at`, was gone at `killed_at`, and
    /// the failover was over at `healed_at` (if it ended).
    pub fn losses(
        &self,
        fault_at: Duration,
        killed_at: Duration,
        healed_at: Option<Duration>,
    ) -> Losses {
        let window_start = fault_at.saturating_sub(BUFFERED);
        let first_received_after = |after: Duration| {
            self.sent
                .iter()
                .filter(|s| s.at > after && self.received.contains_key(&s.n))
                .map(|s| s.at)
                .next()
        };
        let over = healed_at.map_or(killed_at, |healed| healed.max(killed_at));
        let resumed_at = first_received_after(over);
        let in_window =
            |s: &Sent| s.at >= window_start && resumed_at.is_none_or(|resumed| s.at < resumed);
        let mut losses = Losses {
            first_after_kill: first_received_after(killed_at),
            resumed_at,
            in_window: 0,
            lost_in_window: 0,
            lost_in_window_between: None,
            outside: 0,
            lost_outside: 0,
            lost_outside_between: None,
            failed_publishes: self.sent.iter().filter(|s| !s.acknowledged).count(),
            duplicated_in_window: 0,
            duplicated_outside: 0,
        };
        // Failed publishes too: the node may have run one whose reply was lost.
        for sent in &self.sent {
            if self
                .received
                .get(&sent.n)
                .is_some_and(|(times, _)| *times > 1)
            {
                if in_window(sent) {
                    losses.duplicated_in_window += 1;
                } else {
                    losses.duplicated_outside += 1;
                }
            }
        }
        let widen = |between: &mut Option<(Duration, Duration)>, at: Duration| {
            let (first, _) = between.unwrap_or((at, at));
            *between = Some((first, at));
        };
        for sent in self.sent.iter().filter(|s| s.acknowledged) {
            let lost = !self.received.contains_key(&sent.n);
            if in_window(sent) {
                losses.in_window += 1;
                losses.lost_in_window += usize::from(lost);
                if lost {
                    widen(&mut losses.lost_in_window_between, sent.at);
                }
            } else {
                losses.outside += 1;
                losses.lost_outside += usize::from(lost);
                if lost {
                    widen(&mut losses.lost_outside_between, sent.at);
                }
            }
        }
        losses
    }
}

/// The running publishers and subscriber.
#[derive(Debug)]
pub struct PubsubTraffic {
    stop: watch::Sender<bool>,
    publisher: JoinHandle<Vec<Vec<Sent>>>,
    receiver: JoinHandle<()>,
    received: Arc<Mutex<Vec<Arrivals>>>,
    channels: Vec<Channel>,
}

impl PubsubTraffic {
    /// Subscribes to `channels` with a subscriber of `foo`'s and starts publishing a numbered
    /// message to each, `rate` times per second, through `foo`; times are measured from `origin`.
    ///
    /// # Panics
    /// When the subscriber cannot be opened or subscribe (the cluster is healthy at this point).
    pub async fn start(
        foo: MonitoredClusterRedisConnection,
        channels: Vec<Channel>,
        rate: f64,
        origin: Instant,
    ) -> PubsubTraffic {
        let mut subscriber = foo.subscriber().await.expect("a subscriber");
        for channel in &channels {
            let subscribed = if channel.sharded {
                subscriber.ssubscribe(&channel.name).await
            } else {
                subscriber.subscribe(&channel.name).await
            };
            subscribed.expect("subscribing before the fault");
        }
        let received = Arc::new(Mutex::new(vec![BTreeMap::new(); channels.len()]));
        let receiver = tokio::spawn(receive(
            subscriber,
            channels.clone(),
            Arc::clone(&received),
            origin,
        ));
        let (stop, stopped) = watch::channel(false);
        let publisher = tokio::spawn(publish(foo, channels.clone(), rate, origin, stopped));
        PubsubTraffic {
            stop,
            publisher,
            receiver,
            received,
            channels,
        }
    }

    /// Stops publishing, waits (up to `drain`) until every acknowledged message arrived, and
    /// returns each channel's records.
    ///
    /// # Panics
    /// When the publisher panicked.
    pub async fn finish(self, drain: Duration) -> Vec<ChannelRecords> {
        let _ = self.stop.send(true);
        let sent = self.publisher.await.expect("the publisher panicked");
        let all_in = || {
            let received = self.received.lock().unwrap_or_else(|e| e.into_inner());
            sent.iter().zip(received.iter()).all(|(sent, received)| {
                sent.iter()
                    .filter(|s| s.acknowledged)
                    .all(|s| received.contains_key(&s.n))
            })
        };
        crate::eventually(drain, async || all_in()).await;
        // Dropping the subscriber closes its connection.
        self.receiver.abort();
        let _ = self.receiver.await;
        let received =
            std::mem::take(&mut *self.received.lock().unwrap_or_else(|e| e.into_inner()));
        self.channels
            .into_iter()
            .zip(sent)
            .zip(received)
            .map(|((channel, sent), received)| ChannelRecords {
                channel,
                sent,
                received,
            })
            .collect()
    }
}

async fn publish(
    foo: MonitoredClusterRedisConnection,
    channels: Vec<Channel>,
    rate: f64,
    origin: Instant,
    stopped: watch::Receiver<bool>,
) -> Vec<Vec<Sent>> {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Each publish is a task of its own, so that one held up by the fault (until the client's
    // timeout) delays neither the next ones nor the other channel's: the rate stays steady.
    let mut publishes = tokio::task::JoinSet::new();
    let mut n = 0;
    while !*stopped.borrow() {
        ticks.tick().await;
        for (index, channel) in channels.iter().enumerate() {
            let mut foo = foo.clone();
            let channel = channel.clone();
            publishes.spawn(async move {
                let at = origin.elapsed();
                let result: redis::RedisResult<i64> = if channel.sharded {
                    foo.spublish(&channel.name, n).await
                } else {
                    foo.publish(&channel.name, n).await
                };
                let acknowledged = result.is_ok();
                (
                    index,
                    Sent {
                        n,
                        at,
                        acknowledged,
                    },
                )
            });
        }
        n += 1;
    }
    let mut sent = vec![Vec::new(); channels.len()];
    while let Some(done) = publishes.join_next().await {
        if let Ok((index, one)) = done {
            sent[index].push(one);
        }
    }
    for channel in &mut sent {
        channel.sort_by_key(|s| s.n);
    }
    sent
}

async fn receive(
    mut subscriber: Subscriber,
    channels: Vec<Channel>,
    received: Arc<Mutex<Vec<Arrivals>>>,
    origin: Instant,
) {
    while let Some(message) = subscriber.next().await {
        let at = origin.elapsed();
        let Some(index) = channels
            .iter()
            .position(|c| c.name == message.get_channel_name())
        else {
            continue;
        };
        let Ok(n) = std::str::from_utf8(message.get_payload_bytes())
            .unwrap_or("")
            .parse::<u64>()
        else {
            continue;
        };
        let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
        let entry = received[index].entry(n).or_insert((0, at));
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn losses_are_split_at_the_fault_and_at_the_first_message_that_arrives_again() {
        // One message every 50 ms, numbers 0 to 29; 24 to 27 (1.2 s to 1.35 s) failed to
        // publish; the fault at 1 s, so the window opens at 0.9 s (number 18).
        let sent: Vec<Sent> = (0..30)
            .map(|n| Sent {
                n,
                at: ms(n * 50),
                acknowledged: !(24..28).contains(&n),
            })
            .collect();
        let mut received: BTreeMap<u64, (usize, Duration)> =
            (0..19).map(|n| (n, (1, ms(n * 50)))).collect();
        received.insert(3, (2, ms(150)));
        received.insert(18, (2, ms(900)));
        let mut records = ChannelRecords {
            channel: Channel {
                name: "c".into(),
                sharded: true,
            },
            sent,
            received,
        };
        // Nothing published after the fault arrived: the window never closes.
        let losses = records.losses(ms(1_000), ms(1_010), None);
        assert_eq!(losses.resumed_at, None);
        assert_eq!((losses.in_window, losses.lost_in_window), (8, 7));
        assert_eq!((losses.outside, losses.lost_outside), (18, 0));
        assert_eq!(losses.failed_publishes, 4);
        // Number 3 (150 ms) came twice before the window, number 18 (900 ms) twice inside it.
        assert_eq!(
            (losses.duplicated_outside, losses.duplicated_in_window),
            (1, 1)
        );

        // Numbers 28 and 29 (1.4 s on) arrive: the window closes at 1.4 s.
        for n in 28..30 {
            records.received.insert(n, (1, ms(n * 50)));
        }
        let losses = records.losses(ms(1_000), ms(1_010), None);
        assert_eq!(losses.resumed_at, Some(ms(1_400)));
        assert_eq!((losses.in_window, losses.lost_in_window), (6, 5));
        assert_eq!((losses.outside, losses.lost_outside), (20, 0));

        // With the failover over at 1.42 s, the window closes at 1.45 s, the first message
        // published after it that arrived; the first to arrive after the kill came at 1.4 s.
        let losses = records.losses(ms(1_000), ms(1_010), Some(ms(1_420)));
        assert_eq!(losses.first_after_kill, Some(ms(1_400)));
        assert_eq!(losses.resumed_at, Some(ms(1_450)));
        assert_eq!((losses.in_window, losses.lost_in_window), (7, 5));
        assert_eq!(losses.lost_in_window_between, Some((ms(950), ms(1_150))));

        // A message lost before the window is a loss outside it.
        records.received.remove(&2);
        let losses = records.losses(ms(1_000), ms(1_010), None);
        assert_eq!(losses.lost_outside, 1);
        assert_eq!(losses.lost_outside_between, Some((ms(100), ms(100))));
    }
}
