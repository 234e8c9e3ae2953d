//! `ShareableList`: Python's `multiprocessing.shared_memory.ShareableList`,
//! a fixed-length list of small values in a named [`SharedMemory`] segment.
//!
//! # Layout of the segment
//!
//! Native-endian (a segment never leaves its machine); every field and every
//! slot starts at a multiple of 8 bytes.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"mpShList"`, written last by the creator |
//! | 8 | 4 | layout version, 1 |
//! | 12 | 4 | reserved, 0 |
//! | 16 | 8 | `len`: the number of slots |
//! | 24 | 8 | `data_len`: the bytes of the data area, the sum of the capacities |
//! | 32 | 16 × `len` | the slot table, one entry per slot |
//! | 32 + 16 × `len` | `data_len` | the data area: slot `i` at the sum of the capacities before it |
//!
//! A slot table entry is two 8-byte words:
//! - `capacity` (bits 0–31): the slot's bytes in the data area, fixed at
//!   creation (a multiple of 8, at least 8: Python's rule, 8 for a number,
//!   a bool or `None`, `8 × (n / 8 + 1)` for a string or bytes of `n`
//!   bytes); bits 32–63 hold the liveness id (not the pid: see
//!   `sys/liveness.rs`) of the process whose `set` of the slot
//!   is under way, 0 when none is (a writer stores it before the odd
//!   sequence below and clears it after the even one, so a list at rest
//!   reads as it did before the field existed);
//! - `state`: the kind of the value now in the slot (bits 32–39: 1 int,
//!   2 float, 3 bool, 4 str, 5 bytes, 6 None), its length in bytes (bits
//!   0–31: 8 for int, float and bool, 0 for None, the exact length of a str
//!   or bytes), and a write sequence number (bits 40–63), odd while a write
//!   is under way: a seqlock. `set` stores the old state with an odd
//!   sequence, writes the value, then stores the new state with the next
//!   (even) sequence; `get` reads the state, the value, and the state again,
//!   and starts over if the two differ or the sequence is odd.
//!
//! # A write under way
//!
//! A reader that finds an odd sequence waits for the writer: it spins
//! briefly, then sleeps in growing steps (up to [`MAX_PAUSE`]), so a writer
//! paused by `SIGSTOP` or a debugger costs it almost no CPU. It never calls
//! a live writer dead: only after waiting [`WRITE_WAIT`], and then only if,
//! at a probe (every [`park::SLICE`]), the state is still the odd one it saw
//! and the writer recorded in the capacity word is gone ([`owner_alive`]) —
//! or none is recorded (a segment written by an older version, or scribbled
//! on) — does it report [`Corrupt`](ShareableListError::Corrupt). This is the one wait
//! on shared memory that does not go through [`park`]: a `set` publishes
//! with plain stores and wakes no one (no syscall per write, and the layout
//! has no room for a sleepers count), so there is no futex to sleep on.
//!
//! An int is an `i64`, a float an `f64`'s bits, a bool an 8-byte 0 or 1, a
//! str its UTF-8 bytes. An attacher checks the magic, the version, that the
//! table and the data area fit in the segment, and every capacity and state;
//! each read checks the slot's state again (another process may have
//! scribbled over it), so a segment that is not a list or is corrupt gives
//! an error, never a panic or an access out of bounds.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::item::{ALIGN, Item, ItemKind};
use super::named::{SharedMemory, SharedMemoryError};
use crate::sync::park::my_id;
use crate::sync::park::{self, owner_alive};

const MAGIC: [u8; 8] = *b"mpShList";
const VERSION: u32 = 1;
const HEADER: usize = 32;
const ENTRY: usize = 16;
/// The state word's length bits.
const LEN_MASK: u64 = 0xffff_ffff;
/// The longest str or bytes item (its length must fit the state word).
const MAX_ITEM: usize = LEN_MASK as usize - ALIGN;
/// Where the state word's sequence number starts, and its bits.
const SEQ_SHIFT: u32 = 40;
const SEQ_MASK: u64 = (1 << 24) - 1;
/// How long a read waits for a write under way before it asks whether the
/// writer still lives (a writer killed mid-write leaves the sequence odd
/// until the next set).
const WRITE_WAIT: Duration = Duration::from_secs(1);
/// Polls of an odd sequence spent spinning (the first half with a spin hint,
/// the rest yielding) before a reader sleeps: a `set` of a small value takes
/// well under a microsecond.
const SPIN_POLLS: u32 = 64;
/// A reader's first sleep while a write is under way; each next one is
/// twice as long, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_micros(20);
/// The longest sleep of a reader between two looks at a write under way:
/// what a resumed writer may wait to be seen, and about 1000 wake-ups a
/// second of a few microseconds each while it is paused.
const MAX_PAUSE: Duration = Duration::from_millis(1);

