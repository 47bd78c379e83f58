//! Configuration values: the [`Value`] stored for a key, baseplate's value parsers
//! (`parse_integer`, `parse_timespan`, ...) and the [`Timespan`], [`Percent`] and [`Endpoint`]
//! types that deserialise from them.
//!
//! The parsers accept what `baseplate.lib.config` accepts, so a config written for a Python
//! service means the same here; where baseplate is loose in a way that hides mistakes (a port of
//! 99999, an IPv6 address without brackets), these report an error instead.

use std::fmt;
use std::marker::PhantomData;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::error::ValueError;
use crate::secret;

/// The value of one configuration key.
///
/// INI files give only strings; TOML files keep their native integers, floats, booleans and
/// arrays (datetimes become strings). Typed parsing accepts a string wherever a number or a
/// boolean is expected, so both sources deserialise into the same structs.
///
/// `Debug` and `Display` hide URL passwords (`redis://:***@host`).
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A string, as every INI value is.
    String(String),
    /// A TOML integer.
    Integer(i64),
    /// A TOML float.
    Float(f64),
    /// A TOML boolean.
    Boolean(bool),
    /// A TOML array.
    List(Vec<Value>),
}

impl Value {
    /// The string, if this is a [`Value::String`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baseplate_config::Value;
    ///
    /// assert_eq!(Value::from("3 seconds").as_str(), Some("3 seconds"));
    /// assert_eq!(Value::from(3).as_str(), None);
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The items, if this is a [`Value::List`].
    ///
    /// # Examples
    ///
    /// ```
    /// use baseplate_config::Value;
    ///
    /// let list = Value::from(vec![1, 2]);
    /// assert_eq!(list.as_list(), Some(&[Value::from(1), Value::from(2)][..]));
    /// ```
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Self::List(items) => Some(items),
            _ => None,
        }
    }

    /// The name of this value's kind: `string`, `integer`, `float`, `boolean` or `list`.
    ///
    /// # Examples
    ///
    /// ```
    /// use baseplate_config::Value;
    ///
    /// assert_eq!(Value::from(true).type_name(), "boolean");
    /// ```
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::String(_) => "string",
            Self::Integer(_) => "integer",
            Self::Float(_) => "float",
            Self::Boolean(_) => "boolean",
            Self::List(_) => "list",
        }
    }
}

impl fmt::Display for Value {
    /// Shows the value as configured (lists as `[a, b]`), with URL passwords redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => f.write_str(&secret::redact_url(s)),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Boolean(b) => write!(f, "{b}"),
            Self::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => f
                .debug_tuple("String")
                .field(&secret::redact_url(s))
                .finish(),
            Self::Integer(i) => f.debug_tuple("Integer").field(i).finish(),
            Self::Float(x) => f.debug_tuple("Float").field(x).finish(),
            Self::Boolean(b) => f.debug_tuple("Boolean").field(b).finish(),
            Self::List(items) => f.debug_tuple("List").field(items).finish(),
        }
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Self::String(value.clone())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::String(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Self::Boolean(value)
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Self::Float(value)
    }
}

impl From<f32> for Value {
    fn from(value: f32) -> Self {
        Self::Float(f64::from(value))
    }
}

macro_rules! value_from_integer {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Value {
            fn from(value: $ty) -> Self {
                Self::Integer(i64::from(value))
            }
        }
    )*};
}

value_from_integer!(i8, i16, i32, i64, u8, u16, u32);

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Self {
        Self::List(items.into_iter().map(Into::into).collect())
    }
}

/// Parses baseplate's `String`: any text that is not empty.
///
/// # Errors
///
/// An empty `text`.
///
/// # Examples
///
/// ```
/// use baseplate_config::value::parse_string;
///
/// assert_eq!(parse_string("hello").unwrap(), "hello");
/// assert_eq!(parse_string("").unwrap_err().to_string(), r#"invalid string "": no value specified"#);
/// ```
pub fn parse_string(text: &str) -> Result<String, ValueError> {
    if text.is_empty() {
        return Err(ValueError::new("string", text, "no value specified"));
    }
    Ok(text.to_owned())
}

