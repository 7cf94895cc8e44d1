//! See `wxoa_fuzz::config_load` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxoa_fuzz::config_load(data));
