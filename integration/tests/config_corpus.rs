//! Configs as baseplate.py services write them start unchanged: every INI file under
//! `fixtures/config_corpus/` is read as `baseplate-serve` reads it, the service is configured and
//! serves one request against the real cluster, and what it logged and sent is compared with the
//! file's own `# expect-warning:` and `# expect-line:` comments. The same file under the strict
//! mode fails on its first unknown key instead.
//!
//! Placeholders in the files stand for what a test cannot own: the cluster
//! (`redis://localhost:7000/0`), a UDP statsd (`127.0.0.1:8125`) and a statsd Unix socket
//! (`/var/run/statsd.sock`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use baseplate::{Baseplate, BaseplateError, ClusterRedisClient, RawConfig, UnknownKeys};
use integration::logs::Logs;
use integration::statsd::{Statsd, is_runtime_line};
use integration::{cluster, golden, unique_prefix};
use redis::AsyncCommands as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/config_corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ini"))
        .collect();
    files.sort();
    files
}

/// The values after `# {tag}: ` in a file's comments.
fn expected(text: &str, tag: &str) -> Vec<String> {
    let prefix = format!("# {tag}: ");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Starts the service a file configures (`unknown_keys` as given) and serves one request.
fn start(config: RawConfig, unknown_keys: UnknownKeys) -> Result<Baseplate, BaseplateError> {
    let mut baseplate = Baseplate::new(config).with_unknown_keys(unknown_keys);
    baseplate.configure_observers()?;
    baseplate.configure_context("foo", ClusterRedisClient::new())?;
    Ok(baseplate)
}

#[tokio::test]
async fn configs_written_for_baseplate_py_start_and_warn_about_what_they_ignore() {
    let files = corpus();
    assert!(files.len() >= 4, "{files:?}");
    let socket_dir = std::env::temp_dir().join(unique_prefix("corpus").replace(':', "-"));
    std::fs::create_dir_all(&socket_dir).unwrap();

    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let udp = Statsd::bind().await;
        let unix = Statsd::bind_unix(&socket_dir.join(format!("{name}.sock")));
        let text = std::fs::read_to_string(&file)
            .unwrap()
            .replace(
                "redis://localhost:7000/0",
                &format!("{}/0", cluster().url()),
            )
            .replace("127.0.0.1:8125", &udp.endpoint())
            .replace("/var/run/statsd.sock", &unix.endpoint());
        let config = RawConfig::from_ini_str(&text, "app:main").unwrap();
        let warnings = expected(&text, "expect-warning");

        let (logs, guard) = Logs::capture();
        let baseplate = start(config.clone(), UnknownKeys::Warn)
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        drop(guard);

        let shown: Vec<String> = baseplate
            .config_warnings()
            .iter()
            .map(ToString::to_string)
            .collect();
        for warning in &shown {
            println!("{name}: {warning}");
        }
        assert_eq!(shown, warnings, "{name}");
        let logged = logs.text();
        for warning in &warnings {
            let once = logged
                .lines()
                .filter(|line| line.contains(" WARN ") && line.contains(warning.as_str()))
                .count();
            assert_eq!(once, 1, "{name}: {warning} in\n{logged}");
        }

        let key = unique_prefix("corpus");
        let value = baseplate
            .server_context("corpus", |ctx| {
                let key = key.clone();
                async move {
                    let mut foo = ctx.redis_cluster("foo")?;
                    Ok::<_, BoxError>(foo.get::<_, Option<String>>(&key).await?)
                }
            })
            .await
            .unwrap();
        assert_eq!(value, None, "{name}");
        let prometheus = baseplate.serve_prometheus("127.0.0.1:0").await.unwrap();
        assert_eq!(
            prometheus.is_none(),
            text.contains("metrics.enabled = false"),
            "{name}"
        );
        baseplate.shutdown().await;

        let mut sent = udp.lines_until_marker().await;
        sent.extend(unix.lines_until_marker().await);
        let sent: Vec<String> = sent
            .iter()
            .filter(|line| !is_runtime_line(line))
            .map(|line| golden::masked(line))
            .collect();
        assert_eq!(sent, expected(&text, "expect-line"), "{name}");

        // Strict, the first unknown key stops the service instead.
        let strict = start(config, UnknownKeys::Reject);
        match warnings
            .iter()
            .find(|w| w.contains(": unknown key, ignored"))
        {
            Some(first) => assert_eq!(
                strict.unwrap_err().to_string(),
                first.replace(", ignored", ""),
                "{name}"
            ),
            None => assert!(strict.is_ok(), "{name}"),
        }
    }
    std::fs::remove_dir_all(&socket_dir).unwrap();
}
