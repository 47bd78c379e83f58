//! The TLS options of a `rediss://` client as the config gives them: the `ssl_*` settings merged
//! from overrides in code, config keys and the URL's query, checked (no `ssl_*` with `redis://`,
//! no key without its certificate), and the insecure ones refused unless the `tls-insecure`
//! feature allows them. Turning [`TlsOptions`] into redis-rs's TLS settings is `crate::tls`'s.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::url::{RedisUrl, parse_url_bool};
use super::{Overrides, RawOptions};
use crate::tls::{CertReqs, TlsOptions};

/// The TLS options for `rediss://` seeds: overrides in code, else config keys, else the URL's
/// query parameters. `ssl_*` settings with `redis://` seeds are an error, as in redis-py.
/// An error names the key (`url` when the setting came from the URL) and says what is wrong.
pub(super) fn tls_options(
    seeds: &[RedisUrl],
    mut raw: RawOptions,
    o: &Overrides,
    url_params: BTreeMap<String, String>,
) -> Result<Option<TlsOptions>, (&'static str, String)> {
    // Fill what the config leaves unset from the URL, remembering which came from there.
    let mut from_url = Vec::new();
    for (name, value) in url_params {
        let filled = match name.as_str() {
            "ssl_ca_certs" => fill(&mut raw.ssl_ca_certs, || Ok(value)),
            "ssl_certfile" => fill(&mut raw.ssl_certfile, || Ok(value)),
            "ssl_keyfile" => fill(&mut raw.ssl_keyfile, || Ok(value)),
            "ssl_cert_reqs" => fill(&mut raw.ssl_cert_reqs, || {
                value
                    .parse()
                    .map_err(|reason| format!("invalid value {value:?}: {reason}"))
            }),
            "ssl_check_hostname" => fill(&mut raw.ssl_check_hostname, || {
                parse_url_bool(&value)
                    .ok_or_else(|| format!("invalid boolean {value:?}: expected true or false"))
            }),
            _ => Ok(false),
        }
        .map_err(|reason| ("url", format!("{name}: {reason}")))?;
        if filled {
            from_url.push(name);
        }
    }
    let source = |key: &'static str| {
        if from_url.iter().any(|n| n == key) {
            "url"
        } else {
            key
        }
    };

    if !seeds.first().is_some_and(RedisUrl::is_tls) {
        // Overrides in code are ignored for redis:// (a service may set them for every
        // environment); settings in the config or the URL are a mistake worth reporting.
        let set = [
            ("ssl_ca_certs", raw.ssl_ca_certs.is_some()),
            ("ssl_certfile", raw.ssl_certfile.is_some()),
            ("ssl_keyfile", raw.ssl_keyfile.is_some()),
            ("ssl_cert_reqs", raw.ssl_cert_reqs.is_some()),
            ("ssl_check_hostname", raw.ssl_check_hostname.is_some()),
        ];
        return match set.into_iter().find(|(_, set)| *set) {
            Some((name, _)) => Err((
                source(name),
                format!("{name} is set, but the url is redis://; use rediss:// for TLS"),
            )),
            None => Ok(None),
        };
    }

    let certfile = o
        .ssl_certfile
        .clone()
        .or(raw.ssl_certfile.map(PathBuf::from));
    let keyfile = o.ssl_keyfile.clone().or(raw.ssl_keyfile.map(PathBuf::from));
    if certfile.is_none() && keyfile.is_some() {
        return Err((
            source("ssl_keyfile"),
            "ssl_keyfile is set without ssl_certfile, the certificate it belongs to".into(),
        ));
    }
    let tls = TlsOptions {
        ca_certs: o
            .ssl_ca_certs
            .clone()
            .or(raw.ssl_ca_certs.map(PathBuf::from)),
        certfile,
        keyfile,
        cert_reqs: o.ssl_cert_reqs.or(raw.ssl_cert_reqs).unwrap_or_default(),
        check_hostname: o
            .ssl_check_hostname
            .or(raw.ssl_check_hostname)
            .unwrap_or(true),
    };
    // A setting in code is reported under its key, even where the URL has one too.
    let key = |key: &'static str, in_code: bool| if in_code { key } else { source(key) };
    insecure_needs_the_feature(
        &tls,
        key("ssl_cert_reqs", o.ssl_cert_reqs.is_some()),
        key("ssl_check_hostname", o.ssl_check_hostname.is_some()),
    )?;
    Ok(Some(tls))
}

/// The cargo feature that allows TLS without its checks, named in the error that refuses them.
const INSECURE_FEATURE: &str = "tls-insecure";

