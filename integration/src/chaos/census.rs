//! What the process holds, counted before a fault and after it to find leaks: the pool's counts,
//! the tokio runtime's alive tasks and the process's open file descriptors; and the CPU time it
//! used, to tell what a fault costs the client.

use std::fmt;
use std::time::Duration;

use baseplate::PoolStats;

/// One count of what the process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    /// The client's pool: commands in flight, waiters, blocking commands, cluster connections.
    pub pool: PoolStats,
    /// Tasks alive on the current tokio runtime (spawned and not finished).
    pub tasks: usize,
    /// Entries of `/proc/self/fd`: sockets, pipes, files; 0 where there is no `/proc`.
    pub fds: usize,
}

impl Census {
    /// Counts now, with `pool` the client's pool statistics; must run on a tokio runtime.
    pub fn take(pool: PoolStats) -> Census {
        Census {
            pool,
            tasks: tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            fds: std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count),
        }
    }

    /// Whether nothing is held that was not held at `before`: nothing in flight, waiting or
    /// blocking that was not then, and no more open connections, tasks or file descriptors
    /// (fewer is no leak: a connection the client opens again on its next use, say, or one
    /// opened while the restarted cluster's replicas had not rejoined yet, so to fewer nodes).
    pub fn holds_no_more_than(&self, before: &Census) -> bool {
        let (now, then) = (&self.pool, &before.pool);
        (now.in_use, now.waiting, now.blocking) == (then.in_use, then.waiting, then.blocking)
            && now.open_connections <= then.open_connections
            && self.tasks <= before.tasks
            && self.fds <= before.fds
    }
}

impl fmt::Display for Census {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pool = &self.pool;
        write!(
            f,
            "in_use {}, waiting {}, blocking {}, open_connections {}, alive tasks {}, open fds {}",
            pool.in_use, pool.waiting, pool.blocking, pool.open_connections, self.tasks, self.fds
        )
    }
}

/// Polls `count` every 50 ms for up to `within` until it holds no more than `before`; returns the
/// last count and how long it took (`None` when it never did).
pub async fn settles_to(
    before: &Census,
    within: Duration,
    mut count: impl FnMut() -> Census,
) -> (Census, Option<Duration>) {
    let mut now = count();
    let settled = crate::eventually(within, async || {
        now = count();
        now.holds_no_more_than(before)
    })
    .await;
    (now, settled)
}

/// The CPU time (user and system) the process has used so far, from `/proc/self/stat`; zero where
/// there is no `/proc`.
pub fn process_cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // The fields after the command name, which is in parentheses and may hold spaces: utime and
    // stime are the 14th and 15th fields of the line, the 12th and 13th after the name.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|field| field.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // The kernel reports in clock ticks, 100 a second on Linux (USER_HZ).
    Duration::from_millis(ticks * 10)
}