/// Parses baseplate's `Integer`: a base-10 whole number that fits an `i64`, with an optional sign
/// and surrounding whitespace; `_` may separate digits, as in Python (`1_000`).
///
/// # Errors
///
/// Text that is not a whole number, or one outside the range of `i64`.
///
/// # Examples
///
/// ```
/// use baseplate_config::value::parse_integer;
///
/// assert_eq!(parse_integer(" -42 ").unwrap(), -42);
/// assert_eq!(
///     parse_integer("lots").unwrap_err().to_string(),
///     r#"invalid integer "lots": expected a whole number in base 10"#
/// );
/// ```
pub fn parse_integer(text: &str) -> Result<i64, ValueError> {
    let n = parse_whole_number(text).map_err(|reason| ValueError::new("integer", text, reason))?;
    i64::try_from(n).map_err(|_| ValueError::new("integer", text, out_of_range::<i64>()))
}

/// Parses baseplate's `Float`: a decimal number such as `0.01`, `-3`, `1e-3`, `inf` or `nan`,
/// with surrounding whitespace allowed.
///
/// # Errors
///
/// Text that is not a number.
///
/// # Examples
///
/// ```
/// use baseplate_config::value::parse_float;
///
/// assert_eq!(parse_float("0.01").unwrap(), 0.01);
/// assert!(parse_float("a lot").is_err());
/// ```
pub fn parse_float(text: &str) -> Result<f64, ValueError> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| ValueError::new("float", text, "expected a number"))
}

/// Parses baseplate's `Boolean`: `true` or `false` in any case, and nothing else (not `yes`, not
/// `1`), with surrounding whitespace allowed.
///
/// # Errors
///
/// Anything other than `true` or `false`.
///
/// # Examples
///
/// ```
/// use baseplate_config::value::parse_boolean;
///
/// assert!(parse_boolean("True").unwrap());
/// assert_eq!(
///     parse_boolean("yes").unwrap_err().to_string(),
///     r#"invalid boolean "yes": expected true or false"#
/// );
/// ```
pub fn parse_boolean(text: &str) -> Result<bool, ValueError> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if trimmed.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(ValueError::new("boolean", text, "expected true or false"))
    }
}

/// Parses baseplate's `Timespan`: `<count> <unit>`, such as `3 seconds` or `1 day`.
///
/// The count is a whole number (see [`parse_integer`]) and must not be negative. The unit is
/// `millisecond`, `second`, `minute`, `hour` or `day`, in any case; trailing `s` are stripped
/// before the unit is looked up, as baseplate does, so plurals work.
///
/// # Errors
///
/// Text that is not two words, a count that is not a whole number or is negative, an unknown
/// unit, or a span too long for a [`Duration`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use baseplate_config::value::parse_timespan;
///
/// assert_eq!(parse_timespan("3 seconds").unwrap(), Duration::from_secs(3));
/// assert_eq!(parse_timespan("250 Milliseconds").unwrap(), Duration::from_millis(250));
/// assert_eq!(
///     parse_timespan("3 secnds").unwrap_err().to_string(),
///     r#"invalid timespan "3 secnds": unknown unit "secnd""#
/// );
/// ```
pub fn parse_timespan(text: &str) -> Result<Duration, ValueError> {
    let invalid = |reason: String| ValueError::new("timespan", text, reason);
    let mut words = text.split_whitespace();
    let (Some(count_text), Some(unit_text), None) = (words.next(), words.next(), words.next())
    else {
        return Err(invalid(
            r#"expected "<count> <unit>", such as "3 seconds""#.to_owned(),
        ));
    };
    let count = parse_whole_number(count_text)
        .map_err(|_| invalid(format!("invalid count \"{count_text}\"")))?;
    if count < 0 {
        return Err(invalid("must not be negative".to_owned()));
    }
    let unit = unit_text.trim_end_matches(['s', 'S']);
    let seconds_per_unit: u64 = match unit.to_ascii_lowercase().as_str() {
        "millisecond" => {
            return u64::try_from(count)
                .map(Duration::from_millis)
                .map_err(|_| invalid("too long".to_owned()));
        }
        "second" => 1,
        "minute" => 60,
        "hour" => 60 * 60,
        "day" => 24 * 60 * 60,
        _ => return Err(invalid(format!("unknown unit \"{unit}\""))),
    };
    u64::try_from(count)
        .ok()
        .and_then(|count| count.checked_mul(seconds_per_unit))
        .map(Duration::from_secs)
        .ok_or_else(|| invalid("too long".to_owned()))
}

