//! Fuzzes `mailmycustomer::fuzzing::classify_mutated` over the event fixtures in
//! `tests/fixtures/`, where the input format and the invariants are described.
#![no_main]

use std::sync::LazyLock;

use serde_json::Value;

static FIXTURES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    mailmycustomer::fuzzing::event_fixtures(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"),
    )
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailmycustomer::fuzzing::classify_mutated(
    &FIXTURES, data
));