/// Errors of [`ShareableList`] operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareableListError {
    /// Creating or attaching the segment failed: a name that exists or does
    /// not, an invalid name, the tracker (Python: `FileExistsError`,
    /// `FileNotFoundError`, `ValueError`).
    #[error(transparent)]
    SharedMemory(#[from] SharedMemoryError),
    /// An index at or past the end (Python: `IndexError`).
    #[error("ShareableList index {index} out of range (length {len})")]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// A str or bytes value longer than the slot's capacity, fixed at
    /// creation (Python: `ValueError: bytes/str item exceeds available
    /// storage`). The slot keeps its old value.
    #[error(
        "bytes/str item exceeds available storage: {needed} bytes for slot {index}, \
         which holds {capacity}"
    )]
    ExceedsStorage {
        /// The slot.
        index: usize,
        /// The value's length in bytes.
        needed: usize,
        /// The slot's capacity in bytes.
        capacity: usize,
    },
    /// A typed read ([`get_int`](ShareableList::get_int), …) of a slot that
    /// holds another kind.
    #[error("ShareableList slot {index} holds {found}, not {expected}")]
    WrongKind {
        /// The slot.
        index: usize,
        /// The kind asked for.
        expected: ItemKind,
        /// The kind in the slot.
        found: ItemKind,
    },
    /// The segment exists but does not start with a ShareableList header
    /// (or is a list of another layout version).
    #[error("shared memory segment {name:?} is not a ShareableList: {reason}")]
    NotAShareableList {
        /// The segment's name.
        name: String,
        /// What is missing.
        reason: String,
    },
    /// The header or a slot holds values no list can have: the segment was
    /// overwritten by something other than this type.
    #[error("ShareableList {name:?} is corrupt: {reason}")]
    Corrupt {
        /// The segment's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An item or a whole list too large for the layout (an item over
    /// 4 GiB, or sizes that overflow).
    #[error("ShareableList item or list too large: {len} bytes")]
    TooLarge {
        /// The size in bytes that does not fit.
        len: usize,
    },
}

/// Where slot `i`'s bytes are, cached from the header at creation or
/// attach: capacities never change, so a later scribble over the table
/// cannot move an access out of bounds.
#[derive(Clone, Copy, Debug)]
struct Slot {
    data: usize,
    capacity: usize,
}

/// The offset of slot `i`'s capacity word.
fn entry_at(i: usize) -> usize {
    HEADER + i * ENTRY
}

/// Makes this process judgeable by, and able to judge, every other user
/// of a list, which may share no process tree with it (attached by name):
/// joins the per-user liveness domain of named segments and takes an id
/// (see `sys/liveness.rs`).
fn join_liveness(name: &str) -> Result<(), ShareableListError> {
    crate::sys::liveness::join_named()
        .and_then(|()| crate::sys::liveness::register().map(drop))
        .map_err(|source| {
            ShareableListError::SharedMemory(SharedMemoryError::Io {
                name: name.to_owned(),
                source,
            })
        })
}

/// The capacity word's writer-id field (see the layout).
const PID_SHIFT: u32 = 32;

/// The offset of slot `i`'s state word.
fn state_at(i: usize) -> usize {
    entry_at(i) + 8
}

fn pack_state(kind: ItemKind, len: usize, seq: u64) -> u64 {
    ((seq & SEQ_MASK) << SEQ_SHIFT) | (kind.code() << 32) | (len as u64 & LEN_MASK)
}

/// The state word's write sequence number.
fn seq_of(word: u64) -> u64 {
    word >> SEQ_SHIFT
}

/// Decodes and checks a state word against the slot's capacity.
fn unpack_state(word: u64, capacity: usize) -> Result<(ItemKind, usize), String> {
    let code = (word >> 32) & 0xff;
    let kind = ItemKind::from_code(code).ok_or_else(|| format!("unknown kind code {code}"))?;
    let len = (word & LEN_MASK) as usize;
    let ok = match kind {
        ItemKind::None => len == 0,
        ItemKind::Str | ItemKind::Bytes => len <= capacity,
        _ => len == ALIGN,
    };
    if ok {
        Ok((kind, len))
    } else {
        Err(format!(
            "{kind} of {len} bytes in a slot of {capacity} bytes"
        ))
    }
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_ne_bytes(w)
}

/// A reader's wait for a write under way (see the module's "A write under
/// way"): a short spin, then sleeps growing to [`MAX_PAUSE`]; the writer's
/// liveness is worth asking once [`WRITE_WAIT`] has passed, then every
/// [`park::SLICE`].
#[derive(Default)]
struct WriteWait {
    polls: u32,
    pause: Duration,
    /// When the next probe is due (set at the first sleep).
    next_probe: Option<Instant>,
}

impl WriteWait {
    /// Whether to ask now if the writer still lives.
    fn probe_due(&mut self) -> bool {
        let Some(due) = self.next_probe else {
            return false;
        };
        let now = Instant::now();
        if now < due {
            return false;
        }
        self.next_probe = Some(now + park::SLICE);
        true
    }

