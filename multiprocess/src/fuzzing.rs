//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay
//! test; not part of the public API (compiled only with the `fuzzing`
//! feature, or in this crate's own tests).
//!
//! Each function takes arbitrary bytes and returns `Ok` or `Err` with a
//! description; a panic (or an abort, or a sanitizer report) is a bug. The
//! functions also check invariants that must hold for every input and panic
//! when one does not, so the fuzzer reports it.

use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::connection::frame::{
    self, DOORBELL, FrameSpin, HEADER_LEN, Header, Payload, Rx, RxError,
};
use crate::sys::socket::{self, Wait};
use crate::{Connection, Lock, Queue, Value};

/// The largest chunk [`frame_stream`] writes at once (well below the socket
/// buffer, so a write never blocks while the receiver is idle).
const CHUNK_MAX: usize = 8 * 1024;

/// A small deterministic generator (xorshift64*) for read boundaries.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the receiver made of one frame.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Message {
        tag: u64,
        payload: Vec<u8>,
        nfds: usize,
    },
    TooLarge {
        size: u64,
    },
    Aborted,
}

/// The receiver's maximum for configuration bits `cfg & 3`.
fn max_for(cfg: u8) -> usize {
    match cfg & 3 {
        0 => crate::DEFAULT_MAX_MESSAGE_SIZE,
        1 => 64,
        2 => 70_000,
        _ => usize::MAX,
    }
}

