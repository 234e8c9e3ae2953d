//! What travels between the pool and its workers: task and result messages,
//! the list codec for a chunk's arguments and results (fixed-width words for
//! plain numbers, postcard otherwise), the per-worker progress words, and
//! the worker's start arguments.

use std::any::{Any, TypeId};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::TaskError;
use crate::codec::{self, DecodeError, EncodeError};
use crate::queue::Queue;
use crate::sys::shm::SharedRegion;

/// Encoded bytes shared between the pool's bookkeeping and the message it
/// puts (so a chunk is encoded once, however often it is dispatched).
#[derive(Debug, Clone, Default)]
pub(crate) struct Payload(pub Arc<Vec<u8>>);

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(Arc::new(v.to_vec())))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(Arc::new(v)))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Bytes that serialize as one byte string (postcard: length and a copy),
/// not as a sequence of `u8`s encoded and decoded one at a time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Payload::deserialize(d).map(|p| Bytes(Arc::unwrap_or_clone(p.0)))
    }
}

/// A message on a worker's task queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum TaskMsg {
    /// Run a chunk of calls.
    Run {
        /// The chunk's sequence number, unique in the pool.
        seq: u64,
        /// The task entry point (see `sys::code::Entry::offset`).
        entry: i64,
        /// How many calls the chunk holds.
        count: u32,
        /// Positions in the chunk not to run (already failed with their
        /// worker); sorted.
        skip: Vec<u32>,
        /// The encoded `Vec<Args>`.
        payload: Payload,
    },
    /// Exit once the queue has been read this far.
    Stop,
}

/// A message on the pool's results queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ResultMsg {
    /// A worker finished a chunk: `body` is the encoded `Vec<Outcome<R>>`.
    Done {
        /// The worker's id.
        worker: u64,
        /// The chunk's sequence number.
        seq: u64,
        /// How long the chunk took, in nanoseconds.
        nanos: u64,
        /// The outcomes.
        body: Bytes,
    },
    /// The monitor saw worker `worker` exit with `code` (Python's exit code
    /// convention; `None` if unknown). Every result the worker put is ahead
    /// of this message in the queue.
    Exited {
        /// The worker's id.
        worker: u64,
        /// Its exit code, `-N` for signal N.
        code: Option<i32>,
    },
    /// A worker's initializer failed: the pool cannot work.
    InitFailed {
        /// The worker's id.
        worker: u64,
        /// What went wrong.
        message: String,
    },
    /// The pool is shutting down: the result thread ends.
    Shutdown,
}

/// The first byte of a chunk's result body: every call succeeded and the
/// rest is the encoded `Vec<R>` of their results.
pub(crate) const ALL_OK: u8 = 0;
/// The first byte of a chunk's result body: the rest is the encoded
/// `Vec<Outcome<R>>`, one per call.
pub(crate) const MIXED: u8 = 1;

/// The outcome of one call in a chunk.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome<R> {
    /// The task's result.
    Ok(R),
    /// The task failed.
    Err(TaskError),
    /// The call was in the chunk's skip list and did not run.
    Skipped,
}

/// A byte string borrowed from a message buffer; serialized as postcard
/// bytes, exactly as [`Payload`] and [`Bytes`] are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawBytes<'a>(pub &'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawBytes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a [u8]>::deserialize(d).map(RawBytes)
    }
}

/// [`TaskMsg`] as the pool puts it and a worker reads it, with the payload
/// borrowed: the same bytes on the wire (same variants, same fields in the
/// same order), so a chunk's payload goes from the pool's `Arc` into the
/// ring and from the worker's read buffer into the task without a copy of
/// its own.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum TaskView<'a> {
    /// [`TaskMsg::Run`].
    Run {
        seq: u64,
        entry: i64,
        count: u32,
        skip: Vec<u32>,
        #[serde(borrow)]
        payload: RawBytes<'a>,
    },
    /// [`TaskMsg::Stop`].
    Stop,
}

/// [`ResultMsg`] with the result body borrowed (as [`TaskView`] is to
/// [`TaskMsg`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ResultView<'a> {
    /// [`ResultMsg::Done`].
    Done {
        worker: u64,
        seq: u64,
        nanos: u64,
        #[serde(borrow)]
        body: RawBytes<'a>,
    },
    /// [`ResultMsg::Exited`].
    Exited { worker: u64, code: Option<i32> },
    /// [`ResultMsg::InitFailed`].
    InitFailed { worker: u64, message: String },
    /// [`ResultMsg::Shutdown`].
    Shutdown,
}

/// Runs `$m!(T, width)` for each primitive number type that the list codec
/// ([`encode_list`]/[`decode_list_into`]) writes at a fixed width.
macro_rules! fixed_width_types {
    ($m:ident) => {
        $m!(
            u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
        );
    };
}

