//! Crate root: the `baseplate-hotkeys` command line, parsed and run as a library (so tests drive
//! it in process); the crate's documentation is its README.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod cache;
mod json;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use baseplate_hotkeys::report::{fetch_report, render_text};
use clap::{Parser, Subcommand};
use redis::cluster::{ClusterClient, ClusterClientBuilder};

pub use json::render_json;

/// Lists the keys baseplate's hot-key tracker found hottest, from its sorted sets in a Redis Cluster.
///
/// Parse it with clap's [`Parser`] (`Cli::parse()` in `main`, `Cli::try_parse_from` elsewhere)
/// and hand it to [`run`].
#[derive(Debug, Parser)]
#[command(name = "baseplate-hotkeys", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Why a command failed, in words for its user (a URL's password never among them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the top keys of the reads and writes sets with score, share and a bar.
    Top {
        /// A seed node of the cluster, e.g. redis://127.0.0.1:7000 (rediss:// for TLS).
        #[arg(long)]
        url: String,
        #[command(flatten)]
        tls: TlsArgs,
        /// How many keys to list per set.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Give up connecting or waiting for a reply after this many seconds (from the cluster
        /// and from each --metrics-url).
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
        /// A service instance's Prometheus endpoint, e.g. http://10.0.0.5:6060/metrics, whose
        /// hot-key cache counters to show after the sets (repeat for several instances).
        #[arg(long = "metrics-url", value_name = "URL")]
        metrics_urls: Vec<String>,
    },
}

/// TLS for `rediss://` URLs, with the names of the cluster client's `ssl_*` keys.
#[derive(Debug, Default, clap::Args)]
struct TlsArgs {
    /// PEM CA certificates that sign the nodes' certificates (default: the system's roots).
    #[arg(long)]
    ssl_ca_certs: Option<PathBuf>,
    /// PEM client certificate, for nodes that require one.
    #[arg(long)]
    ssl_certfile: Option<PathBuf>,
    /// PEM client certificate's key (default: read from --ssl-certfile).
    #[arg(long, requires = "ssl_certfile")]
    ssl_keyfile: Option<PathBuf>,
}

impl TlsArgs {
    fn is_set(&self) -> bool {
        self.ssl_ca_certs.is_some() || self.ssl_certfile.is_some()
    }

    /// Hands the certificates to `builder` for a `rediss://` URL, as the cluster client does
    /// with its `ssl_*` keys: the files are read and checked now, so a bad one is reported
    /// naming its option.
    #[cfg(feature = "tls")]
    fn apply(&self, builder: ClusterClientBuilder) -> Result<ClusterClientBuilder, String> {
        let mut options = baseplate_redis_cluster::TlsOptions::default();
        options.ca_certs.clone_from(&self.ssl_ca_certs);
        options.certfile.clone_from(&self.ssl_certfile);
        options.keyfile.clone_from(&self.ssl_keyfile);
        options
            .apply(builder)
            .map_err(|e| format!("--{}: {}", e.option.replace('_', "-"), e.reason))
    }

    #[cfg(not(feature = "tls"))]
    fn apply(&self, builder: ClusterClientBuilder) -> Result<ClusterClientBuilder, String> {
        if self.is_set() {
            return Err("this build has no TLS (the `tls` feature is off)".to_owned());
        }
        Ok(builder)
    }
}

/// Runs the command `cli` names and returns what it prints: the report, as text or JSON.
///
/// # Errors
/// What went wrong, for the user: a bad URL or TLS file, no answer from the cluster within the
/// timeout, a refused connection, a failed query. A URL's password is shown as `***`.
///
/// # Examples
/// ```no_run
/// use baseplate_hotkeys_cli::{Cli, run};
/// use clap::Parser as _;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let cli = Cli::try_parse_from(["baseplate-hotkeys", "top", "--url", "redis://127.0.0.1:7000"])?;
/// print!("{}", run(cli).await?);
/// # Ok(()) }
/// ```
pub async fn run(cli: Cli) -> Result<String, CliError> {
    run_command(cli.command).await.map_err(CliError)
}

