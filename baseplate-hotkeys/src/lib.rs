//! Crate root; the crate's documentation is its README.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod commands;
mod error;
mod query;
pub mod report;
mod sampling;
mod summary;
mod tracker;

pub use commands::{
    Blocking, Classification, CommandSpec, FirstKey, KeyPositions, all_commands, classify, command,
    command_of, command_spec, commands,
};
pub use error::TrackerError;
pub use query::{TrackedSet, top_keys};
pub use sampling::{SampleRate, seed_thread_rng};
pub use tracker::{HotKeyTracker, SET_TTL_SECONDS, TrackKeyMode, TrackerOptions, TrackerStats};