/// Feeds a byte stream to the connection's frame receiver ([`Rx`]) over a
/// real Unix socket, split into reads at arbitrary boundaries.
///
/// Input layout: byte 0 configures the run (bits 0–1: the receiver's
/// maximum message size; bit 2: also call `drain` between writes; bits 3–4:
/// how chunk sizes are drawn; bit 5: attach descriptors to random chunks;
/// bit 6: attach to each header the descriptors it announces, as a sender
/// does),
/// byte 1 picks the type each message is decoded as (as in
/// [`handle_decode`]), bytes 2..10 seed the split, and the rest is the
/// stream, written in chunks of at most 8 KiB
/// while the receiver reads until it would block; then the writer closes and
/// the receiver reads to the end.
///
/// Invariant checked: unless descriptors are attached at random, the frames
/// delivered (messages with their descriptor counts, too-large reports,
/// aborted frames) are exactly those of a straight parse of the whole
/// stream, whatever the split.
///
/// Returns the number of frames delivered, or the error that broke the
/// stream.
pub fn frame_stream(data: &[u8]) -> Result<usize, String> {
    let [cfg, decode_as, rest @ ..] = data else {
        return Ok(0);
    };
    let (cfg, decode_as) = (*cfg, *decode_as);
    let (seed, stream) = rest.split_at(rest.len().min(8));
    let mut seed_bytes = [0u8; 8];
    seed_bytes[..seed.len()].copy_from_slice(seed);
    let mut rng = Rng(u64::from_le_bytes(seed_bytes) | 1);
    let max = max_for(cfg);
    let use_drain = cfg & 4 != 0;
    let attach_fds = cfg & 32 != 0;
    let aligned = cfg & 64 != 0 && !attach_fds;
    let (expected, expected_ok, announced) = reference_parse(stream, max, aligned);

    let (tx, rx_fd) = socket::socketpair().map_err(|e| e.to_string())?;
    let devnull: OwnedFd = std::fs::File::open("/dev/null")
        .map_err(|e| e.to_string())?
        .into();
    let mut rx = Rx::default();
    let mut events = Vec::new();
    let mut attached = false;
    let mut outcome: Result<(), String> = Ok(());

    let on_result =
        |rx: &mut Rx, r: Result<frame::Message, RxError>, events: &mut Vec<Event>| match r {
            Ok(msg) => {
                let payload = match msg.payload {
                    Payload::Buffered(range) => rx.buffered(range).to_vec(),
                    Payload::Owned(v) => v,
                };
                assert!(
                    payload.len() <= max,
                    "delivered a payload above the maximum"
                );
                let nfds = msg.fds.len();
                let _ = decode_payload(decode_as, &payload, msg.fds);
                events.push(Event::Message {
                    tag: msg.tag,
                    payload,
                    nfds,
                });
                Ok(true)
            }
            Err(RxError::TooLarge { size, max: m }) => {
                assert!(size > m, "TooLarge for a frame within the maximum");
                events.push(Event::TooLarge { size });
                Ok(true)
            }
            Err(RxError::Aborted) => {
                events.push(Event::Aborted);
                Ok(true)
            }
            Err(RxError::Timeout) => Ok(false),
            Err(RxError::Disconnected) => Err(None),
            Err(RxError::Io(e)) => Err(Some(e.to_string())),
        };

    let mut pos = 0;
    while pos < stream.len() && outcome.is_ok() {
        let mut len = match (cfg >> 3) & 3 {
            0 => 1 + rng.below(8),
            1 => 1 + rng.below(64),
            2 => 1 + rng.below(CHUNK_MAX),
            _ => CHUNK_MAX,
        }
        .min(stream.len() - pos);
        // A header announcing descriptors starts its own write, which
        // carries them.
        if let Some(&(at, _)) = announced
            .iter()
            .find(|(at, _)| *at > pos && *at < pos + len)
        {
            len = at - pos;
        }
        let chunk = &stream[pos..pos + len];
        let nfds = if attach_fds && rng.below(4) == 0 {
            1 + rng.below(3)
        } else {
            announced
                .iter()
                .find(|(at, _)| *at == pos)
                .map_or(0, |(_, n)| *n)
        };
        attached |= attach_fds && nfds > 0;
        let fds = vec![devnull.as_fd(); nfds];
        let sent = socket::send_with_fds(tx.as_fd(), &[IoSlice::new(chunk)], &fds, Wait::Block)
            .map_err(|e| e.to_string())?;
        pos += sent;
        if use_drain && rng.below(2) == 0 {
            match rx.drain(rx_fd.as_fd()) {
                Ok(true) => panic!("drain saw end of stream while the writer is open"),
                Ok(false) => {}
                Err(RxError::Io(e)) => outcome = Err(e.to_string()),
                Err(other) => panic!("drain returned {other:?}"),
            }
        }
        // Read until the receiver would block.
        while outcome.is_ok() {
            let r = rx.next(
                rx_fd.as_fd(),
                max,
                Some(Instant::now()),
                FrameSpin::default(),
            );
            match on_result(&mut rx, r, &mut events) {
                Ok(true) => {}
                Ok(false) => break,
                Err(None) => panic!("end of stream while the writer is open"),
                Err(Some(e)) => outcome = Err(e),
            }
        }
    }
    drop(tx);
    // Read to the end of the stream.
    while outcome.is_ok() {
        let r = rx.next(rx_fd.as_fd(), max, None, FrameSpin::default());
        match on_result(&mut rx, r, &mut events) {
            Ok(true) => {}
            Ok(false) => panic!("timeout without a deadline"),
            Err(None) => break,
            Err(Some(e)) => outcome = Err(e),
        }
    }
    if let Err(why) = &outcome {
        // A broken stream stays broken.
        let again = rx.next(
            rx_fd.as_fd(),
            max,
            Some(Instant::now()),
            FrameSpin::default(),
        );
        assert!(
            matches!(again, Err(RxError::Io(_))),
            "a broken stream delivered again after {why}"
        );
    }
    if !attached {
        assert_eq!(events, expected, "split changed the frames delivered");
        assert_eq!(
            outcome.is_ok(),
            expected_ok,
            "split changed the outcome: {outcome:?}"
        );
    }
    outcome.map(|()| events.len())
}