/// Encodes a list for a pool chunk, appending to `out`: when `T` is a
/// primitive number or a 1-tuple of one (a `map` argument), as fixed-width
/// little-endian words, with no length prefix (the chunk knows its count);
/// otherwise as postcard's `Vec<T>`. A `map` of a million `u64`s then costs
/// a copy instead of a varint per item each way. Both ends run the same
/// executable, so they agree on the form from `T` alone.
pub(crate) fn encode_list<T: Serialize + 'static>(
    items: &[T],
    out: &mut Vec<u8>,
    fds: &mut Vec<OwnedFd>,
) -> Result<(), EncodeError> {
    macro_rules! fixed {
        ($($t:ty),*) => {$(
            if TypeId::of::<T>() == TypeId::of::<$t>() || TypeId::of::<T>() == TypeId::of::<($t,)>() {
                const W: usize = std::mem::size_of::<$t>();
                let start = out.len();
                out.resize(start + items.len() * W, 0);
                for (dst, item) in out[start..].chunks_exact_mut(W).zip(items) {
                    let item = item as &dyn Any;
                    let v: $t = match item.downcast_ref::<$t>() {
                        Some(v) => *v,
                        None => item.downcast_ref::<($t,)>().map_or(0 as $t, |v| v.0),
                    };
                    dst.copy_from_slice(&v.to_le_bytes());
                }
                return Ok(());
            }
        )*};
    }
    fixed_width_types!(fixed);
    codec::encode_into(items, out, fds)
}

/// Decodes a list made by [`encode_list`] onto the end of `out`; returns
/// how many items it appended.
pub(crate) fn decode_list_into<T: DeserializeOwned + 'static>(
    bytes: &[u8],
    out: &mut Vec<T>,
) -> Result<usize, DecodeError> {
    macro_rules! fixed {
        ($($t:ty),*) => {$(
            if TypeId::of::<T>() == TypeId::of::<$t>() || TypeId::of::<T>() == TypeId::of::<($t,)>() {
                const W: usize = std::mem::size_of::<$t>();
                if bytes.len() / W * W != bytes.len() {
                    return Err(codec::malformed::<Vec<T>>(format!(
                        "{} bytes is not a whole number of {W}-byte items",
                        bytes.len()
                    )));
                }
                let words = bytes
                    .chunks_exact(W)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("W bytes")));
                let any = out as &mut dyn Any;
                if let Some(out) = any.downcast_mut::<Vec<$t>>() {
                    out.extend(words);
                } else if let Some(out) = any.downcast_mut::<Vec<($t,)>>() {
                    out.extend(words.map(|v| (v,)));
                }
                return Ok(bytes.len() / W);
            }
        )*};
    }
    fixed_width_types!(fixed);
    // postcard's `Vec<T>`, decoded straight onto the end of `out`.
    struct Extend<'a, T>(&'a mut Vec<T>);
    impl<'de, T: DeserializeOwned> serde::de::DeserializeSeed<'de> for Extend<'_, T> {
        type Value = usize;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de, T: DeserializeOwned> serde::de::Visitor<'de> for Extend<'_, T> {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let start = self.0.len();
            // A hostile length must not reserve gigabytes: cap the hint.
            self.0.reserve(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(v) = seq.next_element()? {
                self.0.push(v);
            }
            Ok(self.0.len() - start)
        }
    }
    let start = out.len();
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let result = serde::de::DeserializeSeed::deserialize(Extend(out), &mut de)
        .map_err(|e| {
            codec::malformed::<Vec<T>>(codec::explain(codec::take_handle_error(e.to_string())))
        })
        .and_then(|n| match de.finalize() {
            Ok([]) => Ok(n),
            Ok(rest) => Err(codec::malformed::<Vec<T>>(format!(
                "{} trailing bytes",
                rest.len()
            ))),
            Err(e) => Err(codec::malformed::<Vec<T>>(e.to_string())),
        });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Puts a message whose last field is the byte string `tail` (given empty
/// in `msg`), without copying `tail` into an encode buffer: the head is
/// `msg`'s encoding with the empty string's length byte (0, postcard's last
/// byte) replaced by `tail`'s length, and `tail` follows it into the ring.
/// Returns `false` if the deadline passed first.
pub(crate) fn put_with_tail<T, M: Serialize>(
    queue: &Queue<T>,
    msg: &M,
    tail: &[u8],
    lock_deadline: Option<std::time::Instant>,
    deadline: Option<std::time::Instant>,
) -> bool {
    let mut head = postcard::to_allocvec(msg).expect("pool messages always encode");
    debug_assert_eq!(
        head.last(),
        Some(&0),
        "the last field is an empty byte string"
    );
    head.pop();
    let (len, n) = codec::varint(tail.len());
    head.extend_from_slice(&len[..n]);
    queue.put_encoded(&head, tail, lock_deadline, deadline)
}

/// Byte offsets of the two progress words in a worker's region.
const SEQ: usize = 0;
const INDEX: usize = 8;

/// A worker's progress, in shared memory: the sequence number of the chunk
/// it runs and the position of the call within it. Written by the worker
/// before each call; read by the pool after the worker's death, to know
/// which call it died in.
#[derive(Debug, Clone)]
pub(crate) struct Progress(Arc<SharedRegion>);

/// No chunk started yet.
pub(crate) const NO_SEQ: u64 = u64::MAX;

impl Progress {
    pub(crate) fn new() -> io::Result<Progress> {
        let region = SharedRegion::create("multiprocess-pool-progress", 16)?;
        region.atomic_u64(SEQ).store(NO_SEQ, Ordering::Relaxed);
        Ok(Progress(Arc::new(region)))
    }

    /// Records that call `index` of chunk `seq` starts. The position is
    /// written first: a worker that dies between the two stores leaves the
    /// previous chunk's number, so the new chunk counts as never started
    /// and is re-run whole, which is right since none of it ran.
    pub(crate) fn start(&self, seq: u64, index: u32) {
        self.0
            .atomic_u64(INDEX)
            .store(index as u64, Ordering::Release);
        self.0.atomic_u64(SEQ).store(seq, Ordering::Release);
    }

    /// The position word alone, for the later calls of a chunk whose number
    /// [`start`](Self::start) recorded: one store per call.
    pub(crate) fn index_word(&self) -> &crate::sys::atomic::AtomicU64 {
        self.0.atomic_u64(INDEX)
    }

    /// Closes the parent's descriptor of the region once the worker has its
    /// copy (see `Queue::release_descriptor`); returns whether it did.
    pub(crate) fn release_descriptor(&mut self) -> bool {
        match Arc::get_mut(&mut self.0) {
            Some(region) => {
                region.release_fd();
                true
            }
            None => false,
        }
    }

    /// `(seq, index)` as last recorded.
    pub(crate) fn read(&self) -> (u64, u64) {
        (
            self.0.atomic_u64(SEQ).load(Ordering::Acquire),
            self.0.atomic_u64(INDEX).load(Ordering::Acquire),
        )
    }
}

impl Serialize for Progress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        codec::serialize_fd(self.0.fd(), "pool progress region", s)
    }
}