    /// One pause before the next look at the slot.
    fn pause(&mut self) {
        self.polls += 1;
        if self.polls <= SPIN_POLLS / 2 {
            std::hint::spin_loop();
        } else if self.polls <= SPIN_POLLS {
            std::thread::yield_now();
        } else {
            if self.next_probe.is_none() {
                self.next_probe = Some(Instant::now() + WRITE_WAIT);
            }
            self.pause = (self.pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
            std::thread::sleep(self.pause);
        }
    }
}

/// A fixed-length list of ints, floats, bools, strs, bytes and `None`s in a
/// named shared memory segment, which unrelated processes attach to by
/// name: Python's `multiprocessing.shared_memory.ShareableList`.
///
/// # Why a list of [`Item`]s
///
/// Python's list is heterogeneous, and each slot may later take a value of
/// another kind if it fits (the docs' `a[2] = 'dry ice'` over a float); a
/// Python user expects both, so the list holds the closed enum [`Item`] and
/// records each slot's kind in the segment, where an attacher that knows
/// only the name reads it. A list of one plain-data type is already an
/// [`Array<T>`](crate::Array) (or a [`RawArray`](crate::RawArray)); a
/// `ShareableList<T>` would add a by-name attach and nothing else, and could
/// not hold Python's mixed lists. What Rust's types add here: the set of
/// kinds is closed (no `TypeError` at run time), every index is checked
/// ([`IndexOutOfRange`](ShareableListError::IndexOutOfRange)), and the typed
/// reads ([`get_int`](Self::get_int), [`get_str`](Self::get_str), …) say
/// [`WrongKind`](ShareableListError::WrongKind) instead of handing back a
/// value of an unexpected type.
///
/// # Capacity
///
/// The list's length and each slot's capacity are fixed at creation, as in
/// Python: 8 bytes for a number, a bool or `None`, and for a str or bytes of
/// `n` bytes the next multiple of 8 above `n` (Python's rule: `"howdy"` gets
/// 8, an 8-byte string 16). [`set`](Self::set) stores any kind that fits; a
/// longer str or bytes is refused with
/// [`ExceedsStorage`](ShareableListError::ExceedsStorage), Python's
/// `ValueError: … exceeds available storage`, and the slot keeps its value.
/// To reserve room, create the slot with a placeholder as long as the
/// longest value it will hold (Python's idiom too).
///
/// # Lifetime, tracking and passing to children
///
/// The list lives in a [`SharedMemory`] segment ([`shm`](Self::shm)), with
/// the same rules: dropping the list unmaps it here (Python's
/// `shm.close()`), [`unlink`](Self::unlink) removes the name, and the
/// tracker unlinks the segment once every process that created or attached
/// it has exited without unlinking it, killed or not. A `ShareableList` in a
/// child's arguments (or sent through a queue) attaches the same segment on
/// arrival, and so does [`attach`](Self::attach) with its
/// [`name`](Self::name) in any process of the program.
///
/// # Concurrency
///
/// Like Python's, the list has no lock, and nothing here is undefined
/// behaviour: the segment is only read and written with atomic copies.
/// Each slot is a *seqlock*: [`get`](Self::get) retries while a
/// [`set`](Self::set) of that slot is under way, so a read returns a value
/// that some `set` wrote, never a mix of two (Python's can return a torn
/// string). What the list does not do:
/// - order two writers: `set`s of one slot from two processes at once can
///   interleave their bytes, leaving a mix (a str that is not UTF-8 then
///   reads as [`Corrupt`](ShareableListError::Corrupt));
/// - make a read-modify-write (`a[3] += 1`) atomic;
/// - survive a writer killed in the middle of a `set`: reads of that slot
///   wait a second, then report [`Corrupt`](ShareableListError::Corrupt),
///   until the next `set` of the slot. A writer that is only paused
///   (`SIGSTOP`, a debugger) is waited for, as a lock's holder would be:
///   the reader sleeps (it does not spin a CPU) and returns once the write
///   completes. The writer's liveness id, recorded in the slot, tells the
///   two apart, as for a [`Lock`](crate::Lock)'s holder: the kernel
///   releases it when the writer dies, so neither pid reuse nor a writer in
///   another pid namespace is mistaken. A reader that cannot judge the
///   writer (it shares no process tree and no handle with it, having only
///   attached by name) never reports `Corrupt` for it: it waits.
///
/// So readers need no lock, but writers should share a
/// [`Lock`](crate::Lock), passed alongside the list:
///
/// ```no_run
/// use multiprocess::{Lock, Process, ShareableList};
///
/// fn add_one(name: String, lock: Lock) {
///     let list = ShareableList::attach(&name).unwrap();
///     for _ in 0..1000 {
///         let _guard = lock.acquire();
///         let n = list.get_int(0).unwrap();
///         list.set(0, n + 1).unwrap();
///     }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiprocess::init();
///     let list = ShareableList::new([0])?;
///     let lock = Lock::new()?;
///     let ps: Vec<Process> = (0..4)
///         .map(|_| Process::new(add_one, (list.name().to_owned(), lock.clone())))
///         .collect();
///     for p in &ps {
///         p.start()?;
///     }
///     for p in &ps {
///         p.join()?;
///     }
///     assert_eq!(list.get_int(0)?, 4000);
///     list.unlink()?;
///     Ok(())
/// }
/// ```
///
/// # Differences from Python
/// - No negative indices or slices: `get(len - 1)`, [`to_vec`](Self::to_vec).
/// - A str's capacity counts its UTF-8 bytes (Python 3.11 counts
///   characters, and then truncates a non-ASCII string that does not fit).
/// - The exact length of a str or bytes value is stored, so trailing NUL
///   bytes survive (Python strips them: gh-106939).
/// - [`index`](Self::index) and [`count`](Self::count) compare kind and
///   value: `Item::Int(1)` does not match `Item::Float(1.0)` or
///   `Item::Bool(true)`.
/// - A read is never torn by a concurrent write (see Concurrency above).
/// - The segment has a header with a magic number, so attaching to
///   something that is not a list is an error
///   ([`NotAShareableList`](ShareableListError::NotAShareableList)); the
///   layout is not Python's, so a Python process cannot attach it.
///
/// # Examples
///
/// Python's documentation example:
///
/// ```
/// # multiprocess::init_before_main!();
/// use multiprocess::{Item, ItemKind, ShareableList, ShareableListError, items};
///
/// let a = ShareableList::new(items!["howdy", b"HoWdY", -273.154, 100, Item::None, true, 42])?;
/// assert_eq!(a.get(2)?, Item::Float(-273.154));
/// a.set(2, -78.5)?;
/// assert_eq!(a.get_float(2)?, -78.5);
/// a.set(2, "dry ice")?; // changing kinds is supported as well
/// assert_eq!(a.get_str(2)?, "dry ice");
/// assert!(matches!(
///     a.set(2, "larger than previously allocated storage space"),
///     Err(ShareableListError::ExceedsStorage { .. })
/// ));
/// assert_eq!(a.get_str(2)?, "dry ice");
/// assert_eq!(a.len(), 7);
/// assert_eq!(a.index(42)?, Some(6));
/// assert_eq!(a.count(b"howdy")?, 0);
/// assert_eq!(a.count(b"HoWdY")?, 1);
/// assert_eq!(a.kind(0)?, ItemKind::Str);
///
/// // Another process attaches with the name alone.
/// let c = ShareableList::attach(a.name())?;
/// c.set(6, -999)?;
/// assert_eq!(a.get(6)?, Item::Int(-999));
/// a.unlink()?;
/// # Ok::<(), ShareableListError>(())
/// ```
#[derive(Debug)]
pub struct ShareableList {
    shm: SharedMemory,
    slots: Vec<Slot>,
}

impl ShareableList {
    /// Creates a list holding `items` in a new segment with a fresh random
    /// name (`psm_…`), registered with the tracker: Python's
    /// `ShareableList(sequence)`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::ShareableList;
    ///
    /// let numbers = ShareableList::new(0..5)?;
    /// assert_eq!(numbers.len(), 5);
    /// assert_eq!(numbers.get_int(4)?, 4);
    /// let empty = ShareableList::new(Vec::<i64>::new())?;
    /// assert!(empty.is_empty());
    /// numbers.unlink()?;
    /// empty.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// [`TooLarge`](ShareableListError::TooLarge) for an item over 4 GiB,
    /// or the [`SharedMemory::create`] errors.
    pub fn new<I>(items: I) -> Result<Self, ShareableListError>
    where
        I: IntoIterator,
        I::Item: Into<Item>,
    {
        Self::create(None, items)
    }