/// Parses baseplate's `Percent`: a number followed by `%`, such as `37.2%`, between `0%` and
/// `100%`, returned as a fraction (`0.372`).
///
/// # Errors
///
/// Text without the `%` sign, a number that does not parse, or one outside `0%..=100%`.
///
/// # Examples
///
/// ```
/// use baseplate_config::value::parse_percent;
///
/// assert!((parse_percent("37.2%").unwrap() - 0.372).abs() < 1e-12);
/// assert_eq!(
///     parse_percent("0.5").unwrap_err().to_string(),
///     r#"invalid percent "0.5": expected a percentage such as "37.2%""#
/// );
/// ```
pub fn parse_percent(text: &str) -> Result<f64, ValueError> {
    let invalid = |reason: &str| ValueError::new("percent", text, reason);
    let Some(number) = text.trim().strip_suffix('%') else {
        return Err(invalid(r#"expected a percentage such as "37.2%""#));
    };
    let percent = number
        .trim()
        .parse::<f64>()
        .map_err(|_| invalid(r#"expected a percentage such as "37.2%""#))?;
    let fraction = percent / 100.0;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(invalid("must be between 0% and 100%"));
    }
    Ok(fraction)
}

/// Parses baseplate's `Endpoint`: `host:port`, `[ipv6]:port`, or a Unix socket path (any value
/// containing `/`).
///
/// The port is a whole number from 0 to 65535. The host may be empty (`:8080`), as baseplate
/// allows, meaning every interface when binding.
///
/// # Errors
///
/// An empty value, a missing or out-of-range port, or an IPv6 address without brackets.
///
/// # Examples
///
/// ```
/// use baseplate_config::Endpoint;
/// use baseplate_config::value::parse_endpoint;
///
/// assert_eq!(
///     parse_endpoint("localhost:8125").unwrap(),
///     Endpoint::Inet { host: "localhost".into(), port: 8125 }
/// );
/// assert_eq!(parse_endpoint("[::1]:8125").unwrap().to_string(), "[::1]:8125");
/// assert_eq!(parse_endpoint("/var/run/statsd.sock").unwrap(), Endpoint::Unix("/var/run/statsd.sock".into()));
/// ```
pub fn parse_endpoint(text: &str) -> Result<Endpoint, ValueError> {
    let invalid = |reason: String| ValueError::new("endpoint", text, reason);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("no endpoint specified".to_owned()));
    }
    if trimmed.contains('/') {
        return Ok(Endpoint::Unix(PathBuf::from(trimmed)));
    }
    let (host, port_text) = if let Some(bracketed) = trimmed.strip_prefix('[') {
        let Some((host, rest)) = bracketed.split_once(']') else {
            return Err(invalid("missing \"]\" after the IPv6 address".to_owned()));
        };
        // A zone index (`%eth0`) is allowed after the address itself.
        let address = host.split_once('%').map_or(host, |(address, _)| address);
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(invalid(format!("invalid IPv6 address \"{host}\"")));
        }
        let Some(port_text) = rest.strip_prefix(':') else {
            return Err(invalid(
                r#"no port specified, expected "host:port""#.to_owned(),
            ));
        };
        (host, port_text)
    } else {
        let Some((host, port_text)) = trimmed.split_once(':') else {
            return Err(invalid(
                r#"no port specified, expected "host:port""#.to_owned(),
            ));
        };
        if port_text.contains(':') {
            return Err(invalid(
                r#"an IPv6 address needs brackets, such as "[::1]:8125""#.to_owned(),
            ));
        }
        (host, port_text)
    };
    if host.contains(char::is_whitespace) {
        return Err(invalid("the host must not contain whitespace".to_owned()));
    }
    let port = parse_whole_number(port_text)
        .ok()
        .and_then(|port| u16::try_from(port).ok())
        .ok_or_else(|| {
            invalid(format!(
                "invalid port \"{port_text}\", expected a number from 0 to 65535"
            ))
        })?;
    Ok(Endpoint::Inet {
        host: host.to_owned(),
        port,
    })
}