/// Parses a whole stream: the frames a receiver must deliver, whether it
/// ends cleanly (`false`: a corrupt header, or a header announcing
/// descriptors that never came), and where the headers announcing
/// descriptors are (offset, count). `with_fds`: each header comes with the
/// descriptors it announces; otherwise none come.
fn reference_parse(
    mut s: &[u8],
    max: usize,
    with_fds: bool,
) -> (Vec<Event>, bool, Vec<(usize, usize)>) {
    let mut events = Vec::new();
    let mut announced = Vec::new();
    let total = s.len();
    while s.len() >= HEADER_LEN {
        let at = total - s.len();
        let head: &[u8; HEADER_LEN] = s[..HEADER_LEN].try_into().expect("header length");
        s = &s[HEADER_LEN..];
        if *head == DOORBELL {
            continue;
        }
        if *head == frame::ABORTED {
            events.push(Event::Aborted);
            continue;
        }
        let Ok(h) = Header::decode(head) else {
            return (events, false, announced);
        };
        if h.nfds > 0 {
            if !with_fds {
                return (events, false, announced);
            }
            announced.push((at, h.nfds as usize));
        }
        if h.len > max as u64 {
            if (s.len() as u64) < h.len {
                return (events, true, announced);
            }
            s = &s[h.len as usize..];
            events.push(Event::TooLarge { size: h.len });
            continue;
        }
        let len = h.len as usize;
        if s.len() < len {
            return (events, true, announced);
        }
        events.push(Event::Message {
            tag: h.tag,
            payload: s[..len].to_vec(),
            nfds: h.nfds as usize,
        });
        s = &s[len..];
    }
    (events, true, announced)
}

/// A struct holding handles of several kinds.
#[derive(Serialize, Deserialize)]
struct WithHandles {
    id: u32,
    conn: Connection<u64, u64>,
    queue: Queue<String>,
    lock: Lock,
    note: Option<String>,
}

/// An enum with unit, tuple, struct and handle variants.
#[derive(Serialize, Deserialize)]
enum Mixed {
    Unit,
    Pair(u64, String),
    Record {
        bytes: Vec<u8>,
        queue: Option<Queue<u64>>,
    },
    Conn(Box<Connection<String, String>>),
    Counter(Value<u64>),
}

/// Decodes `payload` with the side table `fds` as one of the representative
/// types (`which` modulo their count); the result only has to be a value or
/// an error.
fn decode_payload(which: u8, payload: &[u8], fds: Vec<OwnedFd>) -> Result<(), String> {
    fn go<T: serde::de::DeserializeOwned>(b: &[u8], fds: Vec<OwnedFd>) -> Result<(), String> {
        codec::decode::<T>(b, fds)
            .map(drop)
            .map_err(|e| e.to_string())
    }
    match which % 9 {
        0 => go::<u64>(payload, fds),
        1 => {
            let fast = codec::decode_bytes::<String>(payload).expect("String is a byte type");
            let slow = codec::decode::<String>(payload, fds);
            if fast.is_ok() || slow.is_ok() {
                assert_eq!(
                    fast.as_ref().ok(),
                    slow.as_ref().ok(),
                    "String fast path disagrees with postcard"
                );
            }
            slow.map(drop).map_err(|e| e.to_string())
        }
        2 => {
            let fast = codec::decode_bytes::<Vec<u8>>(payload).expect("Vec<u8> is a byte type");
            let slow = codec::decode::<Vec<u8>>(payload, fds);
            if fast.is_ok() || slow.is_ok() {
                assert_eq!(
                    fast.as_ref().ok(),
                    slow.as_ref().ok(),
                    "Vec<u8> fast path disagrees with postcard"
                );
            }
            slow.map(drop).map_err(|e| e.to_string())
        }
        3 => go::<WithHandles>(payload, fds),
        4 => go::<Mixed>(payload, fds),
        5 => go::<Option<Vec<String>>>(payload, fds),
        6 => {
            let plain = codec::decode_plain::<(u32, Vec<u64>)>(payload);
            let full = codec::decode::<(u32, Vec<u64>)>(payload, fds);
            assert_eq!(
                plain.as_ref().ok(),
                full.as_ref().ok(),
                "decode_plain disagrees with decode"
            );
            full.map(drop).map_err(|e| e.to_string())
        }
        7 => go::<Vec<Lock>>(payload, fds),
        _ => go::<(Queue<u64>, Connection<Vec<u8>, Vec<u8>>)>(payload, fds),
    }
}

