//! See `wxoa_fuzz::envelope_decode` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxoa_fuzz::envelope_decode(data));