impl<'de> Deserialize<'de> for Progress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fd = codec::deserialize_fd("pool progress region", d)?;
        let region =
            SharedRegion::from_fd(fd, 16).map_err(|e| codec::handle_de_error(e.to_string()))?;
        Ok(Progress(Arc::new(region)))
    }
}

/// A descriptor passed to a worker as is (the initializer's handles).
#[derive(Debug)]
pub(crate) struct PassFd(pub OwnedFd);

impl Serialize for PassFd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        codec::serialize_fd(self.0.as_fd(), "initializer handle", s)
    }
}

impl<'de> Deserialize<'de> for PassFd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        codec::deserialize_fd("initializer handle", d).map(PassFd)
    }
}

/// The initializer as a worker receives it: a process entry point and its
/// encoded arguments with their descriptors.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitCall {
    pub entry: i64,
    pub exe: (u64, u64),
    pub args: Vec<u8>,
    pub fds: Vec<PassFd>,
}

/// A worker's start arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub id: u64,
    pub tasks: Queue<TaskMsg>,
    pub results: Queue<ResultMsg>,
    pub progress: Progress,
    pub init: Option<InitCall>,
    /// Exit after this many chunks.
    pub max_tasks: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_the_owned_messages_on_the_wire() {
        let payload = vec![1u8, 2, 3, 200];
        let owned = TaskMsg::Run {
            seq: 7,
            entry: -42,
            count: 4,
            skip: vec![1, 3],
            payload: Payload(Arc::new(payload.clone())),
        };
        let view = TaskView::Run {
            seq: 7,
            entry: -42,
            count: 4,
            skip: vec![1, 3],
            payload: RawBytes(&payload),
        };
        let bytes = postcard::to_allocvec(&owned).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&view).unwrap());
        assert_eq!(
            postcard::to_allocvec(&TaskMsg::Stop).unwrap(),
            postcard::to_allocvec(&TaskView::Stop).unwrap()
        );
        let done = ResultMsg::Done {
            worker: 1,
            seq: 2,
            nanos: 3,
            body: Bytes(payload.clone()),
        };
        let done_view = ResultView::Done {
            worker: 1,
            seq: 2,
            nanos: 3,
            body: RawBytes(&payload),
        };
        assert_eq!(
            postcard::to_allocvec(&done).unwrap(),
            postcard::to_allocvec(&done_view).unwrap()
        );
        for msg in [
            ResultMsg::Exited {
                worker: 5,
                code: Some(-9),
            },
            ResultMsg::InitFailed {
                worker: 6,
                message: "no".into(),
            },
            ResultMsg::Shutdown,
        ] {
            let bytes = postcard::to_allocvec(&msg).unwrap();
            let view: ResultView<'_> = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(format!("{msg:?}"), format!("{view:?}"));
        }
    }

    #[test]
    fn a_message_put_with_its_tail_reads_back_whole() {
        let queue: Queue<TaskMsg> = Queue::new().unwrap();
        // Long enough that the tail's length takes a two-byte varint.
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let view = TaskView::Run {
            seq: 1,
            entry: 2,
            count: 3,
            skip: vec![],
            payload: RawBytes(&[]),
        };
        assert!(put_with_tail(&queue, &view, &payload, None, None));
        match queue.get().unwrap() {
            TaskMsg::Run {
                seq: 1,
                entry: 2,
                count: 3,
                skip,
                payload: p,
            } => {
                assert!(skip.is_empty());
                assert_eq!(*p.0, payload);
            }
            other => panic!("read back {other:?}"),
        }
        let mut buf = Vec::new();
        assert!(put_with_tail(&queue, &view, &payload, None, None));
        assert!(queue.get_encoded(&mut buf, None));
        match postcard::from_bytes::<TaskView<'_>>(&buf).unwrap() {
            TaskView::Run { payload: p, .. } => assert_eq!(p.0, &payload[..]),
            TaskView::Stop => panic!("read back Stop"),
        }
        // Nothing is left, and a bounded read says so.
        let soon = Some(std::time::Instant::now() + std::time::Duration::from_millis(10));
        assert!(!queue.get_encoded(&mut buf, soon));
    }

    fn list_round_trip<T>(items: Vec<T>)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone + 'static,
    {
        let mut buf = vec![];
        let mut fds = vec![];
        encode_list(&items, &mut buf, &mut fds).unwrap();
        // Onto the end of existing items, as the pool's results are.
        let mut out = items.clone();
        assert_eq!(decode_list_into(&buf, &mut out).unwrap(), items.len());
        assert_eq!(out.len(), 2 * items.len());
        assert_eq!(out[items.len()..], items[..]);
    }

    #[test]
    fn lists_round_trip_in_both_forms() {
        list_round_trip(vec![0u64, 1, u64::MAX, 1 << 40]);
        list_round_trip(vec![(7u64,), (u64::MAX,)]);
        list_round_trip(vec![-1i32, i32::MIN, 5]);
        list_round_trip(vec![(1.5f64,), (f64::NEG_INFINITY,)]);
        list_round_trip(vec![u8::MAX, 0]);
        list_round_trip(Vec::<u16>::new());
        list_round_trip(vec!["a".to_string(), String::new()]);
        list_round_trip(vec![(1u64, 2u64), (3, 4)]);
        list_round_trip(vec![Some(vec![1u8, 2]), None]);
    }

    #[test]
    fn fixed_width_lists_are_a_copy_of_the_words() {
        let mut buf = vec![];
        encode_list(&[(1u32,), (0x0102_0304,)], &mut buf, &mut vec![]).unwrap();
        assert_eq!(buf, [1, 0, 0, 0, 4, 3, 2, 1]);
    }

    #[test]
    fn malformed_lists_are_errors_and_leave_the_output_alone() {
        let mut out = vec![9u64];
        let e = decode_list_into::<u64>(&[0; 7], &mut out).unwrap_err();
        assert!(
            e.to_string().contains("whole number of 8-byte items"),
            "{e}"
        );
        assert_eq!(out, [9]);
        let mut out = vec!["kept".to_string()];
        // Two strings announced, one given.
        let e = decode_list_into::<String>(&[2, 1, b'x'], &mut out).unwrap_err();
        assert!(e.to_string().contains("String"), "{e}");
        assert_eq!(out, ["kept"]);
        // One string, then a stray byte.
        let e = decode_list_into::<String>(&[1, 1, b'x', 0], &mut out).unwrap_err();
        assert!(e.to_string().contains("trailing"), "{e}");
        // A hostile length does not reserve memory for it.
        let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode_list_into::<String>(&huge, &mut out).is_err());
        assert_eq!(out, ["kept"]);
    }
}
