//! See `wxoa_fuzz::decrypt` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxoa_fuzz::decrypt(data));
