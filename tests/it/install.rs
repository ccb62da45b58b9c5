//! `install.sh`, run for real under `--prefix`: it stages the binary, a config the binary
//! accepts, the state directory and the hardened unit; a second run keeps the operator's config;
//! `--dry-run` touches nothing; every flag is documented and an unknown one is refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_mailmycustomer");
const DB_LINE: &str = r#"path = "/var/lib/mailmycustomer/mailmycustomer.db""#;

/// The lines the unit must carry: who it runs as, how it stops, and the sandbox.
const UNIT_LINES: &[&str] = &[
    "User=mailmycustomer",
    "Group=mailmycustomer",
    "ExecStart=/usr/local/bin/mailmycustomer serve --config /etc/mailmycustomer/config.toml",
    "Restart=on-failure",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=35",
    "StateDirectory=mailmycustomer",
    "ReadWritePaths=/var/lib/mailmycustomer",
    "UMask=0077",
    "NoNewPrivileges=true",
    "CapabilityBoundingSet=",
    "ProtectSystem=strict",
    "ProtectHome=true",
    "PrivateTmp=true",
    "PrivateDevices=true",
    "ProtectKernelTunables=true",
    "ProtectKernelModules=true",
    "ProtectKernelLogs=true",
    "ProtectControlGroups=true",
    "ProtectClock=true",
    "ProtectHostname=true",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=true",
    "RestrictRealtime=true",
    "RestrictSUIDSGID=true",
    "LockPersonality=true",
    "MemoryDenyWriteExecute=true",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A command without the caller's `MMC_` variables, which would change what the binary (and
/// the installer's `config check`) sees.
fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MMC_") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `./install.sh` itself, so its shebang and executable bit are tested too, without a
/// terminal.
fn install_sh(args: &[&str]) -> Output {
    command(&repo().join("install.sh"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run install.sh")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Installs into `prefix` with the test build as the binary.
fn install_into(prefix: &Path) -> Output {
    let out = install_sh(&[
        "--prefix",
        prefix.to_str().expect("UTF-8 temp path"),
        "--binary",
        BIN,
        "--non-interactive",
    ]);
    assert_ok(&out, "install.sh --prefix");
    out
}

struct Staged {
    binary: PathBuf,
    config: PathBuf,
    state: PathBuf,
    unit: PathBuf,
}

fn staged(prefix: &Path) -> Staged {
    Staged {
        binary: prefix.join("usr/local/bin/mailmycustomer"),
        config: prefix.join("etc/mailmycustomer/config.toml"),
        state: prefix.join("var/lib/mailmycustomer"),
        unit: prefix.join("etc/systemd/system/mailmycustomer.service"),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn version_of(binary: &Path) -> String {
    let out = command(binary)
        .arg("--version")
        .output()
        .expect("run installed binary");
    assert_ok(&out, "installed binary --version");
    text(&out.stdout)
}

fn asset_unit() -> String {
    fs::read_to_string(repo().join("assets/mailmycustomer.service")).expect("read unit asset")
}

#[test]
fn prefix_install_stages_binary_config_state_dir_and_hardened_unit() {
    let prefix = tempfile::tempdir().unwrap();
    install_into(prefix.path());
    let s = staged(prefix.path());

    assert_eq!(mode(&s.binary), 0o755);
    assert!(version_of(&s.binary).starts_with("mailmycustomer "));

    let config = fs::read_to_string(&s.config).expect("read staged config");
    assert_eq!(
        mode(&s.config),
        0o640,
        "the config may hold secrets later: not world-readable"
    );
    assert!(
        config.lines().any(|l| l == DB_LINE),
        "database.path not set:\n{config}"
    );
    assert!(
        !config.contains("./mailmycustomer.db"),
        "default database path left in:\n{config}"
    );
    let check = command(&s.binary)
        .args(["config", "check", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    assert_ok(&check, "config check on the staged config");
    // The path must land under [database], which only the binary's own view of the file proves.
    let dump = command(&s.binary)
        .args(["config", "dump", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    assert_ok(&dump, "config dump on the staged config");
    let dump = text(&dump.stdout);
    let database = dump
        .split("[database]")
        .nth(1)
        .expect("[database] in the dump");
    assert!(database.lines().any(|l| l == DB_LINE), "dump:\n{dump}");

    assert!(s.state.is_dir());
    assert_eq!(mode(&s.state), 0o750);

    let unit = fs::read_to_string(&s.unit).expect("read staged unit");
    assert_eq!(unit, asset_unit(), "the unit is installed as shipped");
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for want in UNIT_LINES {
        assert!(lines.contains(want), "unit lacks `{want}`:\n{unit}");
    }
    // systemd must not kill the server while it drains: TimeoutStopSec above the drain time.
    let drain: u64 = config
        .lines()
        .find_map(|l| l.strip_prefix("shutdown_timeout_secs = "))
        .expect("shutdown_timeout_secs in the config")
        .parse()
        .unwrap();
    assert!(
        drain < 35,
        "TimeoutStopSec=35 does not cover a {drain} s drain"
    );
}

#[test]
fn second_run_keeps_the_edited_config_and_replaces_binary_and_unit() {
    let prefix = tempfile::tempdir().unwrap();
    install_into(prefix.path());
    let s = staged(prefix.path());

    let mut edited = fs::read_to_string(&s.config).unwrap();
    edited.push_str("# edited by the operator\n");
    fs::write(&s.config, &edited).unwrap();
    fs::write(&s.unit, "stale unit\n").unwrap();
    fs::write(&s.binary, "#!/bin/sh\necho stale binary\n").unwrap();

    let out = install_into(prefix.path());
    assert!(
        text(&out.stdout).contains("Keeping the existing config"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(fs::read_to_string(&s.config).unwrap(), edited);
    assert_eq!(fs::read_to_string(&s.unit).unwrap(), asset_unit());
    assert!(version_of(&s.binary).starts_with("mailmycustomer "));
    let leftovers: Vec<_> = fs::read_dir(s.config.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["config.toml"],
        "no temporary files left beside the config"
    );
}

fn is_root() -> bool {
    text(&Command::new("id").arg("-u").output().unwrap().stdout).trim() == "0"
}

/// `install_sh` with `SUDO_USER` set to `user`, or unset for None.
fn install_sh_as(sudo_user: Option<&str>, args: &[&str], extra_env: &[(&str, &Path)]) -> Output {
    let mut cmd = command(&repo().join("install.sh"));
    match sudo_user {
        Some(user) => cmd.env("SUDO_USER", user),
        None => cmd.env_remove("SUDO_USER"),
    };
    cmd.envs(extra_env.iter().copied())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run install.sh")
}

#[test]
fn dry_run_changes_nothing_and_prints_the_plan() {
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path().to_str().unwrap();
    // As root the build is planned as the sudo user; otherwise as the caller.
    let out = install_sh_as(Some("nobody"), &["--dry-run", "--prefix", p], &[]);
    assert_ok(&out, "install.sh --dry-run");

    let entries: Vec<_> = fs::read_dir(prefix.path()).unwrap().collect();
    assert!(entries.is_empty(), "dry run wrote {entries:?}");
    let stdout = text(&out.stdout);
    let build = if is_root() {
        "would run as nobody: cargo build --release --locked"
    } else {
        "would run: cargo build --release --locked"
    };
    for planned in [
        build.to_string(),
        format!("{p}/usr/local/bin/mailmycustomer"),
        format!("{p}/etc/mailmycustomer/config.toml"),
        format!("{p}/var/lib/mailmycustomer"),
        format!("{p}/etc/systemd/system/mailmycustomer.service"),
    ] {
        assert!(
            stdout.contains(&planned),
            "plan lacks `{planned}`:\n{stdout}"
        );
    }
    assert!(stdout.contains("nothing was changed"), "{stdout}");
}

/// A `cargo` first on PATH that records who ran it and with what, then "builds" by copying the
/// test binary into `--target-dir`. Returns (dir holding bin/cargo, record dir, target dir), all
/// usable by an unprivileged user.
fn fake_cargo(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let bin = root.join("bin");
    let record = root.join("record");
    let target = root.join("target");
    for dir in [&bin, &record, &target] {
        fs::create_dir(dir).unwrap();
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&record, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o777)).unwrap();
    let cargo = bin.join("cargo");
    fs::write(
        &cargo,
        format!(
            "#!/bin/sh\nset -eu\nid -u > {record}/uid\nprintf '%s\\n' \"$@\" > {record}/args\n\
             dir=$CARGO_TARGET_DIR\n\
             while [ $# -gt 0 ]; do case $1 in --target-dir) dir=$2; shift ;; esac; shift; done\n\
             mkdir -p \"$dir/release\" && cp {bin} \"$dir/release/mailmycustomer\"\n",
            record = record.display(),
            bin = BIN,
        ),
    )
    .unwrap();
    fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).unwrap();
    (bin, record, target)
}

fn path_with(dir: &Path) -> PathBuf {
    PathBuf::from(format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    ))
}

/// Issue 9.3: `sudo ./install.sh` builds as the user who ran sudo: build scripts and procedural
/// macros never run as root. (Not root: the caller builds, as before.)
#[test]
fn the_build_runs_as_the_sudo_user_never_as_root() {
    let work = tempfile::tempdir().unwrap();
    let (bin, record, target) = fake_cargo(work.path());
    let prefix = work.path().join("prefix");
    let out = install_sh_as(
        Some("nobody"),
        &["--prefix", prefix.to_str().unwrap(), "--non-interactive"],
        &[
            ("PATH", path_with(&bin).as_path()),
            ("CARGO_TARGET_DIR", target.as_path()),
        ],
    );
    assert_ok(&out, "install.sh building with cargo");
    let uid = fs::read_to_string(record.join("uid")).expect("cargo was run");
    let expected = if is_root() {
        text(
            &Command::new("id")
                .args(["-u", "nobody"])
                .output()
                .unwrap()
                .stdout,
        )
    } else {
        text(&Command::new("id").arg("-u").output().unwrap().stdout)
    };
    assert_eq!(uid.trim(), expected.trim());
    assert_ne!(uid.trim(), "0", "cargo ran as root");
    let args = fs::read_to_string(record.join("args")).unwrap();
    assert!(args.starts_with("build\n--release\n--locked\n"), "{args}");
    assert!(version_of(&staged(&prefix).binary).starts_with("mailmycustomer "));
}

/// Issue 9.3: root without sudo has nobody to build as, so it asks for --binary and builds
/// nothing. Meaningful only as root (tests/run runs as root in CI).
#[test]
fn root_without_sudo_needs_a_binary_and_builds_nothing() {
    if !is_root() {
        eprintln!("skipped: only root can be refused");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (bin, record, target) = fake_cargo(work.path());
    let prefix = work.path().join("prefix");
    for args in [&["--dry-run"][..], &["--non-interactive"][..]] {
        for sudo_user in [None, Some("root")] {
            let mut all = vec!["--prefix", prefix.to_str().unwrap()];
            all.extend_from_slice(args);
            let out = install_sh_as(
                sudo_user,
                &all,
                &[
                    ("PATH", path_with(&bin).as_path()),
                    ("CARGO_TARGET_DIR", target.as_path()),
                ],
            );
            assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
            let stderr = text(&out.stderr);
            assert!(
                stderr.contains("refusing to run cargo build as root")
                    && stderr.contains("--binary"),
                "{stderr}"
            );
            assert!(!record.join("uid").exists(), "cargo ran");
            assert!(!prefix.exists(), "files were staged");
        }
    }
}

#[test]
fn help_lists_every_flag_and_unknown_flags_exit_2() {
    let help = install_sh(&["--help"]);
    assert_ok(&help, "install.sh --help");
    let usage = text(&help.stdout);
    for flag in [
        "--help",
        "--non-interactive",
        "--prefix DIR",
        "--dry-run",
        "--binary PATH",
        "--start",
    ] {
        assert!(
            usage.contains(flag),
            "--help does not mention {flag}:\n{usage}"
        );
    }

    let bad = install_sh(&["--frobnicate"]);
    assert_eq!(bad.status.code(), Some(2), "stderr:\n{}", text(&bad.stderr));
    let stderr = text(&bad.stderr);
    assert!(stderr.contains("unknown option: --frobnicate"), "{stderr}");
    assert!(stderr.contains("Usage:"), "{stderr}");
}

/// A stand-in for systemctl in `prefix`: `start` runs the staged binary's `serve` in the
/// background (pid file, log), `stop` sends SIGTERM and waits for it to end, `is-active` asks
/// whether it lives; `enable` and `daemon-reload` do nothing. No systemd here, but a real server.
fn stand_in_systemctl(prefix: &Path) -> PathBuf {
    let script = prefix.join("systemctl");
    let p = prefix.to_str().unwrap();
    fs::write(
        &script,
        format!(
            r#"#!/bin/sh
set -eu
run='{p}/run'
pidfile=$run/mailmycustomer.pid
mkdir -p "$run"
echo "$*" >>"$run/calls"
alive() {{
    [ -f "$pidfile" ] || return 1
    state=$(cut -d' ' -f3 "/proc/$(cat "$pidfile")/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}}
case $1 in
    is-active) alive ;;
    start)
        '{p}/usr/local/bin/mailmycustomer' serve --config '{p}/etc/mailmycustomer/config.toml' \
            </dev/null >>"$run/service.log" 2>&1 &
        echo $! >"$pidfile"
        ;;
    stop)
        if alive; then
            kill -TERM "$(cat "$pidfile")"
            while alive; do sleep 0.1; done
        fi
        rm -f "$pidfile"
        ;;
    restart) "$0" stop "$2"; "$0" start "$2" ;;
    enable | daemon-reload) ;;
    *) exit 2 ;;
esac
"#
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Stops the stand-in's server when a test ends, passed or not.
struct Service(PathBuf);

impl Service {
    fn ctl(&self, verb: &str) -> bool {
        command(&self.0)
            .args([verb, "mailmycustomer"])
            .status()
            .unwrap()
            .success()
    }

    /// The server's process id, from the stand-in's pid file.
    fn pid(&self) -> String {
        let file = self.0.parent().unwrap().join("run/mailmycustomer.pid");
        fs::read_to_string(file).unwrap().trim().to_owned()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.ctl("stop");
    }
}

/// A "newer" build for the upgrade: a script answering `--version` with its own version and
/// handing everything else to the test binary, marking the processes it starts (in their
/// environment) so a test sees which build serves, and writing each command it is given (its
/// arguments, one line each) to `calls` beside itself. With `broken`, that command (`serve`,
/// `migrate`) exits 1 at once.
fn newer_build(dir: &Path, broken: Option<&str>) -> PathBuf {
    let path = dir.join("mailmycustomer");
    let calls = dir.join("calls");
    let broken = broken.map_or_else(String::new, |command| {
        format!(
            r#"for arg in "$@"; do
    if [ "$arg" = {command} ]; then echo "this build's {command} is broken on purpose" >&2; exit 1; fi
done"#
        )
    });
    fs::write(
        &path,
        format!(
            "#!/bin/sh\ncase ${{1:-}} in --version) echo 'mailmycustomer 99.0.0-test'; exit 0 ;; esac\n\
             echo \"$*\" >> '{}'\n{broken}\nMAILMYCUSTOMER_TEST_BUILD=newer exec '{BIN}' \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The commands a `newer_build` in `dir` was given, in order: the first word of each that is
/// neither an option nor `--config`'s value (config, backup, migrate, serve, healthcheck…).
fn newer_build_commands(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            while let Some(word) = words.next() {
                if word == "--config" {
                    words.next();
                } else if !word.starts_with('-') {
                    return Some(word.to_owned());
                }
            }
            None
        })
        .collect()
}

/// Installs the test binary into `prefix` as the "older" version, points its config at a
/// database in the staged state directory and a free loopback port, adds an integration and
/// starts it with the stand-in. Returns the service and the staged config.
fn older_install_serving(prefix: &Path) -> (Service, PathBuf) {
    let systemctl = stand_in_systemctl(prefix);
    install_into(prefix);
    let s = staged(prefix);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = s.state.join("mailmycustomer.db");
    let config = fs::read_to_string(&s.config)
        .unwrap()
        .replace(DB_LINE, &format!("path = \"{}\"", db.display()))
        .replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
    fs::write(&s.config, config).unwrap();
    let cfg = s.config.to_str().unwrap();
    let out = command(&s.binary)
        .args(["--config", cfg, "integration", "add", "--name", "shop"])
        .args(["--webhook-secret", "whsec_upgrade_test_secret_0123456789"])
        .output()
        .unwrap();
    assert_ok(&out, "integration add");
    let service = Service(systemctl);
    assert!(service.ctl("start"));
    assert!(healthy(&s), "the older build serves before the upgrade");
    (service, s.config)
}

fn healthy(s: &Staged) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let out = command(&s.binary)
            .args(["healthcheck", "--config", s.config.to_str().unwrap()])
            .args(["--timeout", "2"])
            .output()
            .unwrap();
        if out.status.success() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    false
}

fn upgrade(prefix: &Path, binary: &Path) -> Output {
    let systemctl = prefix.join("systemctl");
    install_sh_as(
        None,
        &[
            "--prefix",
            prefix.to_str().unwrap(),
            "--binary",
            binary.to_str().unwrap(),
            "--non-interactive",
        ],
        &[
            ("MAILMYCUSTOMER_SYSTEMCTL", systemctl.as_path()),
            ("MAILMYCUSTOMER_HEALTH_WAIT_SECS", Path::new("30")),
        ],
    )
}

fn serving_build(pid: &str) -> Option<String> {
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"MAILMYCUSTOMER_TEST_BUILD="))
        .map(text)
}

fn integrations(s: &Staged) -> String {
    let out = command(&s.binary)
        .args([
            "--config",
            s.config.to_str().unwrap(),
            "integration",
            "list",
        ])
        .output()
        .unwrap();
    assert_ok(&out, "integration list");
    text(&out.stdout)
}

fn upgrade_backups(s: &Staged) -> Vec<PathBuf> {
    fs::read_dir(s.state.join("backups"))
        .map(|dir| {
            dir.map(|e| e.unwrap().path())
                .filter(|p| {
                    let name = p.file_name().unwrap().to_str().unwrap();
                    name.starts_with("before-upgrade-") && name.ends_with("Z.db.zst")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Issue 14, "Upgrades": a running older install is stopped, its database backed up, the
/// binary replaced (the old one kept aside), and the newer build serves the same data.
#[test]
fn an_upgrade_in_place_stops_backs_up_and_serves_the_newer_build_with_the_data() {
    let prefix = tempfile::tempdir().unwrap();
    let builds = tempfile::tempdir().unwrap();
    let (service, _) = older_install_serving(prefix.path());
    let s = staged(prefix.path());
    let old_pid = service.pid();
    assert_eq!(serving_build(&old_pid), None);

    let out = upgrade(prefix.path(), &newer_build(builds.path(), None));
    assert_ok(&out, "the upgrade");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("serves on the new binary"), "{stdout}");

    assert_eq!(version_of(&s.binary).trim(), "mailmycustomer 99.0.0-test");
    let previous = prefix.path().join("usr/local/bin/mailmycustomer.previous");
    assert_eq!(version_of(&previous), version_of(Path::new(BIN)));
    assert!(healthy(&s));
    let pid = service.pid();
    assert_ne!(pid, old_pid, "restarted");
    assert_eq!(serving_build(&pid).as_deref(), Some("newer"));
    assert!(integrations(&s).contains("shop"), "the data is kept");
    // The new binary migrates the backed-up database before the service starts it, so a long
    // schema upgrade is not taken for a start that failed its health wait.
    let commands = newer_build_commands(builds.path());
    let first = |command: &str| commands.iter().position(|c| c == command);
    let (backup, migrate, serve) = (first("backup"), first("migrate"), first("serve"));
    assert!(
        backup.is_some() && backup < migrate && migrate < serve,
        "{commands:?}"
    );

    let backups = upgrade_backups(&s);
    assert_eq!(backups.len(), 1, "{stdout}");
    assert!(stdout.contains(backups[0].to_str().unwrap()), "{stdout}");
    // A whole backup of that database, made with the service stopped (the stand-in's calls).
    let check = command(&s.binary)
        .args(["--config", s.config.to_str().unwrap(), "restore"])
        .arg(&backups[0])
        .output()
        .unwrap();
    assert!(
        text(&check.stderr).contains("already serving"),
        "restore refuses while it serves, after reading the backup: {}",
        text(&check.stderr)
    );
    let calls = fs::read_to_string(prefix.path().join("run/calls")).unwrap();
    let order: Vec<&str> = calls
        .lines()
        .filter(|l| l.starts_with("stop") || l.starts_with("start"))
        .collect();
    assert_eq!(
        order,
        [
            "start mailmycustomer",
            "stop mailmycustomer",
            "start mailmycustomer"
        ]
    );
}

/// An upgrade to a build that never answers /healthz is rolled back: the old binary is put
/// back and serves the data again, the run fails saying so and where the backup is.
#[test]
fn an_upgrade_to_a_build_that_fails_health_rolls_back_to_the_old_one() {
    let prefix = tempfile::tempdir().unwrap();
    let builds = tempfile::tempdir().unwrap();
    let (service, _) = older_install_serving(prefix.path());
    let s = staged(prefix.path());

    let out = upgrade(prefix.path(), &newer_build(builds.path(), Some("serve")));
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("rolled back") && stderr.contains("the previous binary serves again"),
        "{stderr}"
    );
    let backups = upgrade_backups(&s);
    assert_eq!(backups.len(), 1, "{stderr}");
    assert!(stderr.contains(backups[0].to_str().unwrap()), "{stderr}");
    assert!(fs::metadata(&backups[0]).unwrap().len() > 0);

    assert_eq!(
        version_of(&s.binary),
        version_of(Path::new(BIN)),
        "the old binary is back"
    );
    assert!(healthy(&s));
    assert_eq!(serving_build(&service.pid()), None, "the old build serves");
    assert!(integrations(&s).contains("shop"));
    let log = fs::read_to_string(prefix.path().join("run/service.log")).unwrap();
    assert!(
        log.contains("broken on purpose"),
        "the new build really ran: {log}"
    );
}

/// A schema upgrade that fails stops the upgrade before the binary is swapped: the previous
/// binary serves the data again, the run fails saying so and where the backup is.
#[test]
fn an_upgrade_whose_schema_upgrade_fails_keeps_the_previous_binary_serving() {
    let prefix = tempfile::tempdir().unwrap();
    let builds = tempfile::tempdir().unwrap();
    let (service, _) = older_install_serving(prefix.path());
    let s = staged(prefix.path());
    let old_pid = service.pid();

    let out = upgrade(prefix.path(), &newer_build(builds.path(), Some("migrate")));
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("migrate is broken on purpose")
            && stderr.contains("the schema upgrade failed")
            && stderr.contains("started again on the previous binary"),
        "{stderr}"
    );
    let backups = upgrade_backups(&s);
    assert_eq!(backups.len(), 1, "{stderr}");
    assert!(stderr.contains(backups[0].to_str().unwrap()), "{stderr}");

    assert_eq!(version_of(&s.binary), version_of(Path::new(BIN)));
    assert!(
        !prefix
            .path()
            .join("usr/local/bin/mailmycustomer.new")
            .exists(),
        "the new binary is not left staged"
    );
    assert!(healthy(&s));
    let pid = service.pid();
    assert_ne!(pid, old_pid, "stopped for the backup, started again");
    assert_eq!(serving_build(&pid), None, "the previous build serves");
    assert!(integrations(&s).contains("shop"));
    assert_eq!(
        newer_build_commands(builds.path())
            .iter()
            .filter(|c| *c == "serve")
            .count(),
        0,
        "the new build never served"
    );
}
