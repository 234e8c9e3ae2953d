//! The manager's server process: a listener, one thread per client
//! connection (as Python's), and the objects behind one lock.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::wire::{Kind, Op, Request, Response};
use crate::connection::{Address, Connection, Listener, RecvError};

/// A dict keeping insertion order, as Python's.
#[derive(Default)]
struct Dict {
    map: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    next: u64,
}

impl Dict {
    fn sorted(&self) -> Vec<(&Vec<u8>, &Vec<u8>)> {
        let mut all: Vec<_> = self.map.iter().map(|(k, (s, v))| (*s, k, v)).collect();
        all.sort_unstable_by_key(|e| e.0);
        all.into_iter().map(|(_, k, v)| (k, v)).collect()
    }
}

enum Object {
    Dict(Dict),
    List(Vec<Vec<u8>>),
    Value(Vec<u8>),
    /// The client holding it, if any.
    Lock(Option<u64>),
    Event(bool),
    Queue(std::collections::VecDeque<Vec<u8>>),
}

impl Object {
    fn new(kind: Kind, init: Option<Vec<u8>>) -> Object {
        match kind {
            Kind::Dict => Object::Dict(Dict::default()),
            Kind::List => Object::List(Vec::new()),
            Kind::Value => Object::Value(init.unwrap_or_default()),
            Kind::Lock => Object::Lock(None),
            Kind::Event => Object::Event(false),
            Kind::Queue => Object::Queue(Default::default()),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Object::Dict(_) => Kind::Dict,
            Object::List(_) => Kind::List,
            Object::Value(_) => Kind::Value,
            Object::Lock(_) => Kind::Lock,
            Object::Event(_) => Kind::Event,
            Object::Queue(_) => Kind::Queue,
        }
    }
}

#[derive(Default)]
struct Objects {
    by_id: HashMap<u64, Object>,
    /// The proxy types each object was made with.
    types: HashMap<u64, String>,
    by_name: HashMap<String, u64>,
    next: u64,
}

impl Objects {
    fn create(&mut self, kind: Kind, types: String, init: Option<Vec<u8>>) -> u64 {
        self.next += 1;
        self.by_id.insert(self.next, Object::new(kind, init));
        self.types.insert(self.next, types);
        self.next
    }
}

/// The objects, and the condition variable every blocking call (a lock
/// acquire, an event wait, a queue take) waits on; any change that may end
/// a wait notifies it.
#[derive(Default)]
struct State {
    objects: Mutex<Objects>,
    changed: Condvar,
    next_client: std::sync::atomic::AtomicU64,
}

type Shared = Arc<State>;

fn lock(state: &Shared) -> MutexGuard<'_, Objects> {
    state.objects.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The server's body: binds `address` with `authkey`, says so on `ready`,
/// and serves until a `Shutdown` request (or until its owner is gone,
/// which ends this daemon process).
pub(crate) fn serve(
    address: Address,
    authkey: Vec<u8>,
    ready: Connection<String, std::convert::Infallible>,
) {
    let listener = match Listener::<Response, Request>::bind(address, Some(&authkey)) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(format!("cannot bind: {e}"));
            return;
        }
    };
    let _ = ready.send(format!("{}", listener.address()));
    drop(ready);
    let objects: Shared = Arc::default();
    loop {
        // A client that fails the handshake (wrong key) is refused there and
        // costs nothing more.
        let Ok(conn) = listener.accept() else {
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        };
        let objects = objects.clone();
        let _ = std::thread::Builder::new()
            .name("manager-client".into())
            .spawn(move || client(conn, objects));
    }
}

