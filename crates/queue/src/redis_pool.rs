//! The Redis pool every part of alertflow uses: one server (`redis.url`),
//! or the master a set of Sentinels names (`redis.sentinels` +
//! `redis.master_name`), followed across failovers: a connection to a
//! master that went away breaks, and the next one is made to whichever
//! node the Sentinels name then. Both are deadpool-redis pools (its
//! `sentinel` feature); this type lets the rest of the code not care which.

use deadpool_redis::redis::aio::ConnectionLike;
use deadpool_redis::redis::{Cmd, Pipeline, RedisFuture, Value};

pub use deadpool_redis::PoolError;

/// A pool of Redis connections.
#[derive(Clone)]
pub enum Pool {
    Direct(deadpool_redis::Pool),
    Sentinel(deadpool_redis::sentinel::Pool),
}

impl From<deadpool_redis::Pool> for Pool {
    fn from(p: deadpool_redis::Pool) -> Pool {
        Pool::Direct(p)
    }
}

impl Pool {
    /// A connection (bounded by the pool's wait and create timeouts).
    pub async fn get(&self) -> Result<Connection, PoolError> {
        match self {
            Pool::Direct(p) => p.get().await.map(Connection::Direct),
            Pool::Sentinel(p) => p.get().await.map(Connection::Sentinel),
        }
    }
}

/// A pooled connection; usable wherever redis-rs takes a connection.
pub enum Connection {
    Direct(deadpool_redis::Connection),
    Sentinel(deadpool_redis::sentinel::Connection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Direct(c) => c.req_packed_command(cmd),
            Connection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Direct(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Direct(c) => c.get_db(),
            Connection::Sentinel(c) => c.get_db(),
        }
    }
}
