//! Fuzzes `mailmycustomer::fuzzing::signature`, where the input format and the invariants are described.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailmycustomer::fuzzing::signature(data));
