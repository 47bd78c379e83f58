//! A minimal service: configured from an INI file like baseplate.py's, it registers the Redis
//! Cluster client `foo`, then serves a few requests, each a server span whose Redis commands are
//! child spans timed into statsd.
//!
//! ```text
//! cargo xtask cluster up
//! cargo run -p baseplate --example service [-- path/to/service.ini]
//! ```

use std::error::Error;

use baseplate::{Baseplate, ClusterRedisClient, RawConfig};
use redis::AsyncCommands as _;

type BoxError = Box<dyn Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/service.ini").to_owned());
    let config = RawConfig::from_ini_file(&path)?;

    let mut baseplate = Baseplate::new(config);
    baseplate.configure_observers()?;
    baseplate.configure_context("foo", ClusterRedisClient::new())?;

    for visitor in ["ada", "grace", "ada"] {
        let visits = baseplate
            .server_context("visit", |ctx| async move {
                let mut foo = ctx.redis_cluster("foo")?;
                let key = format!("example:visits:{visitor}");
                let visits: i64 = foo.incr(&key, 1).await?;
                let () = foo.expire(&key, 60).await?;

                let mut recent = foo.pipeline("recent");
                recent
                    .lpush("example:recent", visitor)
                    .ltrim("example:recent", 0, 9);
                recent.lrange("example:recent", 0, -1);
                let ((), (), names): ((), (), Vec<String>) = recent.query_async().await?;
                println!("{visitor}: visit {visits}; recent visitors {names:?}");
                Ok::<_, BoxError>(visits)
            })
            .await?;
        assert!(visits >= 1);
    }
    let stats = baseplate
        .make_context_object()
        .redis_cluster("foo")?
        .pool_stats();
    println!(
        "pool: size {}, in use {}, open connections {}",
        stats.size, stats.in_use, stats.open_connections
    );
    baseplate.shutdown().await;
    Ok(())
}
