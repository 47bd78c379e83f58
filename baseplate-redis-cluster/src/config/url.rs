//! The `url` key: one or more comma-separated `redis://` or `rediss://` seeds, their query
//! parameters as redis-py applies them, and [`RedisUrl`], a seed that never shows its password.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A Redis URL whose password never shows in `Debug` or `Display` (it prints as `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL with its password, for connecting; never log it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the URL is `rediss://` (TLS).
    pub fn is_tls(&self) -> bool {
        // Schemes are case-insensitive; the URL is kept as written.
        self.0
            .get(.."rediss://".len())
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&baseplate_config::secret::redact_url(&self.0))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// The `ssl_*` names redis-py reads from a URL's query and from the config.
const SSL_KEYS: [&str; 5] = [
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
];

/// The other query parameters redis-py applies that mean something here (`db` is checked
/// where the URL's path is).
const URL_KEYS: [&str; 3] = [
    "socket_timeout",
    "socket_connect_timeout",
    "max_connections",
];

/// What the URL's query sets of the settings that are not TLS ones.
#[derive(Debug, Default)]
pub(super) struct UrlSettings {
    pub(super) socket_timeout: Option<Duration>,
    pub(super) socket_connect_timeout: Option<Duration>,
    pub(super) max_connections: Option<usize>,
}

impl UrlSettings {
    /// Parses the parameters as redis-py does (seconds as a float, connections as an integer);
    /// a reason names the parameter.
    pub(super) fn parse(params: &BTreeMap<String, String>) -> Result<Self, String> {
        let seconds = |name: &str| {
            params
                .get(name)
                .map(|text| {
                    text.trim()
                        .parse::<f64>()
                        .ok()
                        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
                        // Above zero once in nanoseconds: 1e-10 s is no time at all.
                        .filter(|bound| !bound.is_zero())
                        .ok_or_else(|| {
                            format!(
                                "{name}: invalid number {text:?}: expected seconds above 0, such as 0.5"
                            )
                        })
                })
                .transpose()
        };
        let max_connections = params
            .get("max_connections")
            .map(|text| {
                text.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!(
                            "max_connections: invalid integer {text:?}: expected a whole number above 0"
                        )
                    })
            })
            .transpose()?;
        Ok(Self {
            socket_timeout: seconds("socket_timeout")?,
            socket_connect_timeout: seconds("socket_connect_timeout")?,
            max_connections,
        })
    }
}

