//! `MonitoredPipeline`: a named pipeline or transaction that runs in one span when executed.

use std::ops::{Deref, DerefMut};

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

use crate::connection::MonitoredClusterRedisConnection;

/// A named pipeline (or transaction) made by [`MonitoredClusterRedisConnection::pipeline`] or
/// [`MonitoredClusterRedisConnection::transaction`].
///
/// It dereferences to a [`redis::Pipeline`], so commands are queued with redis-rs's own methods
/// (`.get(..)`, `.set(..)`, `.cmd(..).arg(..)`, `.ignore()`); [`query_async`](Self::query_async)
/// runs them in one span `{client}.pipeline_{name}`. Queue commands in a statement of their own:
/// a chain like `pipe.get(..).query_async(..)` ends on the inner `redis::Pipeline`, whose
/// `query_async` needs a connection and, given the monitored one, runs unnamed (`{client}.pipeline`).
///
/// ```no_run
/// # async fn example(foo: &baseplate_redis_cluster::MonitoredClusterRedisConnection) -> redis::RedisResult<()> {
/// let mut pipe = foo.pipeline("profile");
/// pipe.hgetall("user:1").smembers("user:1:groups");
/// let (user, groups): (Vec<(String, String)>, Vec<String>) = pipe.query_async().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MonitoredPipeline {
    conn: MonitoredClusterRedisConnection,
    label: String,
    pipeline: Pipeline,
}

impl MonitoredPipeline {
    pub(crate) fn new(
        conn: MonitoredClusterRedisConnection,
        label: String,
        pipeline: Pipeline,
    ) -> Self {
        Self {
            conn,
            label,
            pipeline,
        }
    }

    /// Runs the queued commands and converts their replies (ignored commands left out).
    ///
    /// # Errors
    /// The first connection or pool error; a command's error reply, as redis-rs reports it for
    /// pipelines; a [`CrossSlotTransaction`](crate::CrossSlotTransaction) for a transaction
    /// whose keys span slots.
    pub async fn query_async<T: FromRedisValue>(&mut self) -> RedisResult<T> {
        let mut named = Named {
            conn: &self.conn,
            label: &self.label,
        };
        self.pipeline.query_async(&mut named).await
    }

    /// Runs the queued commands, discarding their replies.
    ///
    /// # Errors
    /// As [`query_async`](Self::query_async).
    pub async fn exec_async(&mut self) -> RedisResult<()> {
        self.query_async::<()>().await
    }
}

impl Deref for MonitoredPipeline {
    type Target = Pipeline;

    fn deref(&self) -> &Pipeline {
        &self.pipeline
    }
}

impl DerefMut for MonitoredPipeline {
    fn deref_mut(&mut self) -> &mut Pipeline {
        &mut self.pipeline
    }
}

/// Carries the pipeline's name into `req_packed_commands`, which redis-rs's `Pipeline` calls.
struct Named<'a> {
    conn: &'a MonitoredClusterRedisConnection,
    label: &'a str,
}

impl ConnectionLike for Named<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut conn = self.conn.clone();
        Box::pin(async move { conn.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.conn.run_pipeline(pipeline, offset, count, self.label))
    }

    fn get_db(&self) -> i64 {
        0
    }
}
