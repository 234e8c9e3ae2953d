//! The resource tracker: unlinks named shared memory whose users all died.
//!
//! CPython's `resource_tracker`, reshaped for a process tree that may be
//! killed at any point.
//!
//! **Who shares a tracker.** Every process of one *tree* — the topmost
//! ancestor running this executable, and its descendants running it too
//! (fork-server, spawned and forked children, pool workers) — uses the
//! tracker listening on the abstract Unix socket
//! `multiprocess-shm-<uid>-<root pid>`. A process finds the root by walking
//! its parent chain while the executable's (device, inode) matches, so no
//! address has to travel with the children.
//!
//! **Starting.** The first process that needs the tracker binds and listens
//! on the address itself, connects to it (the connection waits in the
//! backlog), and re-executes the binary with the listening socket in
//! [`TRACKER_ENV`]; `init()` dispatches that process to [`serve`]. Two
//! processes racing to start it: one bind fails with `EADDRINUSE`, and that
//! one connects to the winner. A connection counts once the tracker has
//! answered with one byte, so a connection that lands while a tracker is
//! exiting is retried, never silently lost.
//!
//! **Protocol.** Client to tracker, one record per message: an op byte, a
//! length byte, the name. `C` (created) and `R` (attached) register the
//! name as held by this connection (a process sends one on every create and
//! attach: the name may have been unlinked and created again since; the
//! tracker counts a process once per name); `U` says the name was unlinked,
//! so the tracker forgets it for every holder.
//!
//! **Who owns a name.** The tree that created it. The tracker unlinks a
//! name only if a process of its own tree created it (sent `C`) and every
//! holder of the tree is gone without unlinking it. A name the tree only
//! attached (`R`: created by another launch of the program, or by another
//! program) is never unlinked by this tracker: when its last holder here
//! goes, the tracker just forgets it. (Python's resource tracker unlinks
//! whatever a process registered, attached or not: gh-82300.) Anyone may
//! still unlink a name explicitly (`SharedMemory::unlink`).
//!
//! **Cleanup.** A connection closes when its process exits or is killed
//! (nothing else holds it: the socket is close-on-exec and a forked child
//! opens its own). The tracker then drops that process's holds; a name whose
//! last holder is gone is unlinked, with a warning on stderr like Python's.
//! When no connection is left the tracker exits (status 1 if it ever
//! cleaned up a leak, as Python's does). It is single-threaded and holds no
//! descriptor of its clients but their sockets, so it never keeps a test or
//! CI job waiting: it is gone as soon as the last process of the tree is.
//! If the tracker itself is killed, the next message fails and the client
//! starts a new one and registers its names again.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sys;
use crate::sys::abstract_socket as sock;

/// Environment variable naming the tracker's listening socket.
pub(crate) const TRACKER_ENV: &str = "MULTIPROCESS_SHM_TRACKER_FD";

/// How long a client keeps trying to reach the tracker, waiting for its
/// greeting included (a fresh tracker is a re-executed binary).
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a fresh tracker waits for its first client before giving up.
const FIRST_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

const OP_REGISTER: u8 = b'R';
const OP_CREATED: u8 = b'C';
const OP_UNLINK: u8 = b'U';
const GREETING: u8 = b'K';

/// This process's connection to its tree's tracker.
struct Client {
    sock: OwnedFd,
    /// The process that opened the connection; a forked child opens its own.
    owner: u32,
    /// Names this process registered (and whether it created them), sent
    /// again to a restarted tracker.
    names: BTreeMap<String, bool>,
    /// When `names` reaches this size, names unlinked since are dropped.
    prune_at: usize,
}

/// The smallest `Client::prune_at`.
const PRUNE_MIN: usize = 64;

static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

/// The tracker's address for this process tree.
fn address() -> String {
    let me = std::process::id();
    let mut root = me;
    if let Ok(exe) = sys::code::exe_identity() {
        // Bounded, in case of a cycle through a recycled pid.
        for _ in 0..64 {
            match sock::parent_of(root) {
                Some(parent) if parent > 1 && sock::exe_of(parent) == Some(exe) => root = parent,
                _ => break,
            }
        }
    }
    format!("multiprocess-shm-{}-{root}", sock::own_uid())
}

