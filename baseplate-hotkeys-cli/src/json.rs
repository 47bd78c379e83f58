//! The `--json` report: both tracker sets as a JSON object, exact for binary keys.

use std::fmt::Write as _;

use baseplate_hotkeys::TrackedSet;
use baseplate_hotkeys::report::escape_key;
use baseplate_hotkeys::report::{Report, share};
use serde::Serialize;

use crate::cache::JsonCache;

/// Renders the report as a JSON object: for `reads` and `writes`, the set's key, the listed total and the
/// keys with rank, escaped key, the key's bytes in hex (exact even for binary keys), score and share.
///
/// # Examples
/// ```
/// use baseplate_hotkeys::report::Report;
/// use baseplate_hotkeys_cli::render_json;
///
/// let json = render_json(&Report::new(vec![(b"k".to_vec(), 2.0)], vec![]));
/// let value: serde_json::Value = serde_json::from_str(&json).unwrap();
/// assert_eq!(value["reads"]["keys"][0]["key_hex"], "6b");
/// assert_eq!(value["writes"]["total"], 0.0);
/// ```
pub fn render_json(report: &Report) -> String {
    render_json_with_cache(report, None)
}

/// [`render_json`], with the `--metrics-url` section under `cache` when there is one.
pub(crate) fn render_json_with_cache(report: &Report, cache: Option<JsonCache>) -> String {
    #[derive(Serialize)]
    struct Json {
        reads: JsonSet,
        writes: JsonSet,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache: Option<JsonCache>,
    }
    #[derive(Serialize)]
    struct JsonSet {
        set: &'static str,
        total: f64,
        keys: Vec<JsonKey>,
    }
    #[derive(Serialize)]
    struct JsonKey {
        rank: usize,
        key: String,
        key_hex: String,
        score: f64,
        share: f64,
    }
    let set = |set: TrackedSet| {
        let total = report.total(set);
        JsonSet {
            set: set.key(),
            total,
            keys: report
                .entries(set)
                .iter()
                .enumerate()
                .map(|(i, (key, score))| JsonKey {
                    rank: i + 1,
                    key: escape_key(key),
                    key_hex: hex(key),
                    score: *score,
                    share: share(*score, total),
                })
                .collect(),
        }
    };
    let json = Json {
        reads: set(TrackedSet::Reads),
        writes: set(TrackedSet::Writes),
        cache,
    };
    // Serialising plain strings and finite numbers cannot fail; `null` would be the honest fallback.
    serde_json::to_string_pretty(&json).unwrap_or_else(|_| "null".to_owned())
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_both_sets_with_exact_key_bytes() {
        let report = Report::new(
            vec![(b"user:1".to_vec(), 3.0), (b"\xff".to_vec(), 1.0)],
            vec![],
        );
        let expected = r#"{
  "reads": {
    "set": "baseplate-hot-key-tracker-reads",
    "total": 4.0,
    "keys": [
      {
        "rank": 1,
        "key": "user:1",
        "key_hex": "757365723a31",
        "score": 3.0,
        "share": 0.75
      },
      {
        "rank": 2,
        "key": "\\xff",
        "key_hex": "ff",
        "score": 1.0,
        "share": 0.25
      }
    ]
  },
  "writes": {
    "set": "baseplate-hot-key-tracker-writes",
    "total": 0.0,
    "keys": []
  }
}"#;
        assert_eq!(render_json(&report), expected);
    }
}
