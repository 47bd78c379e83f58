//! Redaction of secrets (URL passwords and secret-named keys) before a value is shown anywhere.
//!
//! Every place this crate shows a configured value to a human (`Debug`, `Display` and error
//! messages) goes through these functions, so a password never reaches a log line.

use std::borrow::Cow;

/// What a redacted secret is replaced by.
pub const REDACTED: &str = "***";

/// Words that mark a key's value as secret when its last segment contains one of them.
const SECRET_WORDS: [&str; 3] = ["password", "secret", "token"];

/// Returns true when the value of `key` must never be shown: its last dotted segment contains
/// `password`, `secret` or `token`, in any case.
///
/// # Examples
///
/// ```
/// use baseplate_config::secret::is_secret_key;
///
/// assert!(is_secret_key("foo.password"));
/// assert!(is_secret_key("vault.auth_TOKEN"));
/// assert!(!is_secret_key("secrets.url")); // only the last segment counts
/// ```
pub fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| last.contains(word))
}

/// Replaces the password of every URL in `text` (`scheme://user:PASSWORD@host`) by `***`.
///
/// Text without a URL password is returned unchanged and unallocated. When in doubt (a `:` and
/// an `@` after `://` in the same word) the text is redacted: showing too little beats leaking.
///
/// # Examples
///
/// ```
/// use baseplate_config::secret::redact_url;
///
/// assert_eq!(redact_url("redis://:hunter2@cache:6379/0"), "redis://:***@cache:6379/0");
/// assert_eq!(redact_url("redis://user:hunter2@cache"), "redis://user:***@cache");
/// assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
/// ```
pub fn redact_url(text: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut search_from = 0;
    while let Some(found) = text[search_from..].find("://") {
        let authority_start = search_from + found + 3;
        // A URL ends at whitespace or at a quote, so one message can hold several URLs.
        let word_len = text[authority_start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`'))
            .unwrap_or(text.len() - authority_start);
        let word = &text[authority_start..authority_start + word_len];
        // The last `@` ends the user information, so a password with an unescaped `@` is hidden
        // whole.
        if let Some(at) = word.rfind('@')
            && let Some(colon) = word[..at].find(':')
        {
            let password_start = authority_start + colon + 1;
            let password_end = authority_start + at;
            if &text[password_start..password_end] != REDACTED {
                let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
                buf.push_str(&text[copied..password_start]);
                buf.push_str(REDACTED);
                copied = password_end;
            }
        }
        search_from = authority_start + word_len;
    }
    match out {
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
        None => Cow::Borrowed(text),
    }
}

/// Returns `value` as it may be shown for `key`: `***` for a secret key, otherwise the value with
/// URL passwords redacted.
pub(crate) fn redact_for_key<'v>(key: &str, value: &'v str) -> Cow<'v, str> {
    if is_secret_key(key) {
        Cow::Borrowed(REDACTED)
    } else {
        redact_url(value)
    }
}

/// Redacts a free-form message (a reason, or an error raised by a type's own `Deserialize`)
/// about the value of `key`.
///
/// URL passwords are always hidden. For a secret key, the raw value and every quoted fragment of
/// the message (`"..."` or `` `...` ``, which is how this crate and serde quote input) are hidden
/// too, since they may be pieces of the secret.
pub(crate) fn redact_message(key: &str, raw_value: Option<&str>, message: &str) -> String {
    let message = redact_url(message);
    if !is_secret_key(key) {
        return message.into_owned();
    }
    let mut message = message.into_owned();
    if let Some(raw) = raw_value.filter(|raw| !raw.is_empty()) {
        message = message.replace(raw, REDACTED);
    }
    redact_quoted(&message)
}

/// Replaces the inside of every `"..."` and `` `...` `` pair by `***`.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        let after_open = open + quote.len_utf8();
        match rest[after_open..].find(quote) {
            Some(close) => {
                out.push_str(&rest[..after_open]);
                out.push_str(REDACTED);
                out.push(quote);
                rest = &rest[after_open + close + quote.len_utf8()..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_recognised_by_their_last_segment() {
        for key in [
            "password",
            "foo.password",
            "foo.db_password",
            "foo.PASSWORD",
            "foo.client_secret",
            "foo.api_token",
            "foo.tokens[1]",
            "foo.Secret",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["foo.url", "passwords.url", "foo.pass", "tokens.count", ""] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn url_passwords_are_redacted() {
        let cases = [
            ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
            ("rediss://user:pw@host", "rediss://user:***@host"),
            ("redis://user:p@ss@host", "redis://user:***@host"),
            ("redis://user:pa/ss@host/db", "redis://user:***@host/db"),
            ("redis://user@host", "redis://user@host"),
            ("redis://host:6379", "redis://host:6379"),
            ("no url here", "no url here"),
            ("", ""),
            ("://", "://"),
            ("://:@", "://:***@"),
            (
                "a redis://:one@h1 and \"http://u:two@h2\" end",
                "a redis://:***@h1 and \"http://u:***@h2\" end",
            ),
            ("redis://:***@host", "redis://:***@host"),
            ("ünï://ü:çødé@hôst", "ünï://ü:***@hôst"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_url(input), expected, "{input}");
        }
    }

    #[test]
    fn redaction_is_borrowed_when_nothing_changes() {
        assert!(matches!(redact_url("redis://host:1"), Cow::Borrowed(_)));
        assert!(matches!(redact_url("redis://:***@host"), Cow::Borrowed(_)));
    }

    #[test]
    fn values_are_redacted_by_key() {
        assert_eq!(redact_for_key("foo.password", "hunter2"), "***");
        assert_eq!(redact_for_key("foo.url", "redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact_for_key("foo.url", "plain"), "plain");
    }

    #[test]
    fn messages_about_secret_keys_hide_quoted_fragments_and_the_raw_value() {
        assert_eq!(
            redact_message(
                "foo.token",
                Some("abc def"),
                r#"unknown unit "def" in abc def"#
            ),
            r#"unknown unit "***" in ***"#
        );
        assert_eq!(
            redact_message(
                "foo.token",
                Some("abc"),
                "unknown variant `abc`, expected `x`"
            ),
            "unknown variant `***`, expected `***`"
        );
        assert_eq!(
            redact_message("foo.token", None, r#"unbalanced "quote"#),
            r#"unbalanced "quote"#
        );
        assert_eq!(
            redact_message("foo.mode", Some("abc"), "unknown variant `abc`"),
            "unknown variant `abc`"
        );
        assert_eq!(
            redact_message("foo.url", Some("x"), "bad redis://:pw@h"),
            "bad redis://:***@h"
        );
    }
}