/// Descriptors of real objects (a Pipe end's socket and rings, a
/// `Queue<String>`, a `Queue<u64>`, a `Lock`, a `Value<u64>`), plus
/// `/dev/null` and a socket pair, to fill side tables from.
fn templates() -> &'static Vec<OwnedFd> {
    static FDS: OnceLock<Vec<OwnedFd>> = OnceLock::new();
    FDS.get_or_init(|| {
        let (a, _b) = crate::Pipe::new::<u64, u64>().expect("pipe");
        let objects = (
            a,
            Queue::<String>::new().expect("queue"),
            Queue::<u64>::new().expect("queue"),
            Lock::new().expect("lock"),
            Value::new(0u64).expect("value"),
        );
        let (_, mut fds) = codec::encode(&objects).expect("encode templates");
        // The sender's liveness domain leads the table; it goes last here, so
        // the other slots keep their numbers.
        let domain = fds.remove(0);
        fds.push(std::fs::File::open("/dev/null").expect("/dev/null").into());
        // A plain socket (not a connection), with a byte waiting.
        let (r, w) = socket::socketpair().expect("socketpair");
        let _ = socket::send_with_fds(w.as_fd(), &[IoSlice::new(b"x")], &[], Wait::Block);
        fds.push(r);
        fds.push(w);
        fds.push(domain);
        fds
    })
}

/// Decodes arbitrary bytes with an arbitrary side table, as the handle codec
/// would on arrival.
///
/// Input layout: byte 0 picks the type decoded (see `decode_payload`: `u64`,
/// `String`, `Vec<u8>`, a struct holding a Connection, Queue and Lock, an
/// enum with handle variants, `Option<Vec<String>>`, a plain tuple through
/// both decoders, `Vec<Lock>`, a tuple of handles); byte 1 the side-table
/// size (0–7); the next that many bytes pick each slot's descriptor among
/// real objects' descriptors, `/dev/null`, a socket pair and a liveness
/// domain; the rest is the
/// encoded value.
pub fn handle_decode(data: &[u8]) -> Result<(), String> {
    let [which, n, rest @ ..] = data else {
        return Ok(());
    };
    let n = usize::from(*n % 8).min(rest.len());
    let (slots, bytes) = rest.split_at(n);
    let templates = templates();
    let mut fds = Vec::with_capacity(n);
    for &slot in slots {
        let fd = &templates[usize::from(slot) % templates.len()];
        fds.push(fd.try_clone().map_err(|e| e.to_string())?);
    }
    decode_payload(*which, bytes, fds)
}