async fn run_command(command: Command) -> Result<String, String> {
    let Command::Top {
        url,
        tls,
        limit,
        json,
        timeout_secs,
        metrics_urls,
    } = command;
    let shown = baseplate_config::secret::redact_url(&url);
    let timeout = Duration::from_secs(timeout_secs.max(1));
    let tls_url = url
        .get(.."rediss://".len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"));
    if tls.is_set() && !tls_url {
        // redis-rs would speak TLS to the plain port and wait there until the timeout.
        return Err(format!(
            "--ssl-ca-certs and --ssl-certfile need a rediss:// URL, not {shown}"
        ));
    }
    let builder = ClusterClient::builder(vec![url.as_str()])
        .connection_timeout(timeout)
        .response_timeout(timeout);
    let builder = if tls_url {
        tls.apply(builder)?
    } else {
        builder
    };
    let client = builder.build().map_err(|e| {
        let what = if tls.is_set() {
            "cluster URL or TLS files"
        } else {
            "cluster URL"
        };
        format!("invalid {what} {shown}: {e}")
    })?;
    let mut conn = tokio::time::timeout(timeout, client.get_async_connection())
        .await
        .map_err(|_| format!("no answer from {shown} within {timeout:?}"))?
        .map_err(|e| format!("cannot connect to {shown}: {e}"))?;
    let report = tokio::time::timeout(timeout, fetch_report(&mut conn, limit))
        .await
        .map_err(|_| format!("no answer from {shown} within {timeout:?}"))?
        .map_err(|e| format!("querying the hot-key sets on {shown}: {e}"))?;
    // The sets were read: from here on a service that does not answer is a line of the output.
    let scraped = if metrics_urls.is_empty() {
        None
    } else {
        Some(cache::scrape_all(&metrics_urls, timeout).await)
    };
    Ok(if json {
        json::render_json_with_cache(&report, scraped.as_deref().map(cache::cache_json))
    } else {
        let mut text = render_text(&report);
        if let Some(scraped) = &scraped {
            text.push('\n');
            text.push_str(&cache::render_cache_text(scraped));
        }
        // The text ends with a newline and println! adds one.
        text.trim_end().to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses_with_defaults() {
        let cli =
            Cli::try_parse_from(["baseplate-hotkeys", "top", "--url", "redis://h:1"]).unwrap();
        let Command::Top {
            url, limit, json, ..
        } = cli.command;
        assert_eq!((url.as_str(), limit, json), ("redis://h:1", 10, false));
        assert!(Cli::try_parse_from(["baseplate-hotkeys", "top"]).is_err());
        assert!(
            Cli::try_parse_from(["baseplate-hotkeys", "top", "--url", "u", "--limit", "x"])
                .is_err()
        );
        // A client key without its certificate is refused by the parser.
        assert!(
            Cli::try_parse_from([
                "baseplate-hotkeys",
                "top",
                "--url",
                "u",
                "--ssl-keyfile",
                "k"
            ])
            .is_err()
        );
    }

    #[test]
    fn metrics_urls_are_repeated_in_order() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(
                ["baseplate-hotkeys", "top", "--url", "u"]
                    .iter()
                    .chain(args),
            )
            .unwrap();
            let Command::Top { metrics_urls, .. } = cli.command;
            metrics_urls
        };
        assert!(parse(&[]).is_empty());
        assert_eq!(
            parse(&[
                "--metrics-url",
                "http://a/metrics",
                "--metrics-url",
                "http://b/metrics"
            ]),
            ["http://a/metrics", "http://b/metrics"]
        );
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_a_clear_error() {
        let err = run_command(Command::Top {
            url: "redis://:hunter2@127.0.0.1:1".into(),
            tls: TlsArgs::default(),
            limit: 10,
            json: false,
            timeout_secs: 2,
            metrics_urls: vec![],
        })
        .await
        .unwrap_err();
        assert!(err.contains("redis://:***@127.0.0.1:1"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
