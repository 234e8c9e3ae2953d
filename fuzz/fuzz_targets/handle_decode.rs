//! The handle codec: arbitrary bytes with an arbitrary side table, decoded
//! as several representative types (see `multiprocess::__fuzz::handle_decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multiprocess::__fuzz::handle_decode(data);
});