/// Splits and checks `url`: one or more comma-separated `redis://` or `rediss://` URLs of
/// database 0, all of one scheme. Also returns the query parameters (the `ssl_*` ones and
/// [`URL_KEYS`]; any other is an error), which every seed that has them must agree on. Reasons
/// never contain the URL itself, which may hold a password.
pub(super) fn parse_seeds(text: &str) -> Result<(Vec<RedisUrl>, BTreeMap<String, String>), String> {
    let mut seeds = Vec::new();
    let mut params = BTreeMap::new();
    let mut first_scheme = None;
    for (index, seed) in text.split(',').map(str::trim).enumerate() {
        let which = if text.contains(',') {
            format!("seed {}: ", index + 1)
        } else {
            String::new()
        };
        if seed.is_empty() {
            return Err(format!("{which}empty URL"));
        }
        let Some(url) = redis::parse_redis_url(seed) else {
            let scheme = seed.split_once("://").map(|(s, _)| s);
            return Err(match scheme {
                Some(s) if !matches!(s, "redis" | "rediss") => {
                    format!("{which}unknown scheme {s:?}; expected redis:// or rediss://")
                }
                _ => format!("{which}not a valid URL (expected redis://host:port)"),
            });
        };
        match url.scheme() {
            "redis" => {}
            "rediss" if cfg!(feature = "tls") => {}
            "rediss" => {
                return Err(format!(
                    "{which}rediss:// (TLS) needs the `tls` feature of baseplate-redis-cluster, \
                     which this build turned off"
                ));
            }
            other => {
                return Err(format!(
                    "{which}scheme {other:?} is not supported for a cluster; expected redis:// or rediss://"
                ));
            }
        }
        match first_scheme {
            None => first_scheme = Some(url.scheme().to_owned()),
            Some(ref first) if first != url.scheme() => {
                return Err(format!(
                    "{which}{}:// after {first}:// seeds; every seed must use the same scheme",
                    url.scheme()
                ));
            }
            Some(_) => {}
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{which}no host"));
        }
        // redis-py's `?db=` wins over the path; either may only say 0.
        let db = match url.query_pairs().find(|(name, _)| name == "db") {
            Some((_, db)) => db.into_owned(),
            None => match url.path().trim_start_matches('/') {
                "" => "0".to_owned(),
                path => path.to_owned(),
            },
        };
        if db != "0" {
            return Err(format!(
                "{which}database {db:?} requested, but Redis Cluster only has database 0"
            ));
        }
        if url.fragment().is_some() {
            return Err(format!(
                "{which}a URL fragment (#...) is not supported; for TLS without verification set ssl_cert_reqs = none"
            ));
        }
        for (name, value) in url.query_pairs() {
            if name == "db" {
                continue;
            }
            if name.starts_with("ssl_") && !SSL_KEYS.contains(&name.as_ref()) {
                return Err(format!(
                    "{which}unknown URL parameter {name:?}; the TLS parameters are {}",
                    SSL_KEYS.join(", ")
                ));
            }
            if !SSL_KEYS.contains(&name.as_ref()) && !URL_KEYS.contains(&name.as_ref()) {
                return Err(format!(
                    "{which}unsupported URL parameter {name:?}; a URL may set {}, db \
                     and the ssl_* parameters",
                    URL_KEYS.join(", ")
                ));
            }
            match params.insert(name.clone().into_owned(), value.clone().into_owned()) {
                Some(earlier) if earlier != value => {
                    return Err(format!(
                        "{which}{name}={value:?} disagrees with {earlier:?} in an earlier seed"
                    ));
                }
                _ => {}
            }
        }
        seeds.push(RedisUrl(seed.to_owned()));
    }
    Ok((seeds, params))
}

