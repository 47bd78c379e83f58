//! Reading the tracker's sorted sets back: the set names and the top-keys query baseplate.py documents.

use std::fmt;

/// One of the two sorted sets the tracker writes; the names are baseplate.py's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TrackedSet {
    /// `baseplate-hot-key-tracker-reads`: keys of sampled read commands.
    Reads,
    /// `baseplate-hot-key-tracker-writes`: keys of sampled write commands.
    Writes,
}

impl TrackedSet {
    /// Both sets, reads first.
    pub const ALL: [Self; 2] = [Self::Reads, Self::Writes];

    /// The sorted set's key.
    ///
    /// # Examples
    /// ```
    /// use baseplate_hotkeys::TrackedSet;
    ///
    /// assert_eq!(TrackedSet::Reads.key(), "baseplate-hot-key-tracker-reads");
    /// assert_eq!(TrackedSet::Writes.key(), "baseplate-hot-key-tracker-writes");
    /// ```
    pub fn key(&self) -> &'static str {
        match self {
            Self::Reads => "baseplate-hot-key-tracker-reads",
            Self::Writes => "baseplate-hot-key-tracker-writes",
        }
    }

    /// `reads` or `writes`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Reads => "reads",
            Self::Writes => "writes",
        }
    }
}

impl fmt::Display for TrackedSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The `limit` highest-scored keys of `set`, highest first, with their scores (sampled hits):
/// `ZREVRANGEBYSCORE <set> +inf 0 WITHSCORES LIMIT 0 <limit>`. A `limit` of 0 returns nothing without
/// asking Redis.
///
/// # Errors
/// The Redis error when the query fails (e.g. the set's key holds another type).
///
/// # Examples
/// ```no_run
/// use baseplate_hotkeys::report::escape_key;
/// use baseplate_hotkeys::{TrackedSet, top_keys};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = redis::cluster::ClusterClient::new(vec!["redis://127.0.0.1:7000"])?
///     .get_async_connection()
///     .await?;
/// for (key, score) in top_keys(&mut conn, TrackedSet::Reads, 10).await? {
///     println!("{score:>8} {}", escape_key(&key));
/// }
/// # Ok(())
/// # }
/// ```
pub async fn top_keys<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    set: TrackedSet,
    limit: usize,
) -> redis::RedisResult<Vec<(Vec<u8>, f64)>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    redis::cmd("ZREVRANGEBYSCORE")
        .arg(set.key())
        .arg("+inf")
        .arg(0)
        .arg("WITHSCORES")
        .arg("LIMIT")
        .arg(0)
        .arg(limit)
        .query_async(conn)
        .await
}
