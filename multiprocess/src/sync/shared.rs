//! What every synchronisation primitive shares: a small sealed memfd region
//! that starts with a 64-bit magic naming the primitive, and the serde glue
//! that sends it through the handle side table.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::sys::shm::SharedRegion;

/// Where the magic lives in every region made here.
pub(crate) const MAGIC_AT: usize = 0;

/// Creates a zeroed region of `len` bytes stamped with `magic`.
pub(crate) fn create(name: &str, len: usize, magic: u64) -> io::Result<Arc<SharedRegion>> {
    // Take a liveness id now, so a shortage of descriptors is this
    // constructor's error rather than a panic at the first acquire.
    crate::sys::liveness::register()?;
    let region = SharedRegion::create(name, len)?;
    region.atomic_u64(MAGIC_AT).store(magic, Ordering::Release);
    Ok(Arc::new(region))
}

/// Maps a region received as a descriptor, checking its magic (`what` names
/// the expected primitive in the error).
pub(crate) fn open(
    fd: OwnedFd,
    min_len: usize,
    magic: u64,
    what: &str,
) -> io::Result<Arc<SharedRegion>> {
    crate::sys::liveness::register()?;
    let region = SharedRegion::from_fd(fd, min_len)?;
    if region.atomic_u64(MAGIC_AT).load(Ordering::Acquire) != magic {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("descriptor is not a multiprocess {what}"),
        ));
    }
    Ok(Arc::new(region))
}

/// Implements `Serialize`/`Deserialize` for a primitive that is a
/// `region: Arc<SharedRegion>` field plus `fn from_fd(OwnedFd) -> io::Result<Self>`.
macro_rules! shared_handle {
    ($ty:ident, $what:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                crate::codec::serialize_fd(self.region.fd(), $what, serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let fd = crate::codec::deserialize_fd($what, deserializer)?;
                $ty::from_fd(fd).map_err(|e| crate::codec::handle_de_error(e.to_string()))
            }
        }
    };
}
pub(crate) use shared_handle;
