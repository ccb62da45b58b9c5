use std::process::ExitCode;

// The processor survives a bug hit by one event by catching its task's panic and marking that
// event failed (pipeline); a build that aborts on panic would instead kill the server, and again
// at each restart on the same event. So no such build of the program can exist.
#[cfg(not(panic = "unwind"))]
compile_error!("mailmycustomer must be built with panic = \"unwind\" (see [profile.release])");

fn main() -> ExitCode {
    limit_malloc_arenas();
    match mailmycustomer::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that allocates an arena of its own (up to eight per core), and each
/// arena keeps what was freed in it. The server's threads (tokio's workers and blocking pool,
/// the writer, the checkpointer) then hold far more memory than they use: two arenas keep the
/// peak RSS down at no measurable cost (BENCHMARKS.md). Set before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tunable; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