/// A boolean as redis-py's URL parser reads one.
pub(super) fn parse_url_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" => Some(true),
        "0" | "false" | "f" | "no" | "n" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::ClusterRedisClient;
    use crate::config::tests::{config, options};

    #[test]
    fn url_parameters_redis_py_applies_are_applied_below_config_keys() {
        let url = "redis://h:1/0?socket_timeout=0.5&socket_connect_timeout=2&max_connections=7";
        let o = options(&[("foo.url", url)]).unwrap();
        assert_eq!(o.response_timeout, Some(Duration::from_millis(500)));
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(o.max_connections, 7);
        // `timeout` only fills in socket timeouts nobody set, the URL included.
        let o = options(&[("foo.url", url), ("foo.timeout", "3 seconds")]).unwrap();
        assert_eq!(o.response_timeout, Some(Duration::from_millis(500)));
        assert_eq!(o.pool_wait, Duration::from_secs(3));
        let o = options(&[
            ("foo.url", url),
            ("foo.socket_timeout", "1 second"),
            ("foo.max_connections", "9"),
        ])
        .unwrap();
        assert_eq!(o.response_timeout, Some(Duration::from_secs(1)));
        assert_eq!(o.max_connections, 9);
        let o = ClusterRedisClient::new()
            .max_connections(3)
            .options_from_config(&config(&[("foo.url", url)]), "foo.")
            .unwrap();
        assert_eq!(o.max_connections, 3);
        assert_eq!(
            options(&[("foo.url", "redis://h:1?db=0")])
                .unwrap()
                .seeds
                .len(),
            1
        );
    }

    #[test]
    fn url_parameters_that_mean_nothing_here_are_errors_naming_them() {
        let cases = [
            (
                "redis://h:1/0?retry_on_timeout=true",
                "foo.url: unsupported URL parameter \"retry_on_timeout\"; a URL may set \
                 socket_timeout, socket_connect_timeout, max_connections, db and the ssl_* parameters",
            ),
            (
                "redis://h:1?client_name=web&socket_timeout=1",
                "foo.url: unsupported URL parameter \"client_name\"; a URL may set \
                 socket_timeout, socket_connect_timeout, max_connections, db and the ssl_* parameters",
            ),
            (
                "redis://h:1/0?socket_timeout=soon",
                "foo.url: socket_timeout: invalid number \"soon\": expected seconds above 0, such as 0.5",
            ),
            (
                "redis://h:1/0?socket_connect_timeout=-1",
                "foo.url: socket_connect_timeout: invalid number \"-1\": expected seconds above 0, such as 0.5",
            ),
            (
                "redis://h:1/0?socket_connect_timeout=1e-10",
                "foo.url: socket_connect_timeout: invalid number \"1e-10\": expected seconds above 0, such as 0.5",
            ),
            (
                "redis://h:1/0?socket_timeout=0",
                "foo.url: socket_timeout: invalid number \"0\": expected seconds above 0, such as 0.5",
            ),
            (
                "redis://h:1/0?max_connections=lots",
                "foo.url: max_connections: invalid integer \"lots\": expected a whole number above 0",
            ),
            (
                "redis://h:1/0?max_connections=0",
                "foo.url: max_connections: invalid integer \"0\": expected a whole number above 0",
            ),
            (
                "redis://h:1?db=2",
                "foo.url: database \"2\" requested, but Redis Cluster only has database 0",
            ),
            (
                "redis://h:1?socket_timeout=1,redis://h:2?socket_timeout=2",
                "foo.url: seed 2: socket_timeout=\"2\" disagrees with \"1\" in an earlier seed",
            ),
        ];
        for (url, expected) in cases {
            let error = options(&[("foo.url", url)]).unwrap_err().to_string();
            assert_eq!(error, expected, "{url}");
        }
    }

    #[test]
    fn several_seeds_and_ipv6_parse() {
        let o = options(&[(
            "foo.url",
            "redis://127.0.0.1:7000, redis://[::1]:7001,redis://localhost:7002",
        )])
        .unwrap();
        assert_eq!(o.seeds.len(), 3);
        for bad in ["redis://h:99999", "redis://", "redis:///0", "nonsense"] {
            assert!(options(&[("foo.url", bad)]).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn passwords_never_show() {
        let url = "redis://user:s3cr3t-pw@127.0.0.1:7000";
        let o = options(&[("foo.url", url)]).unwrap();
        let shown = format!("{:?} {}", o, o.seeds[0]);
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("127.0.0.1:7000"), "{shown}");
        assert_eq!(o.seeds[0].expose(), url);

        for bad in [
            "redis://user:s3cr3t-pw@127.0.0.1:7000/5",
            "rediss://user:s3cr3t-pw@127.0.0.1:7000/0?ssl_cert_reqs=maybe",
            "rediss://user:s3cr3t-pw@h:1,redis://user:s3cr3t-pw@h:2",
            "http://user:s3cr3t-pw@h:1",
            "redis://user:s3cr3t-pw@h:99999",
        ] {
            let error = options(&[("foo.url", bad)]).unwrap_err();
            let text = format!("{error} {error:?}");
            assert!(!text.contains("s3cr3t-pw"), "{text}");
        }
    }

    #[test]
    #[cfg(not(feature = "tls"))]
    fn without_the_tls_feature_rediss_is_a_config_error() {
        let error = options(&[("foo.url", "rediss://h:1")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "foo.url: rediss:// (TLS) needs the `tls` feature of baseplate-redis-cluster, \
             which this build turned off"
        );
    }
}
