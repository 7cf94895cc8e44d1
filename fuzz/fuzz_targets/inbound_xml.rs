//! See `wxoa_fuzz::inbound_xml` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxoa_fuzz::inbound_xml(data));