/// Real encodings of representative values, for seeding the corpora:
/// `(name, handle_decode input, frame_stream input)`.
pub fn seeds() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    // `slots`: where each descriptor of the value's table is in
    // `templates()` (socket 0, rings 1, Queue<String> 2, Queue<u64> 3,
    // Lock 4, Value 5 and 6, /dev/null 7, sockets 8 and 9, the liveness
    // domain 10, which leads the table of every value with handles).
    let mut add =
        |name: &str, which: u8, value: (Vec<u8>, Vec<OwnedFd>), slots: &[u8], tag: u64| {
            let (bytes, fds) = value;
            assert_eq!(fds.len(), slots.len(), "{name}: one slot per descriptor");
            let mut h = vec![which, slots.len() as u8];
            h.extend_from_slice(slots);
            h.extend_from_slice(&bytes);
            let header = Header {
                len: bytes.len() as u64,
                tag,
                nfds: 0,
            };
            let mut f = vec![0b01_000, which, 1, 2, 3, 4, 5, 6, 7, 8];
            f.extend_from_slice(&header.encode());
            f.extend_from_slice(&bytes);
            f.extend_from_slice(&DOORBELL);
            f.extend_from_slice(&frame::ABORTED);
            out.push((name.to_string(), h, f));
        };
    add(
        "u64",
        0,
        codec::encode(&u64::MAX).expect("encode"),
        &[],
        codec::type_tag::<u64>(),
    );
    add(
        "u64_small",
        0,
        codec::encode(&7u64).expect("encode"),
        &[],
        0,
    );
    add(
        "string",
        1,
        codec::encode(&"héllo, wörld".to_string()).expect("encode"),
        &[],
        codec::type_tag::<String>(),
    );
    add(
        "string_empty",
        1,
        codec::encode(&String::new()).expect("encode"),
        &[],
        0,
    );
    add(
        "bytes",
        2,
        codec::encode(&vec![0u8, 1, 2, 255]).expect("encode"),
        &[],
        frame::BYTES_TAG,
    );
    add(
        "bytes_300",
        2,
        codec::encode(&vec![0xa5u8; 300]).expect("encode"),
        &[],
        frame::BYTES_TAG,
    );
    add(
        "option_vec_string",
        5,
        codec::encode(&Some(vec!["a".to_string(), String::new(), "ccc".into()])).expect("encode"),
        &[],
        codec::type_tag::<Option<Vec<String>>>(),
    );
    add(
        "option_none",
        5,
        codec::encode(&None::<Vec<String>>).expect("encode"),
        &[],
        0,
    );
    add(
        "tuple_plain",
        6,
        codec::encode(&(7u32, vec![1u64, 300, u64::MAX])).expect("encode"),
        &[],
        0,
    );
    add(
        "mixed_pair",
        4,
        codec::encode(&Mixed::Pair(9, "x".into())).expect("encode"),
        &[],
        codec::type_tag::<Mixed>(),
    );
    add(
        "mixed_record",
        4,
        codec::encode(&Mixed::Record {
            bytes: vec![1, 2, 3],
            queue: Some(Queue::new().expect("queue")),
        })
        .expect("encode"),
        &[10, 3],
        codec::type_tag::<Mixed>(),
    );
    add(
        "mixed_unit",
        4,
        codec::encode(&Mixed::Unit).expect("encode"),
        &[],
        0,
    );
    add(
        "mixed_counter",
        4,
        codec::encode(&Mixed::Counter(Value::new(5u64).expect("value"))).expect("encode"),
        &[10, 5, 6],
        0,
    );
    let (a, _b) = crate::Pipe::new::<String, String>().expect("pipe");
    add(
        "mixed_conn",
        4,
        codec::encode(&Mixed::Conn(Box::new(a))).expect("encode"),
        &[10, 0, 1],
        0,
    );
    let (a, _b) = crate::Pipe::new::<u64, u64>().expect("pipe");
    add(
        "with_handles",
        3,
        codec::encode(&WithHandles {
            id: 1,
            conn: a,
            queue: Queue::new().expect("queue"),
            lock: Lock::new().expect("lock"),
            note: Some("n".into()),
        })
        .expect("encode"),
        &[10, 0, 1, 2, 4],
        codec::type_tag::<WithHandles>(),
    );
    add(
        "vec_lock",
        7,
        codec::encode(&vec![
            Lock::new().expect("lock"),
            Lock::new().expect("lock"),
        ])
        .expect("encode"),
        &[10, 4, 4],
        0,
    );
    let (c, _d) = crate::Pipe::new::<Vec<u8>, Vec<u8>>().expect("pipe");
    add(
        "queue_conn",
        8,
        codec::encode(&(Queue::<u64>::new().expect("queue"), c)).expect("encode"),
        &[10, 3, 0, 1],
        0,
    );
    out
}

