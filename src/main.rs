use std::process::ExitCode;

fn main() -> ExitCode {
    match mailmycustomer::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
