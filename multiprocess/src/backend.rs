//! [`BackendError`] (feature `redis`): what can go wrong between this
//! process and the Redis server of [`remote`](crate::remote), apart from
//! the work itself. It sits at the bottom of the layers because the local
//! error enums (the pool's, the queue's) carry it as their `Backend`
//! variant.

/// Why a call to the Redis server failed. Every remote call returns it
/// (wrapped in the call's own error enum as `Backend`); nothing is lost
/// when it does: a failed put hands the value back, a task is redelivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The URL is not a Redis URL (`redis://[:password@]host[:port][/db]`
    /// or `redis+unix:///path/to/socket[?db=N]`).
    #[error("bad Redis URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given, with any password removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered at the address within the connect timeout (no
    /// server, a firewall, a cut network).
    #[error("the Redis server at {url} is unreachable: {reason}")]
    Unreachable {
        /// The server's URL (no password).
        url: String,
        /// What the operating system or the client said.
        reason: String,
    },
    /// Something answered, but it does not speak the Redis protocol.
    #[error("{url} does not answer as a Redis server: {reason}")]
    NotRedis {
        /// The server's URL (no password).
        url: String,
        /// What came back.
        reason: String,
    },
    /// The server is older than Redis 7.0 (the scripts need `BLMOVE`,
    /// `XAUTOCLAIM` and Redis 7's script semantics).
    #[error(
        "the Redis server at {url} is version {version}; multiprocess::remote needs 7.0 or newer"
    )]
    TooOld {
        /// The server's URL (no password).
        url: String,
        /// The version it reported.
        version: String,
    },
    /// The server refused the password (or wants one and none was given).
    #[error("the Redis server at {url} refused the credentials: {reason}")]
    Auth {
        /// The server's URL (no password).
        url: String,
        /// What the server said.
        reason: String,
    },
    /// The server lost this namespace's data: it restarted without
    /// persistence (or was flushed) while work was in flight, so what the
    /// call was waiting for can no longer come.
    #[error("the Redis server lost the data of this call: {0}")]
    Lost(String),
    /// The server did not answer within the socket timeout; the connection
    /// was dropped and the call's state reconciled.
    #[error("the Redis server did not answer in time: {0}")]
    Timeout(String),
    /// The server is out of memory (`maxmemory` reached with the
    /// `noeviction` policy) and refused the write.
    #[error("the Redis server is out of memory: {0}")]
    OutOfMemory(String),
    /// A payload is larger than the cluster's `max_payload`; nothing was
    /// sent.
    #[error("the payload is {size} bytes, more than max_payload ({max} bytes)")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit ([`ClusterBuilder::max_payload`](crate::remote::ClusterBuilder::max_payload)).
        max: usize,
    },
    /// The connection broke (reset, closed by the server).
    #[error("the connection to the Redis server broke: {0}")]
    Disconnected(String),
    /// Any other error the server returned.
    #[error("the Redis server returned an error: {0}")]
    Server(String),
    /// A [`remote::Lock`](super::Lock) was no longer held by this guard:
    /// its lease ran out (the holder was frozen, cut off or too slow to
    /// renew it) and another holder may have taken the lock since.
    #[error("the lock's lease was lost: {0}")]
    LeaseLost(String),
}

impl BackendError {
    /// Classifies a client error (`url` has no password).
    pub(crate) fn from_redis(e: &redis::RedisError, url: &str) -> BackendError {
        use redis::ErrorKind;
        let text = e.to_string();
        if e.is_timeout() {
            return BackendError::Timeout(format!(
                "no reply from {url} within the socket timeout ({text})"
            ));
        }
        // Also inside a pipeline's aggregated error.
        if e.code() == Some("OOM") || text.contains("\"OOM\"") || text.contains("OOM command") {
            return BackendError::OutOfMemory(text);
        }
        match e.kind() {
            ErrorKind::AuthenticationFailed => BackendError::Auth {
                url: url.to_owned(),
                reason: text,
            },
            ErrorKind::InvalidClientConfig => BackendError::BadUrl {
                url: url.to_owned(),
                reason: text,
            },
            ErrorKind::Parse => BackendError::NotRedis {
                url: url.to_owned(),
                reason: text,
            },
            _ if matches!(e.code(), Some("NOAUTH" | "WRONGPASS")) => BackendError::Auth {
                url: url.to_owned(),
                reason: text,
            },
            _ if e.is_connection_dropped() || e.is_io_error() => BackendError::Disconnected(text),
            _ => BackendError::Server(text),
        }
    }

    /// Whether the connection that gave this error must be dropped (its
    /// state is unknown: a reply may still be on its way).
    pub(crate) fn breaks_connection(&self) -> bool {
        matches!(
            self,
            BackendError::Timeout(_)
                | BackendError::Disconnected(_)
                | BackendError::NotRedis { .. }
                | BackendError::Unreachable { .. }
        )
    }
}