/// Serves one client until it disconnects. A client killed mid-request
/// ends only its own thread.
fn client(mut conn: Connection<Response, Request>, objects: Shared) {
    let me = objects
        .next_client
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    // Whatever way this client goes, the locks it holds are released.
    struct Gone(Shared, u64);
    impl Drop for Gone {
        fn drop(&mut self) {
            let mut objects = lock(&self.0);
            for object in objects.by_id.values_mut() {
                if let Object::Lock(holder) = object
                    && *holder == Some(self.1)
                {
                    *holder = None;
                }
            }
            drop(objects);
            self.0.changed.notify_all();
        }
    }
    let _gone = Gone(objects.clone(), me);
    loop {
        let request = match conn.recv() {
            Ok(r) => r,
            Err(RecvError::Disconnected) => return,
            Err(e) => {
                let _ = conn.send(Response::Error(format!("bad request: {e}")));
                continue;
            }
        };
        let response = match request {
            Request::Shutdown => {
                let _ = conn.send(Response::Unit);
                std::process::exit(0);
            }
            Request::Pid => Response::Pid(std::process::id()),
            Request::Upgrade => match crate::connection::Pipe::new::<Response, Request>() {
                Ok((ours, theirs)) => match conn.send(Response::Pipe(Box::new(theirs))) {
                    // From now on this client talks over the pipe; the
                    // socket is dropped.
                    Ok(()) => {
                        conn = ours;
                        continue;
                    }
                    Err(_) => return,
                },
                Err(e) => Response::Error(format!("cannot make a pipe: {e}")),
            },
            Request::Create(kind, types, init) => {
                Response::Id(lock(&objects).create(kind, types, init))
            }
            Request::Named(name, kind, types, init) => {
                let mut objects = lock(&objects);
                match objects.by_name.get(&name).copied() {
                    Some(id) => {
                        let had = objects.by_id.get(&id).map(Object::kind);
                        let had_types = objects.types.get(&id).cloned().unwrap_or_default();
                        if had == Some(kind) && had_types == types {
                            Response::Id(id)
                        } else {
                            Response::Error(format!(
                                "{name:?} is a {had:?} of {had_types} on the server, not a \
                                 {kind:?} of {types}"
                            ))
                        }
                    }
                    None => {
                        let id = objects.create(kind, types, init);
                        objects.by_name.insert(name, id);
                        Response::Id(id)
                    }
                }
            }
            Request::Call(id, kind, op) => call(&objects, me, id, kind, op),
        };
        if conn.send(response).is_err() {
            return;
        }
    }
}

