//! The authentication handshake of [`Listener`](crate::Listener) and
//! [`Client`](crate::Client): Python's `deliver_challenge` /
//! `answer_challenge` HMAC challenge–response, in both directions.
//!
//! # Protocol
//!
//! Each message below is one raw-bytes frame (the 24-byte header of
//! [`frame`](super::frame) with tag 0, then the bytes), so the handshake
//! runs over the connection it authenticates. The listener challenges
//! first, then the client:
//!
//! ```text
//! challenger → answerer   #CHALLENGE#{sha256}<40 random bytes>
//! answerer → challenger   {sha256}<HMAC-SHA256(key, "{sha256}" + the 40 bytes)>   (8 + 32 bytes)
//! challenger → answerer   #WELCOME#   or   #FAILURE#  (then it closes)
//! ```
//!
//! The MAC covers the whole challenge after `#CHALLENGE#`, digest name
//! included, as in CPython 3.12+. The challenge is fresh from the kernel's
//! CSPRNG each time, so an answer recorded from one handshake is wrong for
//! the next; digests are compared in constant time (`Mac::verify_slice`).
//! Every handshake message is at most 256 bytes and every read is bounded by
//! the handshake deadline, so a silent or chatty peer cannot hold a side
//! forever. Only `{sha256}` is accepted (no legacy HMAC-MD5).

use std::io;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::{AuthenticationError, Connection, RecvTimeoutError, SendError};
use crate::sys;

type HmacSha256 = hmac::Hmac<Sha256>;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const DIGEST: &[u8] = b"{sha256}";
/// Random bytes per challenge (Python's `MESSAGE_LENGTH`).
const NONCE_LEN: usize = 40;
/// The largest handshake message either side accepts.
const MAX_MESSAGE: usize = 256;

/// Why a handshake failed.
#[derive(Debug)]
pub(crate) enum HandshakeFailure {
    Auth(AuthenticationError),
    Io(io::Error),
}

impl From<AuthenticationError> for HandshakeFailure {
    fn from(e: AuthenticationError) -> Self {
        HandshakeFailure::Auth(e)
    }
}

/// The client's side: answer the listener's challenge, then challenge it.
pub(crate) fn client<S, R>(
    conn: &Connection<S, R>,
    key: &[u8],
    deadline: Instant,
) -> Result<(), HandshakeFailure> {
    with_small_messages(conn, || {
        answer_challenge(conn, key, deadline)?;
        deliver_challenge(conn, key, deadline)
    })
}

/// The listener's side as a resumable state machine, so that one
/// listener can drive many handshakes at once: [`start`](Self::start) sends
/// the challenge, and [`advance`](Self::advance), called whenever the
/// socket is readable, consumes what has arrived without waiting. The
/// messages are [`server`]'s, byte for byte. Every handshake message we send
/// is small (under 100 bytes, three in all), so a send never waits on a
/// fresh socket's buffer and a peer that does not read cannot hold us.
pub(crate) struct ServerHandshake {
    step: Awaiting,
    /// The connection's own maximum message size, restored at the end.
    max: usize,
    deadline: Instant,
}

/// What a [`ServerHandshake`] waits for next.
enum Awaiting {
    /// Our challenge is sent; waiting for the digest of this message.
    Digest(Vec<u8>),
    /// We welcomed the client; waiting for its challenge.
    Challenge,
    /// We answered its challenge; waiting for `#WELCOME#`.
    Verdict,
}

impl ServerHandshake {
    /// Lowers the connection's maximum message size and sends the challenge.
    pub(crate) fn start<S, R>(
        conn: &Connection<S, R>,
        deadline: Instant,
    ) -> Result<Self, HandshakeFailure> {
        let max = conn.max_message_size();
        conn.set_max_message_size(MAX_MESSAGE);
        let mut hs = ServerHandshake {
            step: Awaiting::Challenge,
            max,
            deadline,
        };
        let sent = send_challenge(conn).map(|message| hs.step = Awaiting::Digest(message));
        hs.finish(conn, sent)?;
        Ok(hs)
    }

