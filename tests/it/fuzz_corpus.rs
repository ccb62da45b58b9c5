//! Replays the committed fuzzing corpus (`fuzz/corpus/<target>/`, issue 9) through the same
//! entry points the fuzzers call (`mailmycustomer::fuzzing`), on stable Rust: every input the
//! fuzzers kept, including the ones that once made them fail, must still pass.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use mailmycustomer::fuzzing;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Runs `target` on every input of its corpus and of its regressions (inputs that once failed,
/// kept apart so that minimizing the corpus cannot drop them), naming the file that fails.
fn replay(target: &str, run: impl Fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = files(&fuzz.join("corpus").join(target));
    // A corpus that went missing would make this test pass without testing anything.
    assert!(inputs.len() >= 10, "{target}: only {} inputs", inputs.len());
    let regressions = fuzz.join("regressions").join(target);
    if regressions.exists() {
        inputs.extend(files(&regressions));
    }
    for file in inputs {
        let data = std::fs::read(&file).unwrap();
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            panic!(
                "{} fails (reproduce: cd fuzz && cargo +nightly fuzz run {target} {0})",
                file.display()
            );
        }
    }
}

#[test]
fn signature_corpus() {
    replay("signature", fuzzing::signature);
}

#[test]
fn envelope_corpus() {
    replay("envelope", fuzzing::envelope);
}

#[test]
fn classify_json_corpus() {
    replay("classify_json", fuzzing::classify_json);
}

#[test]
fn classify_mutated_corpus() {
    let fixtures =
        fuzzing::event_fixtures(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
    assert!(fixtures.len() >= 25, "{} event fixtures", fixtures.len());
    replay("classify_mutated", |data| {
        fuzzing::classify_mutated(&fixtures, data)
    });
}

#[test]
fn render_corpus() {
    replay("render", fuzzing::render);
}
