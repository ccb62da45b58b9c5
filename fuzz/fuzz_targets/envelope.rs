//! Fuzzes `mailmycustomer::fuzzing::envelope`, where the input format and the invariants are described.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailmycustomer::fuzzing::envelope(data));