    /// When this handshake gives up.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Consumes the messages that have arrived: `Ok(true)` once the peer is
    /// authenticated, `Ok(false)` if more is awaited (and the deadline has
    /// not passed), an error if it failed or timed out. Never waits.
    pub(crate) fn advance<S, R>(
        &mut self,
        conn: &Connection<S, R>,
        key: &[u8],
    ) -> Result<bool, HandshakeFailure> {
        let result = self.step_all(conn, key);
        self.finish(conn, result)
    }

    /// Restores the maximum message size when the handshake is over.
    fn finish<S, R, T>(
        &self,
        conn: &Connection<S, R>,
        result: Result<T, HandshakeFailure>,
    ) -> Result<T, HandshakeFailure> {
        if result.is_err() {
            conn.set_max_message_size(self.max);
        }
        result
    }

    fn step_all<S, R>(
        &mut self,
        conn: &Connection<S, R>,
        key: &[u8],
    ) -> Result<bool, HandshakeFailure> {
        loop {
            let bytes = match conn.recv_bytes_timeout(Duration::ZERO) {
                Err(RecvTimeoutError::Timeout) if Instant::now() < self.deadline => {
                    return Ok(false);
                }
                other => map_recv(other)?,
            };
            match std::mem::replace(&mut self.step, Awaiting::Challenge) {
                Awaiting::Digest(message) => {
                    check_digest(conn, key, &message, &bytes)?;
                }
                Awaiting::Challenge => {
                    send_answer(conn, key, &bytes)?;
                    self.step = Awaiting::Verdict;
                }
                Awaiting::Verdict => {
                    check_verdict(&bytes)?;
                    conn.set_max_message_size(self.max);
                    return Ok(true);
                }
            }
        }
    }
}

/// Runs `f` with the connection's maximum message size lowered to
/// [`MAX_MESSAGE`].
fn with_small_messages<S, R>(
    conn: &Connection<S, R>,
    f: impl FnOnce() -> Result<(), HandshakeFailure>,
) -> Result<(), HandshakeFailure> {
    let max = conn.max_message_size();
    conn.set_max_message_size(MAX_MESSAGE);
    let result = f();
    conn.set_max_message_size(max);
    result
}

/// `{sha256}` followed by the HMAC-SHA256 of `message` under `key`.
fn digest(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    let mut out = DIGEST.to_vec();
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

/// Checks `response` against `message` in constant time.
fn verify(key: &[u8], message: &[u8], response: &[u8]) -> Result<(), AuthenticationError> {
    let Some(mac_bytes) = response.strip_prefix(DIGEST) else {
        return Err(AuthenticationError::Protocol(format!(
            "expected a {{sha256}} digest, got {} bytes",
            response.len()
        )));
    };
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.verify_slice(mac_bytes)
        .map_err(|_| AuthenticationError::WrongDigest)
}

fn send<S, R>(conn: &Connection<S, R>, bytes: &[u8]) -> Result<(), HandshakeFailure> {
    conn.send_bytes(bytes).map_err(|e| match e {
        SendError::Disconnected(()) => HandshakeFailure::Auth(AuthenticationError::Disconnected),
        SendError::Io((), e) => HandshakeFailure::Io(e),
        other => HandshakeFailure::Auth(AuthenticationError::Protocol(other.to_string())),
    })
}

fn recv<S, R>(conn: &Connection<S, R>, deadline: Instant) -> Result<Vec<u8>, HandshakeFailure> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    map_recv(conn.recv_bytes_timeout(timeout))
}

fn map_recv(r: Result<Vec<u8>, RecvTimeoutError>) -> Result<Vec<u8>, HandshakeFailure> {
    r.map_err(|e| match e {
        RecvTimeoutError::Timeout => HandshakeFailure::Auth(AuthenticationError::Timeout),
        RecvTimeoutError::Disconnected => HandshakeFailure::Auth(AuthenticationError::Disconnected),
        RecvTimeoutError::Io(e) if e.kind() != io::ErrorKind::InvalidData => {
            HandshakeFailure::Io(e)
        }
        // A corrupt frame, a typed message, one too large: not the protocol.
        other => HandshakeFailure::Auth(AuthenticationError::Protocol(other.to_string())),
    })
}