    /// Like [`new`](Self::new), in a segment named `name`: Python's
    /// `ShareableList(sequence, name=name)`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::{ShareableList, ShareableListError, SharedMemoryError};
    ///
    /// let name = format!("doc_with_name_{}", std::process::id());
    /// let list = ShareableList::with_name(&name, ["a", "b"])?;
    /// assert_eq!(list.name(), name);
    /// assert!(matches!(
    ///     ShareableList::with_name(&name, [1]),
    ///     Err(ShareableListError::SharedMemory(SharedMemoryError::AlreadyExists { .. }))
    /// ));
    /// list.unlink()?;
    /// # Ok::<(), ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`new`](Self::new), and
    /// [`AlreadyExists`](SharedMemoryError::AlreadyExists) or
    /// [`InvalidName`](SharedMemoryError::InvalidName) for the name.
    pub fn with_name<I>(name: &str, items: I) -> Result<Self, ShareableListError>
    where
        I: IntoIterator,
        I::Item: Into<Item>,
    {
        Self::create(Some(name), items)
    }

    fn create<I>(name: Option<&str>, items: I) -> Result<Self, ShareableListError>
    where
        I: IntoIterator,
        I::Item: Into<Item>,
    {
        join_liveness(name.unwrap_or("psm_"))?;
        let items: Vec<Item> = items.into_iter().map(Into::into).collect();
        let too_large = |len| ShareableListError::TooLarge { len };
        let mut slots = Vec::with_capacity(items.len());
        let table = items
            .len()
            .checked_mul(ENTRY)
            .and_then(|t| t.checked_add(HEADER))
            .ok_or(too_large(usize::MAX))?;
        let mut data_len = 0usize;
        for item in &items {
            let payload = item.payload().len();
            if payload > MAX_ITEM {
                return Err(too_large(payload));
            }
            let capacity = item.initial_capacity();
            slots.push(Slot {
                data: table + data_len,
                capacity,
            });
            data_len = data_len
                .checked_add(capacity)
                .ok_or(too_large(usize::MAX))?;
        }
        let size = table.checked_add(data_len).ok_or(too_large(usize::MAX))?;
        let shm = SharedMemory::create(name, size)?;
        let list = Self { shm, slots };
        if let Err(e) = list.fill(&items, data_len) {
            let _ = list.shm.unlink();
            return Err(e);
        }
        Ok(list)
    }

    /// Writes the table, the values and the header of a fresh segment; the
    /// magic goes last, so an attacher never accepts a half-written list.
    fn fill(&self, items: &[Item], data_len: usize) -> Result<(), ShareableListError> {
        let mut table = Vec::with_capacity(items.len() * ENTRY);
        for (item, slot) in items.iter().zip(&self.slots) {
            let payload = item.payload();
            table.extend_from_slice(&(slot.capacity as u64).to_ne_bytes());
            table.extend_from_slice(&pack_state(item.kind(), payload.len(), 0).to_ne_bytes());
            self.shm.write_at(slot.data, &payload)?;
        }
        self.shm.write_at(HEADER, &table)?;
        let mut header = Vec::with_capacity(HEADER - 8);
        header.extend_from_slice(&VERSION.to_ne_bytes());
        header.extend_from_slice(&0u32.to_ne_bytes());
        header.extend_from_slice(&(items.len() as u64).to_ne_bytes());
        header.extend_from_slice(&(data_len as u64).to_ne_bytes());
        self.shm.write_at(8, &header)?;
        // One aligned 8-byte store after a release fence: whoever sees the
        // magic sees everything above.
        self.shm.write_at(0, &MAGIC)?;
        Ok(())
    }

