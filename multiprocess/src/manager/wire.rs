//! The manager's protocol: one [`Request`] and one [`Response`] per call.
//! Keys and values travel as the caller's own encoded bytes, so the server
//! keeps them without knowing their types; the proxies are typed.

use serde::{Deserialize, Serialize};

/// What kind of object to create or find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Value,
    Lock,
    Event,
    Queue,
}

/// A request from a proxy (or the owning [`Manager`](super::Manager)).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// A new object; a value starts with the given bytes.
    /// The `String` names the proxy's types (`type_name`), kept with it.
    Create(Kind, String, Option<Vec<u8>>),
    /// The object of that name, created if missing (a value starts with the
    /// given bytes); an object of another kind or other types is an error.
    Named(String, Kind, String, Option<Vec<u8>>),
    /// An operation on object `id`, of kind `kind` as the proxy believes.
    Call(u64, Kind, Op),
    /// The server's pid.
    Pid,
    /// Asks for a shared-memory `Pipe` to go on with (over a Unix socket,
    /// where the end can travel): about 1 µs a round trip instead of a
    /// socket's tens.
    Upgrade,
    /// Stop the server (the owner only).
    Shutdown,
}

/// An operation on one object.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    Insert(Vec<u8>, Vec<u8>),
    Get(Vec<u8>),
    Remove(Vec<u8>),
    Contains(Vec<u8>),
    GetOrInsert(Vec<u8>, Vec<u8>),
    Len,
    Keys,
    Values,
    Items,
    Clear,
    Push(Vec<u8>),
    Extend(Vec<Vec<u8>>),
    At(u64),
    SetAt(u64, Vec<u8>),
    InsertAt(u64, Vec<u8>),
    RemoveAt(u64),
    Pop,
    ToVec,
    Load,
    Store(Vec<u8>),
    Swap(Vec<u8>),
    /// Lock: take it within the milliseconds given (the server waits at
    /// most that long, so a call stays bounded); `Bool(taken)`.
    Acquire(u64),
    Release,
    /// Event.
    Set,
    IsSet,
    /// Event: wait at most the milliseconds given; `Bool(is_set)`.
    Wait(u64),
    /// Queue: `Unit`.
    Put(Vec<u8>),
    /// Queue: wait at most the milliseconds given; `Maybe(item)`.
    Take(u64),
}

/// The answer to one request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    Id(u64),
    Unit,
    Maybe(Option<Vec<u8>>),
    Many(Vec<Vec<u8>>),
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    Count(u64),
    Bool(bool),
    Pid(u32),
    /// The client's end of the pipe the server serves from now on.
    Pipe(Box<crate::connection::Connection<Request, Response>>),
    /// The request failed; the text says why.
    Error(String),
}
