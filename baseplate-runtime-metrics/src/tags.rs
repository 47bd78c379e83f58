//! InfluxDB-style tags, written into a metric's name as baseplate.py's tagged metrics do.

use std::fmt;

use crate::wire::replace_chars;

/// An ordered set of InfluxDB-style tags, written into a metric's name as `,key=value,key2=value2`.
///
/// Tags keep insertion order, like the Python `dict` baseplate.py formats. Inserting a key that is
/// already present replaces its value in place, so `{**base_tags, **tags}` merges the same way.
///
/// Keys and values may not contain the characters that structure a statsd line. baseplate.py writes
/// them as they are and corrupts the line; here `:`, `|`, `,`, `=` and control characters (such as a
/// newline) are replaced with `_` when the tag is inserted.
///
/// ```
/// use baseplate_runtime_metrics::Tags;
///
/// let tags = Tags::new().with("hostname", "web-1").with("PID", 4242);
/// assert_eq!(tags.get("PID"), Some("4242"));
/// assert_eq!(tags.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["hostname", "PID"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    pairs: Vec<(String, String)>,
}

impl Tags {
    /// An empty set of tags.
    #[must_use]
    pub const fn new() -> Self {
        Self { pairs: Vec::new() }
    }

    /// Returns the tags with `key=value` added (or its value replaced in place), for chaining.
    ///
    /// ```
    /// use baseplate_runtime_metrics::Tags;
    ///
    /// let tags = Tags::new().with("client", "foo").with("client", "bar");
    /// assert_eq!(tags.get("client"), Some("bar"));
    /// assert_eq!(tags.len(), 1);
    /// ```
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl fmt::Display) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds `key=value`, or replaces the value of `key` in place when it is already present.
    ///
    /// ```
    /// use baseplate_runtime_metrics::Tags;
    ///
    /// let mut tags = Tags::new();
    /// tags.insert("a", 1).insert("b", 2).insert("a", 3);
    /// assert_eq!(tags.iter().collect::<Vec<_>>(), [("a", "3"), ("b", "2")]);
    /// ```
    pub fn insert(&mut self, key: impl Into<String>, value: impl fmt::Display) -> &mut Self {
        let key = sanitize_tag_part(key.into());
        let value = sanitize_tag_part(value.to_string());
        match self.pairs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => *existing = value,
            None => self.pairs.push((key, value)),
        }
        self
    }

    /// Removes `key` and returns its value, if it was present.
    ///
    /// ```
    /// use baseplate_runtime_metrics::Tags;
    ///
    /// let mut tags = Tags::new().with("a", 1);
    /// assert_eq!(tags.remove("a").as_deref(), Some("1"));
    /// assert!(tags.is_empty());
    /// ```
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let index = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(index).1)
    }

    /// The value of `key`, if present.
    ///
    /// ```
    /// use baseplate_runtime_metrics::Tags;
    ///
    /// assert_eq!(Tags::new().with("a", "x").get("a"), Some("x"));
    /// ```
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Adds every tag of `other` in its order, replacing values of keys already present in place
    /// (Python's `dict.update`).
    ///
    /// ```
    /// use baseplate_runtime_metrics::Tags;
    ///
    /// let mut tags = Tags::new().with("hostname", "h").with("PID", 1);
    /// tags.merge(&Tags::new().with("client", "foo").with("PID", 2));
    /// assert_eq!(
    ///     tags.iter().collect::<Vec<_>>(),
    ///     [("hostname", "h"), ("PID", "2"), ("client", "foo")]
    /// );
    /// ```
    pub fn merge(&mut self, other: &Tags) {
        for (key, value) in &other.pairs {
            match self.pairs.iter_mut().find(|(k, _)| k == key) {
                Some((_, existing)) => existing.clone_from(value),
                None => self.pairs.push((key.clone(), value.clone())),
            }
        }
    }

    /// The tags as `(key, value)` pairs, in order.
    ///
    /// ```
    /// use baseplate_runtime_metrics::Tags;
    ///
    /// let tags = Tags::new().with("a", 1);
    /// assert_eq!(tags.iter().next(), Some(("a", "1")));
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many tags there are.
    ///
    /// ```
    /// use baseplate_runtime_metrics::Tags;
    ///
    /// assert_eq!(Tags::new().with("a", 1).len(), 1);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no tags.
    ///
    /// ```
    /// use baseplate_runtime_metrics::Tags;
    ///
    /// assert!(Tags::new().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// How many bytes [`Tags::write_to`] appends.
    pub(crate) fn written_len(&self) -> usize {
        self.pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum()
    }

    /// Appends `,key=value` for every tag, as baseplate.py's `_format_tags` does (nothing when empty).
    pub(crate) fn write_to(&self, out: &mut String) {
        for (key, value) in &self.pairs {
            out.push(',');
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
    }
}

impl<K: Into<String>, V: fmt::Display> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut tags = Tags::new();
        tags.extend(iter);
        tags
    }
}

impl<K: Into<String>, V: fmt::Display> Extend<(K, V)> for Tags {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (key, value) in iter {
            self.insert(key, value);
        }
    }
}

/// Replaces the characters that would break a line's structure in a tag key or value.
fn sanitize_tag_part(part: String) -> String {
    let forbidden = |c: char| matches!(c, ':' | '|' | ',' | '=');
    if part.chars().any(|c| forbidden(c) || c.is_control()) {
        replace_chars(&part, forbidden)
    } else {
        part
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_written_in_insertion_order() {
        let tags = Tags::new()
            .with("hostname", "web-1")
            .with("PID", 4242)
            .with("client", "foo");
        let mut out = String::new();
        tags.write_to(&mut out);
        assert_eq!(out, ",hostname=web-1,PID=4242,client=foo");
    }

    #[test]
    fn replacing_a_tag_keeps_its_position() {
        let mut tags = Tags::new().with("a", 1).with("b", 2);
        tags.insert("a", 3);
        tags.merge(&Tags::new().with("c", 4).with("b", 5));
        assert_eq!(
            tags.iter().collect::<Vec<_>>(),
            [("a", "3"), ("b", "5"), ("c", "4")]
        );
        let collected: Tags = [("x", 1), ("y", 2)].into_iter().collect();
        assert_eq!(
            collected.iter().collect::<Vec<_>>(),
            [("x", "1"), ("y", "2")]
        );
    }
}
