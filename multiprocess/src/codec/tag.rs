//! Type tags: a 64-bit name for a Rust type, the same in every process
//! running the same binary.

/// A 64-bit tag for the type `T`, equal in every process running the same
/// binary (it hashes `TypeId`). Connections send it with each message and
/// shared-memory handles store it, so a value is never decoded as a type other
/// than the one it was encoded from.
pub(crate) fn type_tag<T: ?Sized + 'static>() -> u64 {
    use std::hash::{Hash, Hasher};
    /// FNV-1a over whatever `TypeId::hash` writes: a few bytes, a few ns.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    std::any::TypeId::of::<T>().hash(&mut h);
    h.finish()
}