/// `ssl_cert_reqs = none` and `ssl_check_hostname = false` turn off what TLS guarantees, so a
/// build allows them only with the `tls-insecure` feature (redis-rs implements them in its
/// `tls-rustls-insecure`): without it they are refused at start-up, naming the key (`url` when
/// the setting came from the URL) and the feature, rather than silently connecting otherwise than
/// the config says.
fn insecure_needs_the_feature(
    tls: &TlsOptions,
    cert_reqs_key: &'static str,
    check_hostname_key: &'static str,
) -> Result<(), (&'static str, String)> {
    if cfg!(feature = "tls-insecure") {
        return Ok(());
    }
    let refuse = |key: &'static str, name: &str, value: &str, what: &str| {
        // Under the URL's key the parameter is named; under its own key the value says it all.
        let setting = if key == "url" {
            format!("{name}={value}")
        } else {
            value.to_owned()
        };
        Err((
            key,
            format!(
                "{setting} turns off {what}, which needs the `{INSECURE_FEATURE}` cargo feature \
                 (of baseplate or baseplate-redis-cluster); this build does not enable it"
            ),
        ))
    };
    if tls.cert_reqs == CertReqs::None {
        return refuse(
            cert_reqs_key,
            "ssl_cert_reqs",
            "none",
            "certificate verification",
        );
    }
    if !tls.check_hostname {
        return refuse(
            check_hostname_key,
            "ssl_check_hostname",
            "false",
            "hostname verification",
        );
    }
    Ok(())
}

