//! `StartOnce`: background work started at the first use inside a tokio runtime, and only once.

use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};

use tokio::runtime::Handle;

/// Holds what starting a piece of background work gave (a task's handle, a started tracker, or
/// nothing at all), once it has been started on a tokio runtime.
///
/// [`get_or_start`](Self::get_or_start) starts it at the first call made inside a runtime; calls
/// outside one start nothing and leave the next call to try again. Two first calls at once start
/// it once: the second waits for the first and gets what it started.
///
/// ```
/// use baseplate_background::StartOnce;
///
/// let ticker: StartOnce<tokio::task::JoinHandle<()>> = StartOnce::new();
/// // Before the runtime: nothing starts.
/// assert!(ticker.get_or_start(|runtime| Some(runtime.spawn(async {}))).is_none());
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// runtime.block_on(async {
///     assert!(ticker.get_or_start(|runtime| Some(runtime.spawn(async {}))).is_some());
/// });
/// assert!(ticker.get().is_some());
/// ```
pub struct StartOnce<T> {
    started: OnceLock<T>,
    /// Held while a start runs, so that concurrent first calls start the work once.
    starting: Mutex<()>,
}

impl<T> StartOnce<T> {
    /// Nothing started yet.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            started: OnceLock::new(),
            starting: Mutex::new(()),
        }
    }

    /// What the start gave, if the work has been started.
    #[must_use]
    pub fn get(&self) -> Option<&T> {
        self.started.get()
    }

    /// What the start gave: at once when the work has been started (one atomic load), else, inside
    /// a tokio runtime, what `start` gives now on that runtime's handle.
    ///
    /// `None` when there is no runtime (`start` is not called), or when `start` gives `None`
    /// (it could not start the work this time): either way the next call tries again. `start`
    /// must not call `get_or_start` on the same `StartOnce`.
    ///
    /// ```
    /// use baseplate_background::StartOnce;
    ///
    /// let once = StartOnce::new();
    /// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let _inside = runtime.enter();
    /// assert_eq!(once.get_or_start(|_| None::<u8>), None, "declined: tried again next time");
    /// assert_eq!(once.get_or_start(|_| Some(1)), Some(&1));
    /// assert_eq!(once.get_or_start(|_| Some(2)), Some(&1));
    /// ```
    pub fn get_or_start(&self, start: impl FnOnce(&Handle) -> Option<T>) -> Option<&T> {
        if let Some(started) = self.started.get() {
            return Some(started);
        }
        let runtime = Handle::try_current().ok()?;
        let _starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        // Another caller may have started it while this one waited.
        if let Some(started) = self.started.get() {
            return Some(started);
        }
        let started = start(&runtime)?;
        Some(self.started.get_or_init(|| started))
    }
}

impl<T> Default for StartOnce<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for StartOnce<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StartOnce")
            .field(&self.started.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn outside_a_runtime_nothing_starts_and_the_next_call_inside_one_does() {
        let once = StartOnce::new();
        let mut called = false;
        assert_eq!(
            once.get_or_start(|_| {
                called = true;
                Some(1)
            }),
            None
        );
        assert!(!called, "start runs only on a runtime");
        assert_eq!(once.get(), None);

        let runtime = runtime();
        let _inside = runtime.enter();
        assert_eq!(once.get_or_start(|_| Some(1)), Some(&1));
        assert_eq!(once.get(), Some(&1));
    }

    #[test]
    fn started_work_is_not_started_again() {
        let once = StartOnce::new();
        let runtime = runtime();
        let _inside = runtime.enter();
        assert_eq!(once.get_or_start(|_| Some("first")), Some(&"first"));
        let mut called = false;
        assert_eq!(
            once.get_or_start(|_| {
                called = true;
                Some("second")
            }),
            Some(&"first")
        );
        assert!(!called);
    }

    #[test]
    fn a_start_that_gives_nothing_is_tried_again() {
        let once = StartOnce::new();
        let runtime = runtime();
        let _inside = runtime.enter();
        let mut attempts = 0;
        assert_eq!(
            once.get_or_start(|_| {
                attempts += 1;
                None::<u8>
            }),
            None
        );
        assert_eq!(
            once.get_or_start(|_| {
                attempts += 1;
                Some(7)
            }),
            Some(&7)
        );
        assert_eq!(attempts, 2);
    }

    #[test]
    fn the_start_spawns_on_the_current_runtime() {
        let once = StartOnce::new();
        let runtime = runtime();
        let (sent, received) = tokio::sync::oneshot::channel();
        let answer = runtime.block_on(async {
            once.get_or_start(|runtime| Some(runtime.spawn(async move { sent.send(42) })))
                .expect("on a runtime");
            received.await
        });
        assert_eq!(answer, Ok(42));
    }

    #[test]
    fn concurrent_first_calls_start_once() {
        let once = Arc::new(StartOnce::new());
        let starts = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (once, starts) = (Arc::clone(&once), Arc::clone(&starts));
                let handle = runtime.handle().clone();
                std::thread::spawn(move || {
                    let _inside = handle.enter();
                    *once
                        .get_or_start(|_| Some(starts.fetch_add(1, Ordering::SeqCst)))
                        .expect("on a runtime")
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), 0, "every caller sees the one start");
        }
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }
}
