//! Prometheus exposition: the `redis_client_*` series in the Prometheus text format (version
//! 0.0.4, as baseplate.py serves it), on a `/metrics` endpoint of the facade's own or in a
//! registry the service already serves.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use baseplate_redis_cluster::RedisClientMetrics;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::BaseplateError;
use crate::service::Baseplate;

impl Baseplate {
    /// Registers the series the service's clients record (by default every Redis Cluster client
    /// records into [`RedisClientMetrics::global`]) in `registry`, for a service that already
    /// serves its own `/metrics`. A client given a set of its own
    /// (`ClusterRedisClient::new().prometheus(...)`) registers that set itself.
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    ///
    /// let baseplate = baseplate::Baseplate::new(baseplate::RawConfig::new());
    /// let mut registry = Registry::default(); // the service's own, with its own metrics
    /// baseplate.register_prometheus(&mut registry);
    /// ```
    pub fn register_prometheus(&self, registry: &mut Registry) {
        RedisClientMetrics::global().register(registry);
    }

    /// The clients' series in the Prometheus text format, for a service that answers `/metrics`
    /// with a handler of its own.
    pub fn prometheus_text(&self) -> String {
        let mut registry = Registry::default();
        self.register_prometheus(&mut registry);
        encode(&registry)
    }

    /// Serves the clients' series at `http://{addr}/metrics` (baseplate.py serves them on
    /// `0.0.0.0:6060`) until the returned server is shut down or dropped. Call it on a tokio
    /// runtime. With `metrics.enabled = false` it serves nothing and returns `None`, as
    /// baseplate.py's server then exports no Prometheus metrics.
    ///
    /// ```no_run
    /// # async fn example(baseplate: &baseplate::Baseplate) -> Result<(), baseplate::BaseplateError> {
    /// if let Some(server) = baseplate.serve_prometheus("0.0.0.0:6060").await? {
    ///     println!("metrics on http://{}/metrics", server.local_addr());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`BaseplateError::Serve`] when the address cannot be listened on, or a config error when
    /// `metrics.enabled` is not a boolean.
    pub async fn serve_prometheus(
        &self,
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Option<MetricsServer>, BaseplateError> {
        if !self.metrics_enabled()? {
            tracing::info!("metrics.enabled = false: Prometheus metrics are not served");
            return Ok(None);
        }
        let failed = |source| BaseplateError::Serve {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(&addr).await.map_err(failed)?;
        let local_addr = listener.local_addr().map_err(failed)?;
        let mut registry = Registry::default();
        self.register_prometheus(&mut registry);
        let registry = Arc::new(registry);
        let app = axum::Router::new().route(
            "/metrics",
            get(move || {
                let registry = Arc::clone(&registry);
                async move {
                    (
                        [(CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
                        encode(&registry),
                    )
                }
            }),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "the Prometheus metrics server stopped");
            }
        });
        Ok(Some(MetricsServer {
            local_addr,
            stop: Some(stop),
            task,
        }))
    }
}

/// A running `/metrics` server; dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The address it listens on (with the port the system chose, when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits for the requests being served.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut text, registry);
    text
}
