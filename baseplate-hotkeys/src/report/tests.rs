//! Unit tests of the report: rendering fixed figures to exact text, and key escaping.

use super::*;

fn entries(list: &[(&[u8], f64)]) -> Vec<(Vec<u8>, f64)> {
    list.iter().map(|(k, s)| (k.to_vec(), *s)).collect()
}

#[test]
fn text_shows_rank_score_share_bar_and_escaped_key_per_set() {
    let report = Report::new(
        entries(&[
            (b"user:1", 500.0),
            (b"user:2", 300.0),
            (b"\xff\x00bin", 200.0),
        ]),
        entries(&[(b"counter", 12.0)]),
    );
    let expected = "\
reads (baseplate-hot-key-tracker-reads): top 3 keys, 1000 sampled hits listed
rank  score   share  bar                             key
   1    500   50.0%  ###############                 user:1
   2    300   30.0%  #########                       user:2
   3    200   20.0%  ######                          \\xff\\x00bin

writes (baseplate-hot-key-tracker-writes): top 1 key, 12 sampled hits listed
rank  score   share  bar                             key
   1     12  100.0%  ##############################  counter
";
    assert_eq!(render_text(&report), expected);
}

#[test]
fn text_widens_columns_for_long_figures_and_keeps_tiny_shares_visible() {
    let mut reads = vec![(b"big".to_vec(), 123_456_789.0)];
    for i in 0..10 {
        reads.push((format!("k{i}").into_bytes(), 1.5));
    }
    let text = render_text(&Report::new(reads, vec![]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "reads (baseplate-hot-key-tracker-reads): top 11 keys, 123456804 sampled hits listed"
    );
    assert_eq!(
        lines[1],
        "rank      score   share  bar                             key"
    );
    assert_eq!(
        lines[2],
        "   1  123456789  100.0%  ##############################  big"
    );
    assert_eq!(
        lines[12],
        "  11        1.5    0.0%  #                               k9"
    );
    assert_eq!(
        lines[14],
        "writes (baseplate-hot-key-tracker-writes): no keys tracked"
    );
}

#[test]
fn an_empty_report_says_so_for_both_sets() {
    assert_eq!(
        render_text(&Report::default()),
        "reads (baseplate-hot-key-tracker-reads): no keys tracked\n\n\
         writes (baseplate-hot-key-tracker-writes): no keys tracked\n"
    );
}

#[test]
fn zero_scores_render_without_dividing_by_zero() {
    let text = render_text(&Report::new(entries(&[(b"a", 0.0)]), vec![]));
    assert!(
        text.contains("   1      0    0.0%                                  a\n"),
        "{text}"
    );
}

#[test]
fn keys_are_escaped_only_where_needed() {
    let cases: [(&[u8], &str); 10] = [
        (b"plain:key-1", "plain:key-1"),
        ("ключ 🔑".as_bytes(), "ключ 🔑"),
        (b"", ""),
        (b"tab\there", "tab\\x09here"),
        (b"del\x7f", "del\\x7f"),
        (b"back\\slash", "back\\\\slash"),
        (b"\x80\xfe\xff", "\\x80\\xfe\\xff"),
        (b"caf\xc3", "caf\\xc3"),
        (
            "a\u{202e}b\u{200b}c\u{85}".as_bytes(),
            "a\\u{202e}b\\u{200b}c\\u{85}",
        ),
        (b"\\xff", "\\\\xff"),
    ];
    for (key, shown) in cases {
        assert_eq!(escape_key(key), shown, "{key:?}");
    }
}

#[test]
fn escaping_is_unambiguous() {
    let keys: [&[u8]; 4] = [b"\xff", b"\\xff", "\u{ff}".as_bytes(), b"\\\xff"];
    let shown: std::collections::HashSet<String> = keys.iter().map(|k| escape_key(k)).collect();
    assert_eq!(shown.len(), keys.len(), "{shown:?}");
}
