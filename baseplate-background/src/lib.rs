//! Crate root; the crate's documentation is its README.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod start;
mod warn;

pub use start::StartOnce;
pub use warn::WarnLimiter;