/// Edge cases for [`frame_stream`]: `(name, input)`.
pub fn frame_edge_seeds() -> Vec<(String, Vec<u8>)> {
    let frame = |len: u64, tag: u64, nfds: u32, payload: &[u8]| {
        let mut f = Header { len, tag, nfds }.encode().to_vec();
        f.extend_from_slice(payload);
        f
    };
    let with = |cfg: u8, stream: Vec<u8>| {
        let mut f = vec![cfg, 2, 9, 8, 7, 6, 5, 4, 3, 2];
        f.extend(stream);
        f
    };
    let big = vec![0x5au8; 65_600];
    let mut corrupt = frame(3, 1, 0, b"abc");
    corrupt.extend_from_slice(&{
        let mut h = DOORBELL;
        h[0] = 1;
        h
    });
    let mut many = Vec::new();
    for i in 0..20u8 {
        many.extend(frame(u64::from(i), 0, 0, &vec![i; usize::from(i)]));
        many.extend_from_slice(&DOORBELL);
    }
    vec![
        // A payload above the 64 KiB buffer: read into its own buffer.
        (
            "large_65600".into(),
            with(0b11_010, frame(65_600, 0, 0, &big)),
        ),
        // Above the receiver's maximum (64): discarded, stream stays in sync.
        (
            "too_large".into(),
            with(0b00_001, {
                let mut s = frame(100, 0, 0, &[1; 100]);
                s.extend(frame(1, 0, 0, &[7]));
                s
            }),
        ),
        // A header announcing a terabyte, then the stream ends.
        (
            "huge_len_truncated".into(),
            with(0, frame(1 << 40, 0, 0, b"xy")),
        ),
        // Announces descriptors; some chunks carry them.
        ("nfds".into(), with(0b100_000, frame(2, 0, 2, b"hi"))),
        ("nfds_253".into(), with(0, frame(0, 0, 253, b""))),
        ("corrupt_kind".into(), with(0b00_100, corrupt)),
        ("many_small".into(), with(0b01_100, many)),
        ("empty_message".into(), with(0, frame(0, 0, 0, b""))),
        // Descriptors sent with the headers that announce them.
        (
            "nfds_aligned".into(),
            with(0b1_001_000, {
                let mut s = frame(2, 0, 2, b"hi");
                s.extend(frame(0, 5, 1, b""));
                s.extend(frame(3, 0, 0, b"abc"));
                s.extend(frame(65_600, 0, 3, &big));
                s
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    /// Files under `fuzz/<kind>/<target>/`.
    fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    }

    /// Writes the seed corpora (run once by hand with
    /// `MULTIPROCESS_WRITE_CORPUS=1 cargo test -p multiprocess --lib fuzzing`).
    fn write_corpus() {
        let root = fuzz_dir().join("corpus");
        let h = root.join("handle_decode");
        let f = root.join("frame_stream");
        std::fs::create_dir_all(&h).unwrap();
        std::fs::create_dir_all(&f).unwrap();
        for (name, hb, fb) in seeds() {
            std::fs::write(h.join(format!("seed_{name}")), hb).unwrap();
            std::fs::write(f.join(format!("seed_{name}")), fb).unwrap();
        }
        for (name, fb) in frame_edge_seeds() {
            std::fs::write(f.join(format!("seed_{name}")), fb).unwrap();
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "sends over a socketpair; Miri has no sendmsg")]
    fn seeds_decode() {
        if std::env::var_os("MULTIPROCESS_WRITE_CORPUS").is_some() {
            write_corpus();
        }
        for (name, h, f) in seeds() {
            assert_eq!(handle_decode(&h), Ok(()), "{name}");
            assert_eq!(frame_stream(&f), Ok(2), "{name}");
        }
        for (name, f) in frame_edge_seeds() {
            let result = frame_stream(&f);
            if name == "nfds_aligned" {
                assert_eq!(result, Ok(4), "{name}");
            }
        }
    }

    /// Replays every committed corpus and regression input through the fuzz
    /// entry points: each must return (Ok or Err) without panicking.
    #[test]
    #[cfg_attr(miri, ignore = "sends over a socketpair; Miri has no sendmsg")]
    fn corpus_replays_without_panic() {
        let mut count = 0;
        for kind in ["corpus", "regressions"] {
            for path in inputs(kind, "frame_stream") {
                let data = std::fs::read(&path).unwrap();
                let _ = frame_stream(&data);
                count += 1;
            }
            for path in inputs(kind, "handle_decode") {
                let data = std::fs::read(&path).unwrap();
                let _ = handle_decode(&data);
                count += 1;
            }
        }
        assert!(count >= 20, "only {count} corpus files found under fuzz/");
    }
}