/// Opens a greeted connection to the tree's tracker, starting it if needed.
fn open() -> io::Result<OwnedFd> {
    let addr = address();
    let deadline = Instant::now() + OPEN_TIMEOUT;
    let mut last = None;
    for attempt in 0.. {
        if attempt > 0 {
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let conn = match sock::connect(&addr) {
            Ok(conn) => conn,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => match start(&addr) {
                Ok(conn) => conn,
                // Another process won the race to start it: connect again.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        match greeted(conn, deadline) {
            Ok(conn) => return Ok(conn),
            // The tracker was exiting as we connected: try again.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => last = Some(e),
            // Silent past the deadline, or another user's socket.
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("cannot reach the shared memory tracker")))
}

/// Binds the tracker's address, queues our connection, and starts the
/// tracker process on the listening socket.
fn start(addr: &str) -> io::Result<OwnedFd> {
    if !crate::process::init_called() {
        return Err(io::Error::other(
            "the shared memory tracker needs multiprocess::init() first in main \
             (or init_before_main!() in tests)",
        ));
    }
    let listener = sock::listen(addr)?;
    let conn = sock::connect(addr)?;
    sys::process::spawn_self(&sys::process::SpawnRequest {
        fd_env: TRACKER_ENV,
        keep_fd: listener.as_fd(),
        die_with_parent: false,
        null_stdin: true,
    })?;
    // The tracker is reaped by our exit or by init; it outlives us on
    // purpose, to clean up after us.
    Ok(conn)
}

/// Waits for the tracker's greeting byte and checks it runs as our user.
fn greeted(conn: OwnedFd, deadline: Instant) -> io::Result<OwnedFd> {
    if !sys::socket::poll_readable(conn.as_fd(), Some(deadline))? {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the shared memory tracker did not answer",
        ));
    }
    let mut b = [0u8; 1];
    match sock::read_some(&conn, &mut b)? {
        1 if b[0] == GREETING => {}
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the shared memory tracker closed the connection",
            ));
        }
    }
    if sock::peer_uid(&conn)? != sock::own_uid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the shared memory tracker's address is held by another user",
        ));
    }
    Ok(conn)
}

fn record(op: u8, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(2 + name.len());
    m.push(op);
    m.push(name.len() as u8); // names are at most 254 bytes (validated)
    m.extend_from_slice(name.as_bytes());
    m
}

