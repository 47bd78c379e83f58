//! Crate root; the crate's documentation is its README.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod de;
mod error;
mod raw;
pub mod secret;
mod source;
pub mod value;
mod warning;

pub use error::{ConfigError, ValueError};
pub use raw::{ConfigView, DEFAULT_SECTION, RawConfig};
pub use value::{Endpoint, Percent, Timespan, Value};
pub use warning::{ConfigWarning, UnknownKeys};
