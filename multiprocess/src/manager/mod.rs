//! [`Manager`]: a server process that holds shared dicts, lists and values,
//! reached through typed proxies (Python's `multiprocessing.Manager()`).
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | `Manager`, its builder, `ManagerError`, the per-process client connections |
//! | `proxy.rs` | `DictProxy`, `ListProxy`, `ValueProxy` |
//! | `server.rs` | the server process: a `Listener`, a thread per client, the objects |
//! | `wire.rs` | the request and response types |
//!
//! The server stores keys and values as the bytes their proxies encoded, so
//! it needs no generic types: the proxies are typed, and a value decodes to
//! the type it was stored as or gives [`ManagerError::Decode`].

mod proxy;
mod server;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use proxy::{
    DictProxy, EventProxy, ListProxy, LockProxy, LockProxyGuard, QueueProxy, ValueProxy,
};
use wire::{Kind, Op, Request, Response};

use crate::connection::{Address, Client, ConnectError, Connection, Pipe, RecvTimeoutError};
use crate::process::{Process, current_process};

/// How long one request may wait for its answer before the call fails with
/// [`ManagerError::Timeout`] (a live server answers in microseconds; this
/// bounds a server that is stopped or overloaded).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Manager::new`] waits for its server to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to a manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The server process could not be started.
    #[error("cannot start the manager's server: {0}")]
    Start(String),
    /// The server could not be reached, or the connection to it broke: it
    /// was shut down, its owner exited, or it was killed.
    #[error("the manager at {address} is gone: {why}")]
    ServerGone {
        /// The server's address.
        address: String,
        /// What happened.
        why: String,
    },
    /// The server refused the authentication key.
    #[error("the manager at {0} refused the authentication key")]
    Auth(String),
    /// The server did not answer in time.
    #[error("the manager did not answer within {0:?}")]
    Timeout(Duration),
    /// A key or value could not be encoded (for example it holds an OS
    /// handle, which cannot be stored in the manager).
    #[error("cannot encode for the manager: {0}")]
    Encode(String),
    /// A stored value did not decode as the proxy's type (the object was
    /// made with other types).
    #[error("a value from the manager does not decode as {ty}: {why}")]
    Decode {
        /// The type the proxy expected.
        ty: &'static str,
        /// The decoder's message.
        why: String,
    },
    /// The server refused the request (an unknown object, or a named object
    /// of another kind).
    #[error("the manager refused the request: {0}")]
    Refused(String),
}

/// The connections of this process, one per manager address, shared by
/// every proxy of that manager here. Keyed by pid too: a forked child never
/// uses its parent's connection.
type Conns = HashMap<(u32, Address), Arc<Mutex<Connection<Request, Response>>>>;
static CONNS: Mutex<Option<Conns>> = Mutex::new(None);
/// Keys given to [`Manager::connect`] or a builder, by address; other
/// addresses use this process's [`authkey`](crate::ProcessInfo::authkey),
/// which children inherit.
static KEYS: Mutex<Option<HashMap<Address, Vec<u8>>>> = Mutex::new(None);

fn key_for(address: &Address) -> Vec<u8> {
    KEYS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|k| k.get(address).cloned())
        .unwrap_or_else(|| current_process().authkey().to_vec())
}

fn remember_key(address: &Address, key: &[u8]) {
    KEYS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(address.clone(), key.to_vec());
}

fn connection(
    address: &Address,
) -> Result<Arc<Mutex<Connection<Request, Response>>>, ManagerError> {
    let pid = std::process::id();
    let slot = (pid, address.clone());
    if let Some(c) = CONNS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.get(&slot).cloned())
    {
        return Ok(c);
    }
    let conn = Client::connect::<Request, Response>(address.clone(), Some(&key_for(address)))
        .map_err(|e| match e {
            ConnectError::Authentication(_) => ManagerError::Auth(address.to_string()),
            other => ManagerError::ServerGone {
                address: address.to_string(),
                why: other.to_string(),
            },
        })?;
    // Over a Unix socket, go on over a shared-memory pipe from the server.
    let conn = if matches!(address, Address::Tcp(_)) {
        conn
    } else {
        upgrade(conn).map_err(|why| ManagerError::ServerGone {
            address: address.to_string(),
            why,
        })?
    };
    let conn = Arc::new(Mutex::new(conn));
    CONNS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(slot, conn.clone());
    Ok(conn)
}