    /// Attaches the list in segment `name`, made by any process of this
    /// program, and registers it with the tracker: Python's
    /// `ShareableList(name=name)`. The length, kinds and capacities come
    /// from the segment's header.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::{Item, ShareableList};
    ///
    /// let b = ShareableList::new(0..5)?;
    /// let c = ShareableList::attach(b.name())?;
    /// c.set(4, -999)?;
    /// assert_eq!(b.get(4)?, Item::Int(-999));
    /// c.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// [`NotFound`](SharedMemoryError::NotFound) (wrapped in
    /// [`ShareableListError::SharedMemory`]) if there is no such segment,
    /// [`NotAShareableList`](ShareableListError::NotAShareableList) or
    /// [`Corrupt`](ShareableListError::Corrupt) if the segment does not hold
    /// a list (then this process does not become one of its holders), or
    /// the other [`SharedMemory::attach`] errors.
    pub fn attach(name: &str) -> Result<Self, ShareableListError> {
        Self::attach_with(name, true)
    }

    /// Like [`attach`](Self::attach) without registering with the tracker,
    /// as [`SharedMemory::attach_untracked`]. (A tracked `attach` is already
    /// safe from another process tree: a tracker never unlinks what its
    /// tree only attached.)
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::ShareableList;
    ///
    /// let list = ShareableList::new(["x"])?;
    /// let view = ShareableList::attach_untracked(list.name())?;
    /// assert!(!view.shm().is_tracked());
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`attach`](Self::attach).
    pub fn attach_untracked(name: &str) -> Result<Self, ShareableListError> {
        Self::attach_with(name, false)
    }

    fn attach_with(name: &str, track: bool) -> Result<Self, ShareableListError> {
        join_liveness(name)?;
        // Check the layout before registering, so a failed attach does not
        // make this process a holder of someone else's segment.
        let mut list = Self::open(SharedMemory::attach_untracked(name)?)?;
        if track {
            list.shm.track()?;
        }
        Ok(list)
    }