/// Runs one operation; a blocking one waits on the condition variable, at
/// most its own limit.
fn call(state: &Shared, me: u64, id: u64, kind: Kind, op: Op) -> Response {
    let mut objects = lock(state);
    let deadline = match &op {
        Op::Acquire(ms) | Op::Wait(ms) | Op::Take(ms) => {
            Instant::now().checked_add(Duration::from_millis(*ms))
        }
        _ => None,
    };
    loop {
        let Some(object) = objects.by_id.get_mut(&id) else {
            return Response::Error(format!("no object {id} on the server"));
        };
        if object.kind() != kind {
            return Response::Error(format!(
                "object {id} is a {:?}, not a {kind:?}",
                object.kind()
            ));
        }
        let ready = match (&*object, &op) {
            (Object::Lock(holder), Op::Acquire(_)) => holder.is_none(),
            (Object::Event(set), Op::Wait(_)) => *set,
            (Object::Queue(q), Op::Take(_)) => !q.is_empty(),
            _ => true,
        };
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if ready || left == Some(Duration::ZERO) {
            let response = match (object, op) {
                (Object::Lock(holder), Op::Acquire(_)) => {
                    if ready {
                        *holder = Some(me);
                    }
                    Response::Bool(ready)
                }
                (Object::Lock(holder), Op::Release) => {
                    if *holder != Some(me) {
                        return Response::Error(
                            "release of a lock this client does not hold".into(),
                        );
                    }
                    *holder = None;
                    state.changed.notify_all();
                    Response::Unit
                }
                (Object::Event(set), Op::Wait(_)) => Response::Bool(*set),
                (Object::Event(set), Op::Set) => {
                    *set = true;
                    state.changed.notify_all();
                    Response::Unit
                }
                (Object::Event(set), Op::Clear) => {
                    *set = false;
                    Response::Unit
                }
                (Object::Event(set), Op::IsSet) => Response::Bool(*set),
                (Object::Queue(q), Op::Take(_)) => Response::Maybe(q.pop_front()),
                (Object::Queue(q), Op::Put(item)) => {
                    q.push_back(item);
                    state.changed.notify_all();
                    Response::Unit
                }
                (Object::Queue(q), Op::Len) => Response::Count(q.len() as u64),
                (object, op) => apply(object, op),
            };
            return response;
        }
        let wait = left.unwrap_or(Duration::from_secs(1));
        objects = state
            .changed
            .wait_timeout(objects, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

fn apply(object: &mut Object, op: Op) -> Response {
    match (object, op) {
        (Object::Dict(d), Op::Insert(k, v)) => {
            let seq = match d.map.get(&k) {
                Some((seq, _)) => *seq,
                None => {
                    d.next += 1;
                    d.next
                }
            };
            Response::Maybe(d.map.insert(k, (seq, v)).map(|(_, old)| old))
        }
        (Object::Dict(d), Op::Get(k)) => Response::Maybe(d.map.get(&k).map(|(_, v)| v.clone())),
        (Object::Dict(d), Op::Remove(k)) => Response::Maybe(d.map.remove(&k).map(|(_, v)| v)),
        (Object::Dict(d), Op::Contains(k)) => Response::Bool(d.map.contains_key(&k)),
        (Object::Dict(d), Op::GetOrInsert(k, v)) => {
            if let Some((_, old)) = d.map.get(&k) {
                return Response::Maybe(Some(old.clone()));
            }
            d.next += 1;
            d.map.insert(k, (d.next, v.clone()));
            Response::Maybe(Some(v))
        }
        (Object::Dict(d), Op::Len) => Response::Count(d.map.len() as u64),
        (Object::Dict(d), Op::Keys) => {
            Response::Many(d.sorted().into_iter().map(|(k, _)| k.clone()).collect())
        }
        (Object::Dict(d), Op::Values) => {
            Response::Many(d.sorted().into_iter().map(|(_, v)| v.clone()).collect())
        }
        (Object::Dict(d), Op::Items) => Response::Pairs(
            d.sorted()
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        (Object::Dict(d), Op::Clear) => {
            d.map.clear();
            Response::Unit
        }
        (Object::List(l), Op::Push(v)) => {
            l.push(v);
            Response::Unit
        }
        (Object::List(l), Op::Extend(vs)) => {
            l.extend(vs);
            Response::Unit
        }
        (Object::List(l), Op::At(i)) => Response::Maybe(l.get(i as usize).cloned()),
        (Object::List(l), Op::SetAt(i, v)) => match l.get_mut(i as usize) {
            Some(slot) => Response::Maybe(Some(std::mem::replace(slot, v))),
            None => Response::Maybe(None),
        },
        (Object::List(l), Op::InsertAt(i, v)) => {
            if i as usize > l.len() {
                return Response::Bool(false);
            }
            l.insert(i as usize, v);
            Response::Bool(true)
        }
        (Object::List(l), Op::RemoveAt(i)) => {
            if i as usize >= l.len() {
                return Response::Maybe(None);
            }
            Response::Maybe(Some(l.remove(i as usize)))
        }
        (Object::List(l), Op::Pop) => Response::Maybe(l.pop()),
        (Object::List(l), Op::Len) => Response::Count(l.len() as u64),
        (Object::List(l), Op::ToVec) => Response::Many(l.clone()),
        (Object::List(l), Op::Clear) => {
            l.clear();
            Response::Unit
        }
        (Object::Value(v), Op::Load) => Response::Maybe(Some(v.clone())),
        (Object::Value(v), Op::Store(new)) => {
            *v = new;
            Response::Unit
        }
        (Object::Value(v), Op::Swap(new)) => Response::Maybe(Some(std::mem::replace(v, new))),
        (object, op) => Response::Error(format!(
            "{op:?} is not an operation of a {:?}",
            object.kind()
        )),
    }
}
