//! The statsd wire format as baseplate.py writes it: name joining, lines and packets (the numbers
//! are `number.rs`'s, the tags `tags.rs`'s).

use std::time::Duration;

use crate::number::{write_millis, write_number};
use crate::tags::Tags;

/// Joins metric name parts with `.` as baseplate.py's `_metric_join` does: leading and trailing dots
/// of each part are stripped and empty parts are skipped, so no join produces a doubled dot.
///
/// Dots inside a part are kept as they are. Unlike baseplate.py, a part that is empty only after
/// stripping (such as `"."`) is skipped too, where baseplate.py would write `a..b`.
pub(crate) fn metric_join<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut joined = String::new();
    metric_join_into(&mut joined, parts);
    joined
}

/// [`metric_join`] appending to `joined` (which must be empty), so that a caller can size it.
pub(crate) fn metric_join_into<'a>(joined: &mut String, parts: impl IntoIterator<Item = &'a str>) {
    for part in parts {
        let part = part.trim_matches('.');
        if part.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.push('.');
        }
        joined.push_str(part);
    }
}

/// The kind of a statsd line: the type code after the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Timer,
    Counter,
    Gauge,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Timer => "ms",
            Kind::Counter => "c",
            Kind::Gauge => "g",
        }
    }
}

/// Writes the part of a line before the value: the name, then the tags (`name,k=v,k2=v2`).
pub(crate) fn line_prefix(name: impl Into<String>, tags: &Tags) -> String {
    let mut prefix = sanitize_name(name.into());
    tags.write_to(&mut prefix);
    prefix
}

/// Appends a line to `out`: `prefix:value|kind`, then `|@rate` when the rate is below 1, exactly
/// as baseplate.py's `Timer.send`, `Counter.send` and `Gauge.replace` write it.
pub(crate) fn write_line(out: &mut String, prefix: &str, value: f64, kind: Kind, sample_rate: f64) {
    start_line(out, prefix);
    write_number(out, value);
    end_line(out, kind, sample_rate);
}

/// Appends a timer's line, `prefix:12.5|ms` (and `|@rate` below 1): [`write_line`] with `elapsed`
/// in milliseconds, written from its exact nanoseconds ([`write_millis`]).
pub(crate) fn write_timer_line(
    out: &mut String,
    prefix: &str,
    elapsed: Duration,
    sample_rate: f64,
) {
    start_line(out, prefix);
    write_millis(out, elapsed);
    end_line(out, Kind::Timer, sample_rate);
}

fn start_line(out: &mut String, prefix: &str) {
    out.reserve(prefix.len() + 24);
    out.push_str(prefix);
    out.push(':');
}

fn end_line(out: &mut String, kind: Kind, sample_rate: f64) {
    out.push('|');
    out.push_str(kind.code());
    if sample_rate < 1.0 {
        out.push_str("|@");
        write_number(out, sample_rate);
    }
}

/// Packs lines into newline-joined packets of at most `max_packet_size` bytes, in order, never
/// cutting a line. A line longer than `max_packet_size` is its own packet.
pub(crate) fn pack_lines<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    max_packet_size: usize,
) -> Vec<String> {
    let mut packets = Vec::new();
    let mut current = String::new();
    for line in lines {
        push_line(
            &mut current,
            line,
            max_packet_size,
            &mut packets,
            String::new,
        );
    }
    if !current.is_empty() {
        packets.push(current);
    }
    packets
}

/// Appends `line` to `packet`, newline-separated. When it would make the packet longer than
/// `max_packet_size`, the packet so far goes to `full` first and is replaced by `fresh()`, so the
/// line starts the next one: the one rule both [`pack_lines`] and the client's coalescing follow.
pub(crate) fn push_line(
    packet: &mut String,
    line: &str,
    max_packet_size: usize,
    full: &mut Vec<String>,
    fresh: impl FnOnce() -> String,
) {
    if !packet.is_empty() && packet.len() + 1 + line.len() > max_packet_size {
        full.push(std::mem::replace(packet, fresh()));
    }
    if !packet.is_empty() {
        packet.push('\n');
    }
    packet.push_str(line);
}

/// Replaces the characters that would break a line's structure in a metric name; a clean name (the
/// usual case, on every request's path) is returned as it is, without copying.
fn sanitize_name(name: String) -> String {
    let forbidden = |c: char| matches!(c, ':' | '|' | ',');
    if name.chars().any(|c| forbidden(c) || c.is_control()) {
        replace_chars(&name, forbidden)
    } else {
        name
    }
}

/// `text` with every `forbidden` or control character replaced by `_`.
pub(crate) fn replace_chars(text: &str, forbidden: impl Fn(char) -> bool) -> String {
    text.chars()
        .map(|c| {
            if forbidden(c) || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_strips_dots_and_skips_empty_parts() {
        assert_eq!(metric_join(["single"]), "single");
        assert_eq!(metric_join(["first", "second"]), "first.second");
        assert_eq!(
            metric_join(["first.second", "third.fourth"]),
            "first.second.third.fourth"
        );
        assert_eq!(metric_join(["first.", "second"]), "first.second");
        assert_eq!(metric_join(["first.", "", "second", ""]), "first.second");
        assert_eq!(
            metric_join([".ns..", "..runtime.", ".pool.size"]),
            "ns.runtime.pool.size"
        );
        assert_eq!(metric_join(["a", ".", "b"]), "a.b");
        assert_eq!(metric_join(["a..b", "c"]), "a..b.c");
        assert_eq!(metric_join(["", ""]), "");
    }

    #[test]
    fn structural_characters_are_replaced() {
        let tags = Tags::new().with("k:e|y", "v,a=l\nue");
        assert_eq!(tags.iter().next(), Some(("k_e_y", "v_a_l_ue")));
        assert_eq!(line_prefix("a:b|c,d\ne=f", &Tags::new()), "a_b_c_d_e=f");
    }

    fn finish_line(prefix: String, value: f64, kind: Kind, sample_rate: f64) -> String {
        let mut line = String::new();
        write_line(&mut line, &prefix, value, kind, sample_rate);
        line
    }

    #[test]
    fn lines_have_baseplate_layout() {
        let tags = Tags::new().with("test", "true");
        let prefix = line_prefix("example", &tags);
        assert_eq!(
            finish_line(prefix.clone(), 3140.0, Kind::Timer, 1.0),
            "example,test=true:3140|ms"
        );
        assert_eq!(
            finish_line(prefix.clone(), 2.0, Kind::Counter, 0.5),
            "example,test=true:2|c|@0.5"
        );
        assert_eq!(
            finish_line("example".to_owned(), 33.0, Kind::Gauge, 1.0),
            "example:33|g"
        );
        assert_eq!(
            finish_line("example".to_owned(), -20.0, Kind::Counter, 1.0),
            "example:-20|c"
        );
        let mut timer = String::new();
        write_timer_line(&mut timer, &prefix, Duration::from_micros(1_200), 0.5);
        assert_eq!(timer, "example,test=true:1.2|ms|@0.5");
    }

    #[test]
    fn packing_never_cuts_lines() {
        let lines = ["aaaa", "bbbb", "cccc", "dd"];
        assert_eq!(pack_lines(lines, 9), ["aaaa\nbbbb", "cccc\ndd"]);
        assert_eq!(pack_lines(lines, 8), ["aaaa", "bbbb", "cccc\ndd"]);
        assert_eq!(pack_lines(lines, 6), ["aaaa", "bbbb", "cccc", "dd"]);
        assert_eq!(pack_lines(["toolongline", "a"], 4), ["toolongline", "a"]);
        assert!(pack_lines([], 10).is_empty());
    }
}