    /// Reads and checks the header of an attached segment.
    fn open(shm: SharedMemory) -> Result<Self, ShareableListError> {
        let name = shm.name().to_owned();
        let size = shm.size();
        let not_list = |reason: String| ShareableListError::NotAShareableList {
            name: name.clone(),
            reason,
        };
        let corrupt = |reason: String| ShareableListError::Corrupt {
            name: name.clone(),
            reason,
        };
        if size < HEADER {
            return Err(not_list(format!(
                "{size} bytes, smaller than the {HEADER}-byte header"
            )));
        }
        let mut header = [0u8; HEADER];
        shm.read_at(0, &mut header)?;
        if header[..8] != MAGIC {
            return Err(not_list(
                "no ShareableList header (magic bytes differ)".into(),
            ));
        }
        let version = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]);
        if version != VERSION {
            return Err(not_list(format!(
                "layout version {version}, this library reads {VERSION}"
            )));
        }
        if header[12..16] != [0; 4] {
            return Err(corrupt("reserved header bytes are not zero".into()));
        }
        let len = read_u64(&header, 16);
        let data_len = read_u64(&header, 24);
        let fits = |n: u64, per: usize| {
            usize::try_from(n)
                .ok()
                .and_then(|n| n.checked_mul(per))
                .filter(|&bytes| bytes <= size - HEADER)
        };
        let Some(table_bytes) = fits(len, ENTRY) else {
            return Err(corrupt(format!(
                "{len} slots do not fit in a segment of {size} bytes"
            )));
        };
        let len = table_bytes / ENTRY;
        let data_start = HEADER + table_bytes;
        let data_len = usize::try_from(data_len)
            .ok()
            .filter(|&d| d <= size - data_start)
            .ok_or_else(|| {
                corrupt(format!(
                    "a data area of {data_len} bytes does not fit in a segment of {size} bytes"
                ))
            })?;
        let mut table = vec![0u8; table_bytes];
        shm.read_at(HEADER, &mut table)?;
        let mut slots = Vec::with_capacity(len);
        let mut used = 0usize;
        for i in 0..len {
            // The high half is the pid of a write under way, if any.
            let capacity = read_u64(&table, i * ENTRY) & LEN_MASK;
            let bad_capacity = capacity == 0
                || !capacity.is_multiple_of(ALIGN as u64)
                || capacity > (data_len - used) as u64;
            if bad_capacity {
                return Err(corrupt(format!(
                    "slot {i} has a capacity of {capacity} bytes ({} of {data_len} left)",
                    data_len - used
                )));
            }
            let capacity = capacity as usize;
            unpack_state(read_u64(&table, i * ENTRY + 8), capacity)
                .map_err(|e| corrupt(format!("slot {i}: {e}")))?;
            slots.push(Slot {
                data: data_start + used,
                capacity,
            });
            used += capacity;
        }
        if used != data_len {
            return Err(corrupt(format!(
                "the slots hold {used} bytes, the header says {data_len}"
            )));
        }
        Ok(Self { shm, slots })
    }

    /// The number of slots (Python's `len(a)`), fixed at creation.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let list = multiprocess::ShareableList::new([1, 2, 3])?;
    /// assert_eq!(list.len(), 3);
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the list has no slots.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let list = multiprocess::ShareableList::new([true])?;
    /// assert!(!list.is_empty());
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The segment's name, to attach from another process (Python's
    /// `a.shm.name`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let list = multiprocess::ShareableList::new([1])?;
    /// assert!(list.name().starts_with("psm_"));
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The segment holding the list (Python's `a.shm`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let list = multiprocess::ShareableList::new(["howdy"])?;
    /// assert!(list.shm().size() >= 32 + 16 + 8);
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// Removes the segment's name (Python's `a.shm.unlink()`); this mapping
    /// and other processes' stay usable until dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::ShareableList;
    ///
    /// let list = ShareableList::new([1])?;
    /// list.unlink()?;
    /// assert!(ShareableList::attach(list.name()).is_err());
    /// assert_eq!(list.get_int(0)?, 1); // still mapped here
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`SharedMemory::unlink`].
    pub fn unlink(&self) -> Result<(), ShareableListError> {
        Ok(self.shm.unlink()?)
    }

    fn slot(&self, index: usize) -> Result<Slot, ShareableListError> {
        self.slots
            .get(index)
            .copied()
            .ok_or(ShareableListError::IndexOutOfRange {
                index,
                len: self.len(),
            })
    }

    fn corrupt(&self, reason: String) -> ShareableListError {
        ShareableListError::Corrupt {
            name: self.name().to_owned(),
            reason,
        }
    }

    /// Slot `index`'s capacity word (capacity and the pid of a writer).
    fn capacity_word(&self, index: usize) -> Result<&AtomicU64, ShareableListError> {
        Ok(self.shm.atomic_u64(entry_at(index))?)
    }

    /// Slot `index`'s state word.
    fn state_word(&self, index: usize) -> Result<&AtomicU64, ShareableListError> {
        Ok(self.shm.atomic_u64(state_at(index))?)
    }

    /// Slot `index`'s state, checked.
    fn state(&self, index: usize, slot: Slot) -> Result<(ItemKind, usize), ShareableListError> {
        let word = self.state_word(index)?.load(Ordering::Acquire);
        unpack_state(word, slot.capacity).map_err(|e| self.corrupt(format!("slot {index}: {e}")))
    }

    /// The value in slot `index` (Python's `a[index]`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::{Item, ShareableList, ShareableListError};
    ///
    /// let list = ShareableList::new([Some(1.5), None])?;
    /// assert_eq!(list.get(0)?, Item::Float(1.5));
    /// assert_eq!(list.get(1)?, Item::None);
    /// assert!(matches!(list.get(2), Err(ShareableListError::IndexOutOfRange { .. })));
    /// list.unlink()?;
    /// # Ok::<(), ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// [`IndexOutOfRange`](ShareableListError::IndexOutOfRange), or
    /// [`Corrupt`](ShareableListError::Corrupt) if the slot holds bytes no
    /// `set` wrote (see the type's notes on concurrency).
    pub fn get(&self, index: usize) -> Result<Item, ShareableListError> {
        let slot = self.slot(index)?;
        let state = self.state_word(index)?;
        let mut bytes = Vec::new();
        let mut wait = WriteWait::default();
        loop {
            // The seqlock's read side: the acquire load pairs with the
            // writer's release stores; `read_at` ends with an acquire fence,
            // so if it saw any byte of a later write, the second load sees
            // that write's odd (or a later) state.
            let before = state.load(Ordering::Acquire);
            if seq_of(before).is_multiple_of(2) {
                let (kind, len) = unpack_state(before, slot.capacity)
                    .map_err(|e| self.corrupt(format!("slot {index}: {e}")))?;
                bytes.resize(len, 0);
                self.shm.read_at(slot.data, &mut bytes)?;
                if state.load(Ordering::Relaxed) == before {
                    return self.decode(index, kind, bytes);
                }
                // A write came and went during the copy: read again.
                continue;
            }
            // A write is under way: wait for it while its writer lives.
            if wait.probe_due()
                && let Some(reason) = self.writer_gone(index, before)?
            {
                return Err(self.corrupt(reason));
            }
            wait.pause();
        }
    }

    /// Why the write under way in slot `index`, seen as state `seen`, will
    /// never finish, or `None` while it may: its writer (recorded in the
    /// capacity word) is alive, or the slot has moved on meanwhile.
    fn writer_gone(&self, index: usize, seen: u64) -> Result<Option<String>, ShareableListError> {
        // The acquire load of `seen` saw the writer's release store of the
        // odd state, so the pid it stored before is visible; if this load
        // sees the writer's clearing instead (a release store after its
        // final state), the re-load below sees that final state.
        let id = (self.capacity_word(index)?.load(Ordering::Acquire) >> PID_SHIFT) as u32;
        if id != 0 && owner_alive(id) {
            return Ok(None);
        }
        if self.state_word(index)?.load(Ordering::Acquire) != seen {
            return Ok(None);
        }
        Ok(Some(if id == 0 {
            format!(
                "slot {index}: a write did not finish within {WRITE_WAIT:?} and no \
                 writer is recorded (its writer died mid-write?)"
            )
        } else {
            format!("slot {index}: its writer (liveness id {id}) died mid-write")
        }))
    }

    /// The value of `kind` in `bytes`, read consistently from slot `index`.
    fn decode(
        &self,
        index: usize,
        kind: ItemKind,
        bytes: Vec<u8>,
    ) -> Result<Item, ShareableListError> {
        Ok(match kind {
            ItemKind::None => Item::None,
            ItemKind::Str => Item::Str(
                String::from_utf8(bytes)
                    .map_err(|_| self.corrupt(format!("slot {index}: a str that is not UTF-8")))?,
            ),
            ItemKind::Bytes => Item::Bytes(bytes),
            _ => {
                let word = read_u64(&bytes, 0);
                match kind {
                    ItemKind::Int => Item::Int(word as i64),
                    ItemKind::Float => Item::Float(f64::from_bits(word)),
                    _ => match word {
                        0 => Item::Bool(false),
                        1 => Item::Bool(true),
                        w => {
                            return Err(self.corrupt(format!("slot {index}: bool word {w:#x}")));
                        }
                    },
                }
            }
        })
    }

    /// Stores `value` in slot `index` (Python's `a[index] = value`). Any
    /// kind may replace any other, as in Python, if it fits the slot's
    /// capacity; a number, bool or `None` always fits.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::{Item, ShareableList, ShareableListError};
    ///
    /// let list = ShareableList::new(["howdy", "12345678"])?;
    /// assert_eq!(list.capacity(0)?, 8);
    /// list.set(0, "8 bytes!")?;
    /// list.set(1, 7)?; // a str slot takes an int
    /// assert_eq!(list.get(1)?, Item::Int(7));
    /// list.set(1, "sixteen bytes..!")?; // and a str as long as its capacity
    /// assert!(matches!(
    ///     list.set(0, "nine byte"),
    ///     Err(ShareableListError::ExceedsStorage { needed: 9, capacity: 8, .. })
    /// ));
    /// assert_eq!(list.get_str(0)?, "8 bytes!");
    /// list.unlink()?;
    /// # Ok::<(), ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// [`IndexOutOfRange`](ShareableListError::IndexOutOfRange), or
    /// [`ExceedsStorage`](ShareableListError::ExceedsStorage) for a str or
    /// bytes longer than the slot (nothing is written then).
    pub fn set(&self, index: usize, value: impl Into<Item>) -> Result<(), ShareableListError> {
        let item = value.into();
        let slot = self.slot(index)?;
        let payload = item.payload();
        if payload.len() > slot.capacity {
            return Err(ShareableListError::ExceedsStorage {
                index,
                needed: payload.len(),
                capacity: slot.capacity,
            });
        }
        // The seqlock's write side: the old state with an odd sequence, then
        // the bytes (`write_at` starts with a release fence, so a reader
        // that sees any of them also sees the odd state), then the new state
        // with the next, even, sequence. An odd sequence left by a writer
        // that died mid-write is simply moved on.
        // Around it, the writer's liveness id in the capacity word, for a reader
        // that finds the sequence odd to tell a paused writer from a dead
        // one; the odd state is a release store, so a reader that sees it
        // sees the id.
        let state = self.state_word(index)?;
        let capacity = self.capacity_word(index)?;
        let old = state.load(Ordering::Relaxed);
        let busy = (seq_of(old) + 1) | 1;
        capacity.store(
            slot.capacity as u64 | u64::from(my_id()) << PID_SHIFT,
            Ordering::Relaxed,
        );
        state.store(
            (old & !(SEQ_MASK << SEQ_SHIFT)) | ((busy & SEQ_MASK) << SEQ_SHIFT),
            Ordering::Release,
        );
        self.shm.write_at(slot.data, &payload)?;
        state.store(
            pack_state(item.kind(), payload.len(), busy + 1),
            Ordering::Release,
        );
        capacity.store(slot.capacity as u64, Ordering::Release);
        Ok(())
    }

    /// The kind of the value in slot `index`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::{ItemKind, ShareableList};
    ///
    /// let list = ShareableList::new([1])?;
    /// list.set(0, false)?;
    /// assert_eq!(list.kind(0)?, ItemKind::Bool);
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub fn kind(&self, index: usize) -> Result<ItemKind, ShareableListError> {
        let slot = self.slot(index)?;
        Ok(self.state(index, slot)?.0)
    }

    /// The capacity of slot `index` in bytes, fixed at creation: the
    /// longest str or bytes it can hold.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let list = multiprocess::ShareableList::new([b"".to_vec(), vec![0; 8]])?;
    /// assert_eq!(list.capacity(0)?, 8);
    /// assert_eq!(list.capacity(1)?, 16);
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// [`IndexOutOfRange`](ShareableListError::IndexOutOfRange).
    pub fn capacity(&self, index: usize) -> Result<usize, ShareableListError> {
        Ok(self.slot(index)?.capacity)
    }

    fn wrong_kind(&self, index: usize, expected: ItemKind, found: &Item) -> ShareableListError {
        ShareableListError::WrongKind {
            index,
            expected,
            found: found.kind(),
        }
    }

    /// The int in slot `index`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::{ItemKind, ShareableList, ShareableListError};
    ///
    /// let list = ShareableList::new([1.5])?;
    /// assert!(matches!(
    ///     list.get_int(0),
    ///     Err(ShareableListError::WrongKind { expected: ItemKind::Int, found: ItemKind::Float, .. })
    /// ));
    /// list.unlink()?;
    /// # Ok::<(), ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// [`WrongKind`](ShareableListError::WrongKind) if the slot holds
    /// another kind, or as for [`get`](Self::get).
    pub fn get_int(&self, index: usize) -> Result<i64, ShareableListError> {
        let item = self.get(index)?;
        item.as_int()
            .ok_or_else(|| self.wrong_kind(index, ItemKind::Int, &item))
    }

    /// The float in slot `index`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let list = multiprocess::ShareableList::new([0.25])?;
    /// assert_eq!(list.get_float(0)?, 0.25);
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`get_int`](Self::get_int).
    pub fn get_float(&self, index: usize) -> Result<f64, ShareableListError> {
        let item = self.get(index)?;
        item.as_float()
            .ok_or_else(|| self.wrong_kind(index, ItemKind::Float, &item))
    }

    /// The bool in slot `index`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let list = multiprocess::ShareableList::new([true])?;
    /// assert!(list.get_bool(0)?);
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`get_int`](Self::get_int).
    pub fn get_bool(&self, index: usize) -> Result<bool, ShareableListError> {
        let item = self.get(index)?;
        item.as_bool()
            .ok_or_else(|| self.wrong_kind(index, ItemKind::Bool, &item))
    }

    /// The str in slot `index`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let list = multiprocess::ShareableList::new(["howdy"])?;
    /// assert_eq!(list.get_str(0)?, "howdy");
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`get_int`](Self::get_int).
    pub fn get_str(&self, index: usize) -> Result<String, ShareableListError> {
        match self.get(index)? {
            Item::Str(s) => Ok(s),
            other => Err(self.wrong_kind(index, ItemKind::Str, &other)),
        }
    }

    /// The bytes in slot `index`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let list = multiprocess::ShareableList::new([b"HoWdY"])?;
    /// assert_eq!(list.get_bytes(0)?, b"HoWdY");
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`get_int`](Self::get_int).
    pub fn get_bytes(&self, index: usize) -> Result<Vec<u8>, ShareableListError> {
        match self.get(index)? {
            Item::Bytes(b) => Ok(b),
            other => Err(self.wrong_kind(index, ItemKind::Bytes, &other)),
        }
    }

    /// Every value, in order (Python's `list(a)`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::{Item, ShareableList};
    ///
    /// let list = ShareableList::new([1, 2])?;
    /// assert_eq!(list.to_vec()?, [Item::Int(1), Item::Int(2)]);
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`get`](Self::get), for any slot.
    pub fn to_vec(&self) -> Result<Vec<Item>, ShareableListError> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// The first index holding `value` (same kind and value), or `None`
    /// (Python's `a.index(value)`, which raises `ValueError` instead).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let list = multiprocess::ShareableList::new([3, 4, 3])?;
    /// assert_eq!(list.index(3)?, Some(0));
    /// assert_eq!(list.index(3.0)?, None); // a float is not an int
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`get`](Self::get), for a slot read before a match.
    pub fn index(&self, value: impl Into<Item>) -> Result<Option<usize>, ShareableListError> {
        let value = value.into();
        for i in 0..self.len() {
            if self.get(i)? == value {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// How many slots hold `value` (Python's `a.count(value)`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let list = multiprocess::ShareableList::new([b"HoWdY", b"howdy", b"HoWdY"])?;
    /// assert_eq!(list.count(b"HoWdY")?, 2);
    /// list.unlink()?;
    /// # Ok::<(), multiprocess::ShareableListError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`get`](Self::get), for any slot.
    pub fn count(&self, value: impl Into<Item>) -> Result<usize, ShareableListError> {
        let value = value.into();
        let mut n = 0;
        for i in 0..self.len() {
            if self.get(i)? == value {
                n += 1;
            }
        }
        Ok(n)
    }
}

impl fmt::Display for ShareableList {
    /// Python's `repr`: `ShareableList([0, 'a', None], name='psm_…')`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShareableList([")?;
        for i in 0..self.len() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match self.get(i) {
                Ok(item) => write!(f, "{item}")?,
                Err(_) => f.write_str("<corrupt>")?,
            }
        }
        write!(f, "], name='{}')", self.name())
    }
}