/// Sets an unset `slot` to what `parse` gives; whether it did.
fn fill<T>(
    slot: &mut Option<T>,
    parse: impl FnOnce() -> Result<T, String>,
) -> Result<bool, String> {
    if slot.is_some() {
        return Ok(false);
    }
    *slot = Some(parse()?);
    Ok(true)
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;
    use crate::config::ClusterRedisClient;
    use crate::config::tests::{config, options};

    #[test]
    fn rediss_seeds_verify_certificates_and_hostnames_by_default() {
        let o = options(&[("foo.url", "rediss://user:pw@127.0.0.1:7000/0")]).unwrap();
        assert_eq!(o.tls, Some(TlsOptions::default()));
        let tls = o.tls.unwrap();
        assert_eq!(tls.cert_reqs, CertReqs::Required);
        assert!(tls.check_hostname);
        assert_eq!(tls.ca_certs, None);
        assert!(o.seeds[0].is_tls());
        assert_eq!(options(&[("foo.url", "redis://h:1")]).unwrap().tls, None);
        let upper = options(&[("foo.url", "REDISS://h:1")]).unwrap();
        assert_eq!(upper.tls, Some(TlsOptions::default()));
    }

    #[test]
    #[cfg(feature = "tls-insecure")]
    fn ssl_keys_come_from_overrides_then_config_then_the_url() {
        let url = "rediss://h:1/0?ssl_ca_certs=/url/ca.pem&ssl_cert_reqs=none\
                   &ssl_check_hostname=False&ssl_certfile=/url/c.pem";
        let tls = options(&[("foo.url", url)]).unwrap().tls.unwrap();
        assert_eq!(tls.ca_certs, Some(PathBuf::from("/url/ca.pem")));
        assert_eq!(tls.cert_reqs, CertReqs::None);
        assert!(!tls.check_hostname);
        assert_eq!(tls.certfile, Some(PathBuf::from("/url/c.pem")));
        assert_eq!(tls.keyfile, None);

        let pairs = [
            ("foo.url", url),
            ("foo.ssl_ca_certs", "/config/ca.pem"),
            ("foo.ssl_cert_reqs", "Required"),
            ("foo.ssl_keyfile", "/config/k.pem"),
        ];
        let tls = options(&pairs).unwrap().tls.unwrap();
        assert_eq!(tls.ca_certs, Some(PathBuf::from("/config/ca.pem")));
        assert_eq!(tls.cert_reqs, CertReqs::Required);
        assert!(
            !tls.check_hostname,
            "the URL's value stays where the config is silent"
        );
        assert_eq!(tls.keyfile, Some(PathBuf::from("/config/k.pem")));

        let tls = ClusterRedisClient::new()
            .ssl_ca_certs("/code/ca.pem")
            .ssl_certfile("/code/c.pem")
            .ssl_cert_reqs(CertReqs::Optional)
            .ssl_check_hostname(true)
            .options_from_config(&config(&pairs), "foo.")
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(tls.ca_certs, Some(PathBuf::from("/code/ca.pem")));
        assert_eq!(tls.certfile, Some(PathBuf::from("/code/c.pem")));
        assert_eq!(tls.keyfile, Some(PathBuf::from("/config/k.pem")));
        assert_eq!(tls.cert_reqs, CertReqs::Optional);
        assert!(tls.check_hostname);

        // Overrides in code do not make a redis:// client speak TLS, nor fail it.
        let o = ClusterRedisClient::new()
            .ssl_ca_certs("/code/ca.pem")
            .options_from_config(&config(&[("foo.url", "redis://h:1")]), "foo.")
            .unwrap();
        assert_eq!(o.tls, None);
    }

    #[test]
    fn tls_mistakes_name_their_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("foo.url", "redis://h:1"), ("foo.ssl_ca_certs", "/ca.pem")],
                "foo.ssl_ca_certs: ssl_ca_certs is set, but the url is redis://; use rediss:// for TLS",
            ),
            (
                &[("foo.url", "redis://h:1/0?ssl_cert_reqs=none")],
                "foo.url: ssl_cert_reqs is set, but the url is redis://; use rediss:// for TLS",
            ),
            (
                &[("foo.url", "rediss://h:1"), ("foo.ssl_keyfile", "/k.pem")],
                "foo.ssl_keyfile: ssl_keyfile is set without ssl_certfile, the certificate it belongs to",
            ),
            (
                &[("foo.url", "rediss://h:1"), ("foo.ssl_cert_reqs", "maybe")],
                "foo.ssl_cert_reqs: invalid value \"maybe\": expected required, optional or none",
            ),
            (
                &[("foo.url", "rediss://h:1?ssl_cert_reqs=maybe")],
                "foo.url: ssl_cert_reqs: invalid value \"maybe\": expected required, optional or none",
            ),
            (
                &[("foo.url", "rediss://h:1?ssl_check_hostname=perhaps")],
                "foo.url: ssl_check_hostname: invalid boolean \"perhaps\": expected true or false",
            ),
            (
                &[("foo.url", "rediss://h:1?ssl_ca_cert=/ca.pem")],
                "foo.url: unknown URL parameter \"ssl_ca_cert\"; the TLS parameters are \
                 ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs, ssl_check_hostname",
            ),
            (
                &[(
                    "foo.url",
                    "rediss://h:1?ssl_cert_reqs=none,rediss://h:2?ssl_cert_reqs=required",
                )],
                "foo.url: seed 2: ssl_cert_reqs=\"required\" disagrees with \"none\" in an earlier seed",
            ),
            (
                &[("foo.url", "redis://h:1,rediss://h:2")],
                "foo.url: seed 2: rediss:// after redis:// seeds; every seed must use the same scheme",
            ),
            (
                &[("foo.url", "rediss://h:1/#insecure")],
                "foo.url: a URL fragment (#...) is not supported; for TLS without verification set ssl_cert_reqs = none",
            ),
        ];
        for (pairs, expected) in cases {
            let error = options(pairs).unwrap_err().to_string();
            assert_eq!(&error, expected, "{pairs:?}");
        }
    }

    #[test]
    fn turning_tls_checks_off_needs_the_tls_insecure_feature() {
        let needs = "which needs the `tls-insecure` cargo feature (of baseplate or \
                     baseplate-redis-cluster); this build does not enable it";
        let cases: &[(&[(&str, &str)], String)] = &[
            (
                &[("foo.url", "rediss://h:1"), ("foo.ssl_cert_reqs", "none")],
                format!("foo.ssl_cert_reqs: none turns off certificate verification, {needs}"),
            ),
            (
                &[("foo.url", "rediss://h:1/0?ssl_cert_reqs=NONE")],
                format!("foo.url: ssl_cert_reqs=none turns off certificate verification, {needs}"),
            ),
            (
                &[
                    ("foo.url", "rediss://h:1"),
                    ("foo.ssl_check_hostname", "false"),
                ],
                format!("foo.ssl_check_hostname: false turns off hostname verification, {needs}"),
            ),
            (
                &[("foo.url", "rediss://h:1/0?ssl_check_hostname=False")],
                format!(
                    "foo.url: ssl_check_hostname=false turns off hostname verification, {needs}"
                ),
            ),
        ];
        for (pairs, expected) in cases {
            let result = options(pairs);
            if cfg!(feature = "tls-insecure") {
                let tls = result.unwrap().tls.unwrap();
                assert!(tls.cert_reqs == CertReqs::None || !tls.check_hostname);
            } else {
                assert_eq!(&result.unwrap_err().to_string(), expected, "{pairs:?}");
            }
        }
        // A setting in code is named by its key, even where the URL says otherwise.
        let in_code = ClusterRedisClient::new()
            .ssl_cert_reqs(CertReqs::None)
            .options_from_config(
                &config(&[("foo.url", "rediss://h:1/0?ssl_cert_reqs=required")]),
                "foo.",
            );
        if cfg!(feature = "tls-insecure") {
            assert_eq!(in_code.unwrap().tls.unwrap().cert_reqs, CertReqs::None);
        } else {
            assert_eq!(
                in_code.unwrap_err().to_string(),
                format!("foo.ssl_cert_reqs: none turns off certificate verification, {needs}")
            );
        }
    }
}