/// This process's client, connected (and re-registered after a restart).
fn with_client<T>(f: impl Fn(&mut Client) -> io::Result<T>) -> io::Result<T> {
    let mut guard = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    let me = sys::pid::current_pid();
    if guard.as_ref().is_some_and(|c| c.owner != me) {
        // Forked from a process with a connection: its holds are its own.
        *guard = None;
    }
    for attempt in 0..2 {
        if guard.is_none() {
            *guard = Some(Client {
                sock: open()?,
                owner: me,
                names: BTreeMap::new(),
                prune_at: PRUNE_MIN,
            });
        }
        let client = guard.as_mut().expect("just set");
        match f(client) {
            Ok(v) => return Ok(v),
            // The tracker died: start another and register our names again.
            Err(e) if attempt == 0 && is_disconnect(&e) => {
                let names = std::mem::take(&mut client.names);
                let prune_at = client.prune_at;
                let sock = open()?;
                for (n, &created) in &names {
                    sock::send_all(&sock, &record(op_of(created), n))?;
                }
                *client = Client {
                    sock,
                    owner: me,
                    names,
                    prune_at,
                };
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns on its second attempt")
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
    )
}

/// Makes sure this process is connected to its tracker.
pub(crate) fn connect() -> io::Result<()> {
    with_client(|_| Ok(()))
}

fn op_of(created: bool) -> u8 {
    if created { OP_CREATED } else { OP_REGISTER }
}

/// Registers `name` as held by this process, which `created` it (so its
/// tree owns it) or attached it (so its tree's tracker must never unlink
/// it).
///
/// Sent every time, not once per name: another process may have unlinked
/// the name since this one registered it (the tracker then forgot every hold
/// on it) and created it again, and this process holds the new segment now.
/// The tracker ignores a hold it already has (but learns a creation).
pub(crate) fn register(name: &str, created: bool) -> io::Result<()> {
    with_client(|c| {
        sock::send_all(&c.sock, &record(op_of(created), name))?;
        // Created before, it stays ours on a later attach.
        let new = match c.names.get_mut(name) {
            Some(ours) => {
                *ours |= created;
                false
            }
            None => c.names.insert(name.to_owned(), created).is_none(),
        };
        if new && c.names.len() >= c.prune_at {
            // Names other processes unlinked would stay here for good (a
            // long-lived process attaching many segments grows without
            // bound): forget the ones that are gone, amortized.
            c.names.retain(|n, _| sys::shm_named::exists(n));
            c.prune_at = (2 * c.names.len()).max(PRUNE_MIN);
        }
        Ok(())
    })
}

/// Tells the tracker that `name` was unlinked. Best effort: a tracker that
/// is unreachable will find the name gone when it tries to unlink it.
pub(crate) fn unregister(name: &str) {
    let _ = with_client(|c| {
        c.names.remove(name);
        sock::send_all(&c.sock, &record(OP_UNLINK, name))
    });
}

/// One connected process, as the tracker sees it.
struct Peer {
    sock: OwnedFd,
    buf: Vec<u8>,
    names: BTreeSet<String>,
}

/// The tracker's state: who holds which name, and whether this tree
/// created it (only then may the tracker unlink it).
#[derive(Default)]
struct Table {
    holders: BTreeMap<String, Holders>,
    leaked_any: bool,
}

#[derive(Default)]
struct Holders {
    count: usize,
    created_here: bool,
}

impl Table {
    /// Applies one record from `peers[i]`.
    fn apply(&mut self, peers: &mut [Peer], i: usize, op: u8, name: String) {
        match op {
            OP_REGISTER | OP_CREATED => {
                let new = peers[i].names.insert(name.clone());
                let h = self.holders.entry(name).or_default();
                h.count += usize::from(new);
                h.created_here |= op == OP_CREATED;
            }
            OP_UNLINK => {
                self.holders.remove(&name);
                for p in peers.iter_mut() {
                    p.names.remove(&name);
                }
            }
            _ => {}
        }
    }

    /// Drops a gone peer's holds; unlinks names nobody holds any more.
    fn release(&mut self, peer: Peer) {
        let mut leaked = Vec::new();
        for name in peer.names {
            let Some(h) = self.holders.get_mut(&name) else {
                continue;
            };
            h.count -= 1;
            if h.count == 0 {
                let created_here = h.created_here;
                self.holders.remove(&name);
                // Another tree's name, only attached here: not ours to
                // unlink.
                if created_here && sys::shm_named::unlink(&name).is_ok() {
                    leaked.push(name);
                }
            }
        }
        if !leaked.is_empty() {
            self.leaked_any = true;
            eprintln!(
                "multiprocess: resource_tracker: There appear to be {} leaked shared_memory \
                 objects to clean up at shutdown: {leaked:?}",
                leaked.len()
            );
        }
    }
}

/// Parses the complete records in `buf`, leaving a partial one.
fn take_records(buf: &mut Vec<u8>) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 2 {
        let len = buf[at + 1] as usize;
        if buf.len() - at - 2 < len {
            break;
        }
        let name = String::from_utf8_lossy(&buf[at + 2..at + 2 + len]).into_owned();
        out.push((buf[at], name));
        at += 2 + len;
    }
    buf.drain(..at);
    out
}

/// The tracker's main loop; never returns.
///
/// Each round drains every client's socket before handling any hang-up, so
/// a registration that causally precedes another process's exit (sent, then
/// signalled to that process, which then exits) is always counted before
/// that exit is: its bytes were buffered before the hang-up was visible.
pub(crate) fn serve(listener: OwnedFd) -> ! {
    sys::process::set_helper_name("tracker");
    // Outlive a Ctrl-C of the process group: cleaning up after it is the
    // point. The tracker still exits once its last client is gone.
    sys::signal::ignore_termination_signals();
    let mut peers: Vec<Peer> = Vec::new();
    let mut table = Table::default();
    let mut had_peer = false;
    let first_deadline = Instant::now() + FIRST_CLIENT_TIMEOUT;
    let mut chunk = [0u8; 4096];
    loop {
        let deadline = match (had_peer, peers.is_empty()) {
            (false, _) => Some(first_deadline),
            // The last client is gone: only take connections already queued.
            (true, true) => Some(Instant::now()),
            (true, false) => None,
        };
        let mut watch: Vec<BorrowedFd<'_>> = vec![listener.as_fd()];
        watch.extend(peers.iter().map(|p| p.sock.as_fd()));
        let ready = sys::fd::wait_any_readable(&watch, deadline);
        drop(watch);
        match ready {
            Ok(Some(_)) => {}
            Ok(None) if peers.is_empty() => {
                drop(listener);
                sys::process::exit_now(i32::from(table.leaked_any))
            }
            Ok(None) => continue,
            Err(_) => sys::process::exit_now(2),
        }
        if let Ok(Some(conn)) = sock::accept_nonblocking(&listener) {
            let ours = sock::peer_uid(&conn).is_ok_and(|uid| uid == sock::own_uid());
            if ours && sock::send_all(&conn, &[GREETING]).is_ok() {
                had_peer = true;
                peers.push(Peer {
                    sock: conn,
                    buf: Vec::new(),
                    names: BTreeSet::new(),
                });
            }
        }
        let mut gone = Vec::new();
        for i in 0..peers.len() {
            loop {
                match sock::read_nonblocking(&peers[i].sock, &mut chunk) {
                    Ok(Some(0)) | Err(_) => {
                        gone.push(i);
                        break;
                    }
                    Ok(Some(n)) => peers[i].buf.extend_from_slice(&chunk[..n]),
                    Ok(None) => break,
                }
            }
            for (op, name) in take_records(&mut peers[i].buf) {
                table.apply(&mut peers, i, op, name);
            }
        }
        // End of stream or reset: those processes are gone.
        for i in gone.into_iter().rev() {
            let peer = peers.remove(i);
            table.release(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "the tracker needs stat, abstract sockets and a child process; Miri emulates none"
    )]
    fn records_round_trip_and_partial_records_wait() {
        let mut buf = record(OP_REGISTER, "a");
        buf.extend(record(OP_UNLINK, "bcd"));
        buf.extend(&record(OP_REGISTER, "xyz")[..3]);
        let got = take_records(&mut buf);
        assert_eq!(
            got,
            vec![(OP_REGISTER, "a".to_owned()), (OP_UNLINK, "bcd".to_owned())]
        );
        assert_eq!(buf, &record(OP_REGISTER, "xyz")[..3]);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "the tracker needs stat, abstract sockets and a child process; Miri emulates none"
    )]
    fn address_names_this_tree() {
        let a = address();
        assert!(a.starts_with(&format!("multiprocess-shm-{}-", sock::own_uid())));
        assert_eq!(a, address());
    }
}