/// What travels when a `ShareableList` is serialized.
#[derive(Serialize, Deserialize)]
struct Wire {
    name: String,
    tracked: bool,
}

impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            name: self.name().to_owned(),
            tracked: self.shm.is_tracked(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(d)?;
        crate::codec::skip_in_probe()?;
        ShareableList::attach_with(&wire.name, wire.tracked).map_err(|e| {
            crate::codec::handle_de_error(format!(
                "cannot attach ShareableList {:?} (unlinked?): {e}",
                wire.name
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_bad_ones_are_refused() {
        for (kind, len) in [
            (ItemKind::Int, 8),
            (ItemKind::Str, 5),
            (ItemKind::Bytes, 16),
            (ItemKind::None, 0),
        ] {
            assert_eq!(unpack_state(pack_state(kind, len, 7), 16), Ok((kind, len)));
        }
        assert!(unpack_state(0, 8).is_err());
        assert!(unpack_state(7 << 32, 8).is_err());
        assert!(unpack_state(pack_state(ItemKind::Str, 9, 0), 8).is_err());
        assert!(unpack_state(pack_state(ItemKind::Int, 4, 0), 8).is_err());
        assert!(unpack_state(pack_state(ItemKind::None, 1, 0), 8).is_err());
        assert!(unpack_state(pack_state(ItemKind::Int, 8, 0) | 1 << 39, 8).is_err());
        // The sequence number is not part of the kind.
        let word = pack_state(ItemKind::Bytes, 3, SEQ_MASK);
        assert_eq!(seq_of(word), SEQ_MASK);
        assert_eq!(unpack_state(word, 8), Ok((ItemKind::Bytes, 3)));
    }
}
