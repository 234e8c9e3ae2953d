//! The connection's frame receiver over a real socket, fed arbitrary bytes
//! split into arbitrary reads (see `multiprocess::__fuzz::frame_stream`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multiprocess::__fuzz::frame_stream(data);
});