/// A remote endpoint to connect to (or a local one to bind), as baseplate's `Endpoint` parses it.
///
/// It deserialises from `host:port`, `[ipv6]:port` or a Unix socket path (a value containing
/// `/`); see [`parse_endpoint`]. `Display` gives the same syntax back.
///
/// ```
/// use baseplate_config::{Endpoint, RawConfig};
///
/// #[derive(serde::Deserialize)]
/// struct Metrics {
///     endpoint: Endpoint,
/// }
///
/// let config: RawConfig = [("metrics.endpoint", "127.0.0.1:8125")].into_iter().collect();
/// let metrics: Metrics = config.parse("metrics")?;
/// assert_eq!(metrics.endpoint.to_string(), "127.0.0.1:8125");
/// # Ok::<(), baseplate_config::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// A TCP/UDP endpoint. `host` is a name or an IP address (an IPv6 address without its
    /// brackets); it may be empty, which means every interface when binding.
    Inet {
        /// The host name or IP address.
        host: String,
        /// The port.
        port: u16,
    },
    /// A Unix domain socket.
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inet { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Inet { host, port } => write!(f, "{host}:{port}"),
            Self::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

impl FromStr for Endpoint {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_endpoint(text)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(
            ENDPOINT_MARKER,
            ParsedVisitor::<Self>::new("an endpoint such as \"host:port\""),
        )
    }
}

/// A fraction parsed from a percentage: `37.2%` is `Percent(0.372)`.
///
/// It deserialises from baseplate's `Percent` syntax (see [`parse_percent`]); the `%` sign is
/// required, so that `0.5` is never mistaken for half.
///
/// ```
/// use baseplate_config::{Percent, RawConfig};
///
/// #[derive(serde::Deserialize)]
/// struct Tracking {
///     sample_rate: Percent,
/// }
///
/// let config: RawConfig = [("foo.sample_rate", "25%")].into_iter().collect();
/// let tracking: Tracking = config.parse("foo")?;
/// assert_eq!(tracking.sample_rate, Percent(0.25));
/// # Ok::<(), baseplate_config::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

impl FromStr for Percent {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_percent(text).map(Percent)
    }
}

impl From<Percent> for f64 {
    fn from(percent: Percent) -> Self {
        percent.0
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(
            PERCENT_MARKER,
            ParsedVisitor::<Self>::new("a percentage such as \"37.2%\""),
        )
    }
}

/// A span of time parsed from baseplate's `Timespan` syntax: `3 seconds` is
/// `Timespan(Duration::from_secs(3))`.
///
/// A plain [`Duration`] field deserialises from the same syntax, so this type is needed only
/// where a named type helps (or to parse with [`FromStr`]). `Display` gives the syntax back.
///
/// ```
/// use std::time::Duration;
/// use baseplate_config::Timespan;
///
/// let span: Timespan = "2 minutes".parse()?;
/// assert_eq!(span, Timespan(Duration::from_secs(120)));
/// assert_eq!(span.to_string(), "2 minutes");
/// # Ok::<(), baseplate_config::ValueError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timespan(pub Duration);

impl FromStr for Timespan {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_timespan(text).map(Timespan)
    }
}

impl From<Timespan> for Duration {
    fn from(span: Timespan) -> Self {
        span.0
    }
}

