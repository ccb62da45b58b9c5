//! `mailmycustomer user add|list|remove|passwd`: the people who may sign in to the web UI.
//!
//! A password comes from `--password-file`, from a prompt that does not echo when standard
//! input is a terminal, or else from the first line of standard input (for scripts). It never
//! comes from an argument, which `ps` and shell history would keep.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::config::Config;
use crate::manage::users;

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a person who may sign in to the web UI.
    Add {
        /// Their email address, which they sign in with.
        email: String,
        /// Read the password from the first line of this file instead of asking for it.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// List the people who may sign in, with how many sessions each has open.
    List,
    /// Remove a person; they are signed out everywhere at once.
    Remove { email: String },
    /// Give a person a new password; their open sessions end.
    Passwd {
        email: String,
        /// Read the new password from the first line of this file instead of asking for it.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

pub fn run(config: &Config, action: UserAction) -> anyhow::Result<ExitCode> {
    let app = super::app(config)?;
    match action {
        UserAction::Add {
            email,
            password_file,
        } => {
            // Checked before asking, so a typo does not cost typing a password twice.
            let email = users::normalise_email(&email)?;
            let password = read_password(password_file.as_deref())?;
            let user = super::runtime()?.block_on(users::add(&app, &email, &password))?;
            println!(
                "added {}; they can sign in at {}/login",
                user.email,
                config.base_url()
            );
        }
        UserAction::List => {
            let all = super::runtime()?.block_on(users::list(&app))?;
            if all.is_empty() {
                println!(
                    "no users; add one with `mailmycustomer user add EMAIL`, or open the setup \
                     link `serve` logs"
                );
            }
            for account in all {
                println!(
                    "{}  added {}  sessions={}",
                    super::printable(&account.user.email),
                    when(account.user.created_at),
                    account.sessions
                );
            }
        }
        UserAction::Remove { email } => {
            let removed = super::runtime()?.block_on(users::remove(&app, &email))?;
            println!(
                "removed {}; {} session(s) ended",
                removed.user.email, removed.sessions
            );
        }
        UserAction::Passwd {
            email,
            password_file,
        } => {
            let email = users::normalise_email(&email)?;
            let password = read_password(password_file.as_deref())?;
            let ended =
                super::runtime()?.block_on(users::set_password(&app, &email, &password, None))?;
            println!("password changed for {email}; {ended} session(s) ended");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn when(ts: i64) -> String {
    jiff::Timestamp::from_second(ts)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| ts.to_string())
}

/// The password from a file, a prompt or standard input, checked against the rules before any
/// hashing. Only the line end is taken off: spaces can be part of a password.
fn read_password(file: Option<&Path>) -> anyhow::Result<String> {
    let password = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the password file {}", path.display()))?;
            first_line(&text).to_owned()
        }
        None if std::io::stdin().is_terminal() => {
            let password = rpassword::prompt_password("Password: ")?;
            users::check_new_password(&password)?;
            let again = rpassword::prompt_password("Password again: ")?;
            if again != password {
                bail!("the two passwords differ; nothing was changed");
            }
            password
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            first_line(&line).to_owned()
        }
    };
    users::check_new_password(&password)?;
    Ok(password)
}

fn first_line(text: &str) -> &str {
    let line = text.split('\n').next().unwrap_or("");
    line.strip_suffix('\r').unwrap_or(line)
}