/// Python's `deliver_challenge`.
fn deliver_challenge<S, R>(
    conn: &Connection<S, R>,
    key: &[u8],
    deadline: Instant,
) -> Result<(), HandshakeFailure> {
    let message = send_challenge(conn)?;
    let response = recv(conn, deadline)?;
    check_digest(conn, key, &message, &response)
}

/// Sends `#CHALLENGE#{sha256}<40 fresh random bytes>`; returns the message
/// the answer must be the digest of (`{sha256}` and the bytes).
fn send_challenge<S, R>(conn: &Connection<S, R>) -> Result<Vec<u8>, HandshakeFailure> {
    let mut nonce = [0u8; NONCE_LEN];
    sys::random::fill(&mut nonce).map_err(HandshakeFailure::Io)?;
    let mut message = DIGEST.to_vec();
    message.extend_from_slice(&nonce);
    let mut challenge = CHALLENGE.to_vec();
    challenge.extend_from_slice(&message);
    send(conn, &challenge)?;
    Ok(message)
}

/// Checks the answer to our challenge and tells the peer the verdict.
fn check_digest<S, R>(
    conn: &Connection<S, R>,
    key: &[u8],
    message: &[u8],
    response: &[u8],
) -> Result<(), HandshakeFailure> {
    match verify(key, message, response) {
        Ok(()) => send(conn, WELCOME),
        Err(e) => {
            // Best effort: the peer may be gone already.
            let _ = conn.send_bytes(FAILURE);
            Err(e.into())
        }
    }
}

/// Python's `answer_challenge`.
fn answer_challenge<S, R>(
    conn: &Connection<S, R>,
    key: &[u8],
    deadline: Instant,
) -> Result<(), HandshakeFailure> {
    let challenge = recv(conn, deadline)?;
    send_answer(conn, key, &challenge)?;
    check_verdict(&recv(conn, deadline)?)
}

/// Answers a `#CHALLENGE#` with its digest.
fn send_answer<S, R>(
    conn: &Connection<S, R>,
    key: &[u8],
    challenge: &[u8],
) -> Result<(), HandshakeFailure> {
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(AuthenticationError::Protocol("expected a challenge".into()).into());
    };
    if !message.starts_with(DIGEST) || message.len() < DIGEST.len() + 20 {
        return Err(AuthenticationError::Protocol(
            "the challenge is not a {sha256} challenge of at least 20 bytes".into(),
        )
        .into());
    }
    send(conn, &digest(key, message))
}

/// `#WELCOME#` is success, `#FAILURE#` a rejection, anything else an error.
fn check_verdict(reply: &[u8]) -> Result<(), HandshakeFailure> {
    if reply == WELCOME {
        Ok(())
    } else if reply == FAILURE {
        Err(AuthenticationError::Rejected.into())
    } else {
        Err(AuthenticationError::Protocol("expected #WELCOME# or #FAILURE#".into()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_verifies_and_rejects() {
        let d = digest(b"key", b"{sha256}abc");
        assert_eq!(d.len(), DIGEST.len() + 32);
        verify(b"key", b"{sha256}abc", &d).unwrap();
        assert_eq!(
            verify(b"other", b"{sha256}abc", &d),
            Err(AuthenticationError::WrongDigest)
        );
        assert_eq!(
            verify(b"key", b"{sha256}abd", &d),
            Err(AuthenticationError::WrongDigest)
        );
        assert!(matches!(
            verify(b"key", b"{sha256}abc", b"garbage"),
            Err(AuthenticationError::Protocol(_))
        ));
        // The empty key is a key.
        let e = digest(b"", b"m");
        verify(b"", b"m", &e).unwrap();
    }

    #[test]
    fn matches_python_hmac_sha256() {
        // hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", "sha256")
        let d = digest(b"key", b"The quick brown fox jumps over the lazy dog");
        let hex: String = d[DIGEST.len()..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