/// Trades a socket connection for the server's pipe.
fn upgrade(conn: Connection<Request, Response>) -> Result<Connection<Request, Response>, String> {
    conn.send(Request::Upgrade).map_err(|e| e.to_string())?;
    match conn.recv_timeout(CALL_TIMEOUT) {
        Ok(Response::Pipe(pipe)) => Ok(*pipe),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

fn forget(address: &Address) {
    if let Some(m) = CONNS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
    {
        m.remove(&(std::process::id(), address.clone()));
    }
}

/// One request, one response, on this process's connection to `address`.
/// A broken connection is dropped (the next call reconnects, and fails
/// with `ServerGone` if the server is gone).
pub(crate) fn call(address: &Address, request: Request) -> Result<Response, ManagerError> {
    let conn = connection(address)?;
    let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
    let gone = |why: String| ManagerError::ServerGone {
        address: address.to_string(),
        why,
    };
    if let Err(e) = conn.send(request) {
        drop(conn);
        forget(address);
        return Err(gone(e.to_string()));
    }
    match conn.recv_timeout(CALL_TIMEOUT) {
        Ok(Response::Error(why)) => Err(ManagerError::Refused(why)),
        Ok(r) => Ok(r),
        Err(RecvTimeoutError::Timeout) => {
            // A late answer would be read by the next call: start afresh.
            drop(conn);
            forget(address);
            Err(ManagerError::Timeout(CALL_TIMEOUT))
        }
        Err(e) => {
            drop(conn);
            forget(address);
            Err(gone(e.to_string()))
        }
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ManagerError> {
    let mut buf = Vec::new();
    if crate::codec::encode_plain_into(value, &mut buf) {
        return Ok(buf);
    }
    match crate::codec::encode(value) {
        Ok((_, fds)) if !fds.is_empty() => Err(ManagerError::Encode(
            "the value holds an OS handle (a Queue, Lock, Connection...), which cannot be \
             stored in a manager"
                .into(),
        )),
        Ok(_) => Err(ManagerError::Encode("the value does not encode".into())),
        Err(e) => Err(ManagerError::Encode(e.to_string())),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ManagerError> {
    crate::codec::decode_plain::<T>(bytes).map_err(|e| ManagerError::Decode {
        ty: std::any::type_name::<T>(),
        why: e.to_string(),
    })
}

pub(crate) fn call_op(
    address: &Address,
    id: u64,
    kind: Kind,
    op: Op,
) -> Result<Response, ManagerError> {
    call(address, Request::Call(id, kind, op))
}

/// A manager: a server process holding shared dicts, lists and values, and
/// the typed proxies to them (Python's `multiprocessing.Manager()`).
///
/// Proxies are handles: `Clone`, serde (put them in a child's arguments or
/// in a `Queue`), and every method is one request to the server. The server
/// is a daemon child of the process that made the `Manager`: it stops when
/// the `Manager` is dropped or [`shutdown`](Self::shutdown), or when that
/// process dies; a proxy then fails with [`ManagerError::ServerGone`],
/// never hangs.
///
/// A manager can also listen on a TCP or Unix address
/// ([`ManagerBuilder::address`]), with a key, for processes that did not
/// start it: they use [`Manager::connect`] and find objects by name
/// ([`dict_named`](Self::dict_named) and the like).
///
/// # Examples
///
/// ```no_run
/// use multiprocess::{DictProxy, ListProxy, Manager, Process};
///
/// fn fill(d: DictProxy<u32, String>, l: ListProxy<u32>) {
///     d.insert(1, "1".into()).unwrap();
///     d.insert(2, "2".into()).unwrap();
///     l.push(9).unwrap();
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiprocess::init();
///     let manager = Manager::new()?;
///     let d = manager.dict::<u32, String>()?;
///     let l = manager.list::<u32>()?;
///     let p = Process::new(fill, (d.clone(), l.clone()));
///     p.start()?;
///     p.join()?;
///     assert_eq!(d.get(&2)?, Some("2".to_string()));
///     assert_eq!(l.to_vec()?, [9]);
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Manager {
    address: Address,
    /// The server process, when this `Manager` started it.
    server: Option<Process>,
}

/// Options for a [`Manager`]; from [`Manager::builder`].
#[derive(Debug, Default, Clone)]
pub struct ManagerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
}

impl ManagerBuilder {
    /// Listens on `address` (`"127.0.0.1:0"` for TCP on a free port, a path
    /// for a Unix socket) instead of a private abstract Unix name; see
    /// [`Manager::address`] for the address taken.
    pub fn address(mut self, address: impl Into<Address>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The key clients must hold (default: this process's
    /// [`authkey`](crate::ProcessInfo::authkey), which its children
    /// inherit, as Python's).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.authkey = Some(key.to_vec());
        self
    }

    /// Starts the server process and waits until it listens.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`] if the process cannot start or the address
    /// cannot be bound.
    pub fn start(self) -> Result<Manager, ManagerError> {
        let address = self.address.unwrap_or_else(|| {
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let nonce: u64 = u64::from_ne_bytes(
                current_process().authkey()[..8]
                    .try_into()
                    .unwrap_or([0; 8]),
            );
            Address::Abstract(
                format!(
                    "multiprocess-manager-{}-{}-{:x}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed),
                    nonce
                        ^ std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_nanos() as u64)
                            .unwrap_or(0)
                )
                .into_bytes(),
            )
        });
        let key = self
            .authkey
            .unwrap_or_else(|| current_process().authkey().to_vec());
        let (ready_rx, ready_tx) =
            Pipe::simplex::<String>().map_err(|e| ManagerError::Start(e.to_string()))?;
        let server = Process::builder()
            .name("Manager")
            .daemon(true)
            .target(server::serve, (address, key.clone(), ready_tx));
        server
            .start()
            .map_err(|e| ManagerError::Start(e.to_string()))?;
        let said = ready_rx
            .recv_timeout(START_TIMEOUT)
            .map_err(|e| ManagerError::Start(format!("the server did not start: {e}")))?;
        let address: Address = match said.strip_prefix("cannot bind: ") {
            Some(why) => return Err(ManagerError::Start(why.to_string())),
            None => parse_address(&said),
        };
        remember_key(&address, &key);
        Ok(Manager {
            address,
            server: Some(server),
        })
    }
}

/// The inverse of `Address`'s `Display`.
fn parse_address(text: &str) -> Address {
    if let Some(name) = text.strip_prefix("\\0") {
        Address::Abstract(name.as_bytes().to_vec())
    } else if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        Address::Tcp(addr)
    } else {
        Address::Unix(text.into())
    }
}

impl Manager {
    /// Starts a manager's server process (Python's `Manager()`), with the
    /// default start method.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`] if the server cannot start.
    pub fn new() -> Result<Manager, ManagerError> {
        Manager::builder().start()
    }

    /// A builder, for an address and a key.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Connects to a manager started elsewhere (Python's
    /// `BaseManager(address, authkey).connect()`); the returned `Manager`
    /// does not own the server ([`shutdown`](Self::shutdown) and drop leave
    /// it running).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Auth`] for a wrong key,
    /// [`ManagerError::ServerGone`] if nothing answers there.
    pub fn connect(address: impl Into<Address>, authkey: &[u8]) -> Result<Manager, ManagerError> {
        let address = address.into();
        remember_key(&address, authkey);
        forget(&address);
        call(&address, Request::Pid)?;
        Ok(Manager {
            address,
            server: None,
        })
    }

    /// The address the server listens on.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The server process's pid.
    ///
    /// # Errors
    ///
    /// As for any request.
    pub fn server_pid(&self) -> Result<u32, ManagerError> {
        match call(&self.address, Request::Pid)? {
            Response::Pid(pid) => Ok(pid),
            other => Err(ManagerError::Refused(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    fn create(
        &self,
        kind: Kind,
        types: &str,
        init: Option<Vec<u8>>,
        name: Option<&str>,
    ) -> Result<u64, ManagerError> {
        let types = types.to_string();
        let request = match name {
            Some(n) => Request::Named(n.to_string(), kind, types, init),
            None => Request::Create(kind, types, init),
        };
        match call(&self.address, request)? {
            Response::Id(id) => Ok(id),
            other => Err(ManagerError::Refused(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// A new shared dict (Python's `manager.dict()`).
    ///
    /// # Errors
    ///
    /// As for any request.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>, ManagerError> {
        Ok(DictProxy::new(
            self.address.clone(),
            self.create(Kind::Dict, std::any::type_name::<(K, V)>(), None, None)?,
        ))
    }

    /// A new shared list (Python's `manager.list()`).
    ///
    /// # Errors
    ///
    /// As for any request.
    pub fn list<T>(&self) -> Result<ListProxy<T>, ManagerError> {
        Ok(ListProxy::new(
            self.address.clone(),
            self.create(Kind::List, std::any::type_name::<T>(), None, None)?,
        ))
    }

    /// A new shared value (Python's `manager.Value(typecode, value)`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`] if `init` does not encode; as for any
    /// request.
    pub fn value<T: Serialize>(&self, init: T) -> Result<ValueProxy<T>, ManagerError> {
        let init = encode(&init)?;
        Ok(ValueProxy::new(
            self.address.clone(),
            self.create(Kind::Value, std::any::type_name::<T>(), Some(init), None)?,
        ))
    }

    /// A new lock (Python's `manager.Lock()`); see [`LockProxy`].
    ///
    /// # Errors
    ///
    /// As for any request.
    pub fn lock(&self) -> Result<LockProxy, ManagerError> {
        Ok(LockProxy::new(
            self.address.clone(),
            self.create(Kind::Lock, "lock", None, None)?,
        ))
    }

    /// A new event (Python's `manager.Event()`).
    ///
    /// # Errors
    ///
    /// As for any request.
    pub fn event(&self) -> Result<EventProxy, ManagerError> {
        Ok(EventProxy::new(
            self.address.clone(),
            self.create(Kind::Event, "event", None, None)?,
        ))
    }

    /// A new unbounded queue of `T` (Python's `manager.Queue()`).
    ///
    /// # Errors
    ///
    /// As for any request.
    pub fn queue<T>(&self) -> Result<QueueProxy<T>, ManagerError> {
        Ok(QueueProxy::new(
            self.address.clone(),
            self.create(Kind::Queue, std::any::type_name::<T>(), None, None)?,
        ))
    }

    /// The dict named `name` on the server, made if missing: how processes
    /// that did not start the manager find a shared object (Python's
    /// registered typeids).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Refused`] if `name` is an object of another kind.
    pub fn dict_named<K, V>(&self, name: &str) -> Result<DictProxy<K, V>, ManagerError> {
        Ok(DictProxy::new(
            self.address.clone(),
            self.create(
                Kind::Dict,
                std::any::type_name::<(K, V)>(),
                None,
                Some(name),
            )?,
        ))
    }

    /// The list named `name`, made if missing; see
    /// [`dict_named`](Self::dict_named).
    ///
    /// # Errors
    ///
    /// As for [`dict_named`](Self::dict_named).
    pub fn list_named<T>(&self, name: &str) -> Result<ListProxy<T>, ManagerError> {
        Ok(ListProxy::new(
            self.address.clone(),
            self.create(Kind::List, std::any::type_name::<T>(), None, Some(name))?,
        ))
    }

    /// The value named `name`, made with `init` if missing; see
    /// [`dict_named`](Self::dict_named).
    ///
    /// # Errors
    ///
    /// As for [`dict_named`](Self::dict_named).
    pub fn value_named<T: Serialize>(
        &self,
        name: &str,
        init: T,
    ) -> Result<ValueProxy<T>, ManagerError> {
        let init = encode(&init)?;
        Ok(ValueProxy::new(
            self.address.clone(),
            self.create(
                Kind::Value,
                std::any::type_name::<T>(),
                Some(init),
                Some(name),
            )?,
        ))
    }

    /// Stops the server now (Python's `shutdown()`); proxies then fail with
    /// [`ManagerError::ServerGone`]. Does nothing for a `Manager` from
    /// [`connect`](Self::connect), which does not own the server.
    pub fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = call(&self.address, Request::Shutdown);
            forget(&self.address);
            if !matches!(server.join_timeout(Duration::from_secs(5)), Ok(Some(_))) {
                let _ = server.kill();
                let _ = server.join_timeout(Duration::from_secs(5));
            }
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.shutdown();
    }
}