impl fmt::Display for Timespan {
    /// Shows the span in the largest unit that holds it exactly (`90 seconds`, `2 minutes`); a
    /// span finer than a millisecond is shown as `Duration`'s `Debug` does (`1.5µs`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let duration = self.0;
        if !duration.subsec_nanos().is_multiple_of(1_000_000) {
            return write!(f, "{duration:?}");
        }
        let (count, unit) = if duration.subsec_millis() != 0 {
            (duration.as_millis(), "millisecond")
        } else {
            let seconds = duration.as_secs();
            [
                (86_400, "day"),
                (3_600, "hour"),
                (60, "minute"),
                (1, "second"),
            ]
            .into_iter()
            .find(|(size, _)| seconds != 0 && seconds.is_multiple_of(*size))
            .map_or((0, "second"), |(size, unit)| {
                (u128::from(seconds / size), unit)
            })
        };
        let plural = if count == 1 { "" } else { "s" };
        write!(f, "{count} {unit}{plural}")
    }
}

impl<'de> Deserialize<'de> for Timespan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(
            TIMESPAN_MARKER,
            ParsedVisitor::<Self>::new("a timespan such as \"3 seconds\""),
        )
    }
}

/// Newtype names by which this crate's deserializer recognises its own types, to report their
/// parse errors with the key and the type's name instead of as a generic custom error. Other
/// deserializers see an ordinary newtype struct around a string.
pub(crate) const TIMESPAN_MARKER: &str = "$baseplate_config::Timespan";
pub(crate) const PERCENT_MARKER: &str = "$baseplate_config::Percent";
pub(crate) const ENDPOINT_MARKER: &str = "$baseplate_config::Endpoint";

/// Deserialises a `T` from a string through its `FromStr`.
struct ParsedVisitor<T> {
    expecting: &'static str,
    marker: PhantomData<T>,
}

impl<T> ParsedVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        Self {
            expecting,
            marker: PhantomData,
        }
    }
}

impl<'de, T> Visitor<'de> for ParsedVisitor<T>
where
    T: FromStr<Err = ValueError>,
{
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(E::custom)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_str(self)
    }
}

/// Why [`parse_whole_number`] rejected a text.
pub(crate) const NOT_A_WHOLE_NUMBER: &str = "expected a whole number in base 10";

/// Parses a base-10 whole number as Python's `int(text)` does: surrounding whitespace, an
/// optional sign, and `_` between digits. Numbers beyond `i128` are rejected as too large.
pub(crate) fn parse_whole_number(text: &str) -> Result<i128, &'static str> {
    let trimmed = text.trim();
    let (negative, digits) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
        return Err(NOT_A_WHOLE_NUMBER);
    }
    let mut value: i128 = 0;
    let mut previous_underscore = false;
    for byte in digits.bytes() {
        match byte {
            b'0'..=b'9' => {
                let digit = i128::from(byte - b'0');
                // Accumulating negatively reaches i128::MIN too.
                let step = if negative { -digit } else { digit };
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(step))
                    .ok_or("too large")?;
                previous_underscore = false;
            }
            b'_' if !previous_underscore => previous_underscore = true,
            _ => return Err(NOT_A_WHOLE_NUMBER),
        }
    }
    Ok(value)
}

/// The reason for a number outside the range of `T`.
pub(crate) fn out_of_range<T: IntegerBounds>() -> String {
    format!(
        "out of range for {} ({} to {})",
        T::NAME,
        T::MIN_I128,
        T::MAX_I128
    )
}

/// The bounds of an integer type, for range checks and their messages.
pub(crate) trait IntegerBounds {
    const NAME: &'static str;
    const MIN_I128: i128;
    const MAX_I128: i128;
}

macro_rules! integer_bounds {
    ($($ty:ty),*) => {$(
        impl IntegerBounds for $ty {
            const NAME: &'static str = stringify!($ty);
            const MIN_I128: i128 = <$ty>::MIN as i128;
            // Only u128 reaches past i128, the widest number this crate parses.
            const MAX_I128: i128 = if (<$ty>::MAX as u128) > (i128::MAX as u128) {
                i128::MAX
            } else {
                <$ty>::MAX as i128
            };
        }
    )*};
}

integer_bounds!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
);

#[cfg(test)]
mod tests;
