//! Random bytes from the kernel: authentication challenges, unique names.

use std::io;

/// Fills `buf` with random bytes from the kernel's CSPRNG (blocking only
/// until it is seeded at boot). EINTR and short reads are continued.
///
/// # References
/// - [`getrandom(2)`](https://man7.org/linux/man-pages/man2/getrandom.2.html)
pub(crate) fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::rand::getrandom(&mut buf[done..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_fills_differ() {
        let (mut a, mut b) = ([0u8; 40], [0u8; 40]);
        super::fill(&mut a).unwrap();
        super::fill(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
