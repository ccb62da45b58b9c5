#!/bin/sh
# Installs MailMyCustomer as a hardened systemd service: the binary, a system user, a config
# file that is never overwritten, the state directory and the unit. Safe to run again to
# upgrade: the binary and the unit are replaced, the config is kept; a running service is
# stopped, its database backed up, restarted on the new binary and checked, and put back on the
# old binary if it does not answer /healthz.
set -eu

NAME=mailmycustomer
BIN_PATH=/usr/local/bin/$NAME
CONFIG_DIR=/etc/$NAME
CONFIG_PATH=$CONFIG_DIR/config.toml
STATE_DIR=/var/lib/$NAME
DB_PATH=$STATE_DIR/$NAME.db
UNIT_DIR=/etc/systemd/system
UNIT_PATH=$UNIT_DIR/$NAME.service

usage() {
    cat <<'EOF'
Usage: ./install.sh [OPTIONS]

Installs MailMyCustomer as a systemd service:
  /usr/local/bin/mailmycustomer                the binary (replaced on every run)
  /etc/mailmycustomer/config.toml              the config from `mailmycustomer init-config`,
                                               with database.path under /var/lib (never overwritten)
  /var/lib/mailmycustomer                      the state directory holding the SQLite database
  /etc/systemd/system/mailmycustomer.service   the hardened unit (replaced on every run)
and the system user and group mailmycustomer. It enables and starts nothing unless --start is
given. Running it again upgrades the binary and the unit and keeps the config.

Upgrading (a binary is already installed): a running service is stopped first and the database
is backed up by the new binary (which refuses a database newer than itself, so a downgrade
stops here) to /var/lib/mailmycustomer/backups/before-upgrade-<UTC time>.db.zst. The old binary
is kept as /usr/local/bin/mailmycustomer.previous, and the new binary upgrades the schema
(`migrate`, unhurried: a release that rebuilds a table takes minutes on a big log). The service
is started again (or with --start) and must answer /healthz on server.listen within 30 s; if it
does not, the old binary is put back and started, and install.sh exits 1 saying where the
backup is.

Options:
  --binary PATH      Install this binary instead of building one from this checkout with
                     `cargo build --release --locked`. Run as root (sudo), install.sh builds
                     as the user who ran sudo, never as root; as root without sudo it needs
                     --binary.
  --prefix DIR       Stage every file under DIR (DIR/usr/local/bin/mailmycustomer, ...) for
                     packaging or inspection. Creates no user and runs no systemctl; the
                     files still name the real paths. Needs no root.
  --dry-run          Print every action and change nothing. Needs no root.
  --non-interactive  Never ask for confirmation (for scripts and configuration management).
                     Without it, a real install asks first when run from a terminal.
  --start            Then enable the service and (re)start it. Not with --prefix.
  -h, --help         Print this help.

Environment (not MMC_*: those are the binary's settings, and it refuses unknown ones):
  MAILMYCUSTOMER_SYSTEMCTL  The service manager to run instead of systemctl (same verbs:
                            is-active, stop, start, restart, enable, daemon-reload). When set,
                            it is used under --prefix too, for the staged system.
  MAILMYCUSTOMER_HEALTH_WAIT_SECS
                            How long a (re)started service has to answer /healthz (default 30).

Installing to the real system (no --prefix, no --dry-run) needs root. Build as your user
first so that root needs no Rust toolchain:
  cargo build --release --locked
  sudo ./install.sh --binary target/release/mailmycustomer
EOF
}

# Prints a message to stderr and exits with the given code.
die() {
    code=$1
    shift
    printf 'install.sh: %s\n' "$*" >&2
    exit "$code"
}

usage_error() {
    printf 'install.sh: %s\n\n' "$*" >&2
    usage >&2
    exit 2
}

say() {
    printf '==> %s\n' "$*"
}

warn() {
    printf 'install.sh: %s\n' "$*" >&2
}

# Prints a command the way a shell would read it back, single-quoting words that need it.
show() {
    out=
    for word in "$@"; do
        case $word in
            '' | *[!A-Za-z0-9_./:=@%+,-]*)
                word="'$(printf '%s' "$word" | sed "s/'/'\\\\''/g")'"
                ;;
        esac
        out="$out $word"
    done
    printf '%s\n' "${out# }"
}

# Runs a command that changes the system; under --dry-run only prints it.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '    would run: %s\n' "$(show "$@")"
    else
        "$@"
    fi
}

user_exists() {
    id -u "$1" >/dev/null 2>&1
}

home_of() {
    if command -v getent >/dev/null 2>&1; then
        getent passwd "$1" | cut -d: -f6
    else
        grep "^$1:" /etc/passwd | cut -d: -f6
    fi
}

# Runs a command as $BUILDER (with that user's home, and its ~/.cargo/bin first on PATH) or,
# when BUILDER is empty, as the caller; under --dry-run only prints it.
run_as_builder() {
    if [ -z "$BUILDER" ]; then
        run "$@"
    elif [ "$DRY_RUN" = 1 ]; then
        printf '    would run as %s: %s\n' "$BUILDER" "$(show "$@")"
    else
        command -v runuser >/dev/null 2>&1 ||
            die 1 "runuser not found, so the build cannot run as $BUILDER: build as $BUILDER with \`cargo build --release --locked\` and pass --binary"
        builder_home=$(home_of "$BUILDER")
        runuser -u "$BUILDER" -- env -u CARGO_HOME -u RUSTUP_HOME HOME="$builder_home" \
            PATH="$builder_home/.cargo/bin:$PATH" "$@"
    fi
}

group_exists() {
    if command -v getent >/dev/null 2>&1; then
        getent group "$1" >/dev/null 2>&1
    else
        grep -q "^$1:" /etc/group
    fi
}

# --- Arguments -------------------------------------------------------------------------------

BINARY=
PREFIX=
PREFIX_SET=0
DRY_RUN=0
NON_INTERACTIVE=0
START=0

while [ $# -gt 0 ]; do
    case $1 in
        -h | --help)
            usage
            exit 0
            ;;
        --binary)
            [ $# -ge 2 ] || usage_error "--binary needs a PATH"
            BINARY=$2
            shift
            ;;
        --binary=*)
            BINARY=${1#--binary=}
            ;;
        --prefix)
            [ $# -ge 2 ] || usage_error "--prefix needs a DIR"
            PREFIX=$2
            PREFIX_SET=1
            shift
            ;;
        --prefix=*)
            PREFIX=${1#--prefix=}
            PREFIX_SET=1
            ;;
        --dry-run)
            DRY_RUN=1
            ;;
        --non-interactive)
            NON_INTERACTIVE=1
            ;;
        --start)
            START=1
            ;;
        *)
            usage_error "unknown option: $1"
            ;;
    esac
    shift
done

if [ "$PREFIX_SET" = 1 ]; then
    [ -n "$PREFIX" ] || usage_error "--prefix needs a non-empty DIR"
    case $PREFIX in
        /*) ;;
        *) PREFIX=$(pwd)/$PREFIX ;;
    esac
    while :; do
        case $PREFIX in
            */) PREFIX=${PREFIX%/} ;;
            *) break ;;
        esac
    done
    [ -n "$PREFIX" ] || usage_error "--prefix / is the real system: leave --prefix out instead"
    [ "$START" = 0 ] || usage_error "--start cannot be combined with --prefix (a staged install is not a running system)"
fi

SRC_DIR=$(cd "$(dirname "$0")" && pwd)
UNIT_SRC=$SRC_DIR/assets/$NAME.service
[ -f "$UNIT_SRC" ] || die 1 "$UNIT_SRC not found: run install.sh from a complete MailMyCustomer checkout"

if [ -n "$BINARY" ]; then
    [ -f "$BINARY" ] || die 1 "--binary $BINARY: no such file"
    [ -x "$BINARY" ] || die 1 "--binary $BINARY: not executable (chmod +x it, or pass the right file)"
    case $BINARY in
        /*) ;;
        *) BINARY=$(pwd)/$BINARY ;;
    esac
    version=$("$BINARY" --version 2>/dev/null) || die 1 "--binary $BINARY: \`$BINARY --version\` failed; is it a $NAME build for this machine?"
    case $version in
        "$NAME "*) ;;
        *) die 1 "--binary $BINARY is not $NAME (its --version says: $version)" ;;
    esac
fi

REAL_SYSTEM=0
[ "$PREFIX_SET" = 1 ] || REAL_SYSTEM=1
IS_ROOT=0
[ "$(id -u)" -ne 0 ] || IS_ROOT=1

# systemd runs when this directory exists (see sd_booted(3)); containers often lack it.
SYSTEMD_RUNNING=0
[ ! -d /run/systemd/system ] || SYSTEMD_RUNNING=1

# The service manager: systemctl on a real system with systemd, or whatever MAILMYCUSTOMER_SYSTEMCTL
# names (with systemctl's verbs), also for a staged system under --prefix.
SYSTEMCTL=${MAILMYCUSTOMER_SYSTEMCTL:-systemctl}
MANAGED=0
if [ -n "${MAILMYCUSTOMER_SYSTEMCTL:-}" ]; then
    MANAGED=1
elif [ "$REAL_SYSTEM" = 1 ] && [ "$SYSTEMD_RUNNING" = 1 ] && command -v systemctl >/dev/null 2>&1; then
    MANAGED=1
fi
HEALTH_WAIT=${MAILMYCUSTOMER_HEALTH_WAIT_SECS:-30}
case $HEALTH_WAIT in
    '' | *[!0-9]*) die 2 "MAILMYCUSTOMER_HEALTH_WAIT_SECS=$HEALTH_WAIT: give a whole number of seconds" ;;
esac

if [ "$START" = 1 ] && [ "$MANAGED" = 0 ]; then
    die 1 "--start: systemd is not running on this machine, so the service cannot be started; leave --start out and start $BIN_PATH serve with your service manager"
fi

if [ "$REAL_SYSTEM" = 1 ] && [ "$DRY_RUN" = 0 ] && [ "$IS_ROOT" = 0 ]; then
    die 1 "installing to the real system needs root: run it with sudo, or use --dry-run to see what it would do, or --prefix DIR to stage the files under DIR"
fi

if [ "$DRY_RUN" = 1 ]; then
    say "Dry run: nothing will be changed"
fi
if [ "$REAL_SYSTEM" = 1 ]; then
    say "Installing $NAME to this system"
else
    say "Staging $NAME under $PREFIX"
fi

if [ "$REAL_SYSTEM" = 1 ] && [ "$DRY_RUN" = 0 ] && [ "$NON_INTERACTIVE" = 0 ] && [ -t 0 ]; then
    printf 'This writes %s, %s, %s and %s,\nand creates the system user %s if missing. Continue? [y/N] ' \
        "$BIN_PATH" "$CONFIG_DIR" "$STATE_DIR" "$UNIT_PATH" "$NAME"
    read -r answer || answer=
    case $answer in
        y | Y | yes | YES | Yes) ;;
        *) die 1 "aborted; nothing was changed" ;;
    esac
fi

TMP_FILE=
cleanup() {
    if [ -n "$TMP_FILE" ]; then
        rm -f "$TMP_FILE"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
umask 022

# --- Upgrade helpers -------------------------------------------------------------------------

# Runs a command as the service user on the real system (so files it makes beside the database,
# such as SQLite's -shm, stay the service's own), as the caller otherwise; from /, the working
# directory systemd gives the service, so a relative database.path means the same.
as_service() {
    if [ "$REAL_SYSTEM" = 1 ] && [ "$IS_ROOT" = 1 ] && command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u "$NAME" -- "$@")
    else
        (cd / && "$@")
    fi
}

# The database.path the installed config gives (as the new binary reads it), resolved from /.
database_path() {
    db=$("$PREFIX$BIN_PATH.new" config dump --config "$PREFIX$CONFIG_PATH" 2>/dev/null |
        sed -n '/^\[database\]/,/^\[/ s/^path = "\(.*\)"$/\1/p') || db=
    case $db in
        '') ;;
        /*) printf '%s\n' "$db" ;;
        *) printf '/%s\n' "${db#./}" ;;
    esac
}

# Before the binary is replaced: stop the service if it runs, and back the database up with the
# new binary (it reads every older schema; its check refuses a database newer than itself).
upgrade_prepare() {
    if [ "$MANAGED" = 1 ]; then
        if [ "$DRY_RUN" = 1 ]; then
            printf '    would run: %s (if it is running)\n' "$(show "$SYSTEMCTL" stop "$NAME")"
        elif "$SYSTEMCTL" is-active --quiet "$NAME"; then
            WAS_RUNNING=1
            say "Stopping $NAME (running the previous binary) for the upgrade"
            "$SYSTEMCTL" stop "$NAME" || die 1 "\`$SYSTEMCTL stop $NAME\` failed; nothing was changed but $PREFIX$BIN_PATH.new"
        fi
    fi
    backup_dir=$PREFIX$STATE_DIR/backups
    BACKUP_FILE=$backup_dir/before-upgrade-$(date -u +%Y%m%dT%H%M%SZ).db.zst
    if [ "$DRY_RUN" = 1 ]; then
        printf '    would run: %s, then %s (if the database exists)\n' \
            "$(show "$PREFIX$BIN_PATH.new" --config "$PREFIX$CONFIG_PATH" backup --compress "$BACKUP_FILE")" \
            "$(show "$PREFIX$BIN_PATH.new" --config "$PREFIX$CONFIG_PATH" migrate)"
        return 0
    fi
    db=
    [ ! -f "$PREFIX$CONFIG_PATH" ] || db=$(database_path)
    if [ -z "$db" ] || [ ! -f "$db" ]; then
        say "No database to back up${db:+ at $db}"
        BACKUP_FILE=
        return 0
    fi
    say "Backing up $db to $BACKUP_FILE"
    install -d -m 0700 "$backup_dir"
    if [ "$REAL_SYSTEM" = 1 ] && [ "$IS_ROOT" = 1 ]; then
        chown "$NAME:$NAME" "$backup_dir"
    fi
    as_service "$PREFIX$BIN_PATH.new" --config "$PREFIX$CONFIG_PATH" backup --compress "$BACKUP_FILE" ||
        abandon_upgrade "the backup before the upgrade failed (see above), so nothing was upgraded"
    # The schema is upgraded here, not by the service's first start: on a big log it can take
    # minutes (a release that rebuilds a table), which the health wait would take for a failure.
    say "Upgrading the database's schema with the new binary (on a big log this can take minutes)"
    as_service "$PREFIX$BIN_PATH.new" --config "$PREFIX$CONFIG_PATH" migrate ||
        abandon_upgrade "the schema upgrade failed (see above): each migration is one transaction, so the database is at the last one that completed; if the previous binary refuses it, restore $BACKUP_FILE"
}

# Before the binary is swapped: the new one goes, and the previous one serves again if it ran.
abandon_upgrade() {
    rm -f "$PREFIX$BIN_PATH.new"
    again=
    if [ "$WAS_RUNNING" = 1 ]; then
        again="; $NAME was started again on the previous binary"
        "$SYSTEMCTL" start "$NAME" || again="; \`$SYSTEMCTL start $NAME\` failed too: start it by hand"
    fi
    die 1 "$1$again"
}

# Waits up to HEALTH_WAIT seconds for the installed binary's server to answer /healthz; fails
# at once when the service is no longer active (the unit is Type=simple: active from its start
# until its process exits, so a binary that dies at start is not waited for).
wait_healthy() {
    deadline=$(($(date +%s) + HEALTH_WAIT))
    while :; do
        if "$PREFIX$BIN_PATH" healthcheck --config "$PREFIX$CONFIG_PATH" --timeout 2 >/dev/null 2>&1; then
            return 0
        fi
        "$SYSTEMCTL" is-active --quiet "$NAME" || return 1
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 1
    done
}

# The new binary did not come up: the previous one goes back and is started, and the run fails.
roll_back() {
    warn "$NAME did not answer /healthz on the new binary (it stopped, or $HEALTH_WAIT s passed); putting the previous one back"
    "$SYSTEMCTL" stop "$NAME" || warn "\`$SYSTEMCTL stop $NAME\` failed"
    mv -f "$PREFIX$BIN_PATH.previous" "$PREFIX$BIN_PATH"
    "$SYSTEMCTL" start "$NAME" || warn "\`$SYSTEMCTL start $NAME\` failed"
    if wait_healthy; then
        back="the previous binary serves again"
    else
        back="the previous binary does not answer /healthz either (the new one may have migrated the database): stop $NAME and restore the backup with \`$NAME --config $CONFIG_PATH restore FILE\`"
    fi
    where="no database was backed up (there was none)"
    [ -z "$BACKUP_FILE" ] || where="the database as it was before the upgrade is in $BACKUP_FILE"
    die 1 "upgrade rolled back: $back; $where. See the new binary's log (journalctl -u $NAME) for why it failed."
}

# --- Binary ----------------------------------------------------------------------------------

# A build runs code from every crate (build scripts, procedural macros), so it never runs as
# root: root builds as the user who ran sudo, or not at all.
if [ -z "$BINARY" ]; then
    TARGET_DIR=${CARGO_TARGET_DIR:-$SRC_DIR/target}
    BINARY=$TARGET_DIR/release/$NAME
    BUILDER=
    if [ "$IS_ROOT" = 1 ]; then
        case ${SUDO_USER:-root} in
            root) die 1 "refusing to run cargo build as root: build as an unprivileged user with \`cargo build --release --locked\` and pass --binary target/release/$NAME (or run install.sh with sudo from that user, which builds as them)" ;;
        esac
        user_exists "$SUDO_USER" || die 1 "SUDO_USER=$SUDO_USER is not a user on this machine: build with \`cargo build --release --locked\` and pass --binary"
        BUILDER=$SUDO_USER
        say "Building $NAME from $SRC_DIR as $BUILDER, not as root"
    else
        say "Building $NAME from $SRC_DIR"
        [ "$DRY_RUN" = 1 ] || command -v cargo >/dev/null 2>&1 || die 1 "cargo not found. Build with \`cargo build --release --locked\` and pass --binary target/release/$NAME (or install Rust from https://rustup.rs)"
    fi
    run_as_builder cargo build --release --locked --manifest-path "$SRC_DIR/Cargo.toml" \
        --target-dir "$TARGET_DIR" ||
        die 1 "cargo build${BUILDER:+ as $BUILDER} failed (see above): build with \`cargo build --release --locked\` and pass --binary target/release/$NAME"
    [ "$DRY_RUN" = 1 ] || [ -x "$BINARY" ] || die 1 "cargo build succeeded but $BINARY is missing; pass --binary PATH"
fi

say "Installing the binary to $PREFIX$BIN_PATH"
run install -d -m 0755 "$PREFIX${BIN_PATH%/*}"
# Copy next to the target and rename over it, so a running service keeps its old file and
# nobody ever executes a half-written one.
run install -m 0755 "$BINARY" "$PREFIX$BIN_PATH.new"

UPGRADE=0
WAS_RUNNING=0
BACKUP_FILE=
# A staged install without a service manager only stages files: nothing runs there to stop or
# back up (and its config names the real system's database, not a staged one).
if [ -e "$PREFIX$BIN_PATH" ] && { [ "$REAL_SYSTEM" = 1 ] || [ "$MANAGED" = 1 ]; }; then
    UPGRADE=1
fi
if [ "$UPGRADE" = 1 ]; then
    upgrade_prepare
    say "Keeping the previous binary as $PREFIX$BIN_PATH.previous"
    run cp -p "$PREFIX$BIN_PATH" "$PREFIX$BIN_PATH.previous"
fi
run mv -f "$PREFIX$BIN_PATH.new" "$PREFIX$BIN_PATH"

# --- User ------------------------------------------------------------------------------------

if [ "$REAL_SYSTEM" = 0 ]; then
    say "Skipping the system user: --prefix leaves the real system's users alone"
elif user_exists "$NAME"; then
    say "System user $NAME exists"
    group_exists "$NAME" ||
        die 1 "user $NAME exists but group $NAME does not; the unit runs as Group=$NAME: create it (groupadd --system $NAME) and run install.sh again"
else
    say "Creating the system user $NAME (home $STATE_DIR, no login shell)"
    nologin=/usr/sbin/nologin
    [ -x "$nologin" ] || nologin=/sbin/nologin
    [ -x "$nologin" ] || nologin=/bin/false
    if [ "$DRY_RUN" = 0 ]; then
        command -v useradd >/dev/null 2>&1 || die 1 "useradd not found: create a system user and group $NAME with home $STATE_DIR yourself, then run install.sh again"
    fi
    if group_exists "$NAME"; then
        group_flag="--gid $NAME"
    else
        group_flag=--user-group
    fi
    # Word splitting of group_flag into an option and its value is intended.
    # shellcheck disable=SC2086
    run useradd --system $group_flag --home-dir "$STATE_DIR" --no-create-home \
        --shell "$nologin" --comment "MailMyCustomer" "$NAME"
fi

# A real install runs as root and has just made sure the user exists (a dry run pretends
# both). A staged install sets owners only when root and the user happens to exist; otherwise
# its files keep the caller's ownership.
CAN_CHOWN=0
if [ "$REAL_SYSTEM" = 1 ]; then
    CAN_CHOWN=1
elif [ "$IS_ROOT" = 1 ] && user_exists "$NAME" && group_exists "$NAME"; then
    CAN_CHOWN=1
fi
if [ "$CAN_CHOWN" = 0 ]; then
    say "Not setting owners to $NAME (user missing or not root): files keep the caller's ownership"
fi

# --- Config ----------------------------------------------------------------------------------

say "Config directory $PREFIX$CONFIG_DIR"
run install -d -m 0750 "$PREFIX$CONFIG_DIR"
[ "$CAN_CHOWN" = 0 ] || run chown "root:$NAME" "$PREFIX$CONFIG_DIR"

if [ -e "$PREFIX$CONFIG_PATH" ]; then
    say "Keeping the existing config $PREFIX$CONFIG_PATH"
elif [ "$DRY_RUN" = 1 ]; then
    say "Writing $PREFIX$CONFIG_PATH"
    printf '    would run: %s > %s\n' "$(show "$PREFIX$BIN_PATH" init-config)" "$(show "$PREFIX$CONFIG_PATH")"
    printf '    would set: database.path = "%s" in it\n' "$DB_PATH"
    run chmod 0640 "$PREFIX$CONFIG_PATH"
    [ "$CAN_CHOWN" = 0 ] || run chown "root:$NAME" "$PREFIX$CONFIG_PATH"
else
    say "Writing $PREFIX$CONFIG_PATH (database.path = \"$DB_PATH\")"
    # Written under a temporary name (mode 0600) and renamed once complete, so a failure
    # leaves no half config that a later run would keep.
    TMP_FILE=$(mktemp "$PREFIX$CONFIG_DIR/.config.toml.XXXXXX")
    "$PREFIX$BIN_PATH" init-config |
        sed "/^\[database\]/,/^\[/ s|^path = .*|path = \"$DB_PATH\"|" >"$TMP_FILE"
    grep -qx "path = \"$DB_PATH\"" "$TMP_FILE" ||
        die 1 "could not set database.path in the example config; set it by hand in $PREFIX$CONFIG_PATH"
    "$PREFIX$BIN_PATH" config check --config "$TMP_FILE" >/dev/null ||
        die 1 "the generated config does not pass \`$NAME config check\`; is an MMC_ environment variable set to a bad value?"
    chmod 0640 "$TMP_FILE"
    [ "$CAN_CHOWN" = 0 ] || chown "root:$NAME" "$TMP_FILE"
    mv "$TMP_FILE" "$PREFIX$CONFIG_PATH"
    TMP_FILE=
fi

# --- State directory -------------------------------------------------------------------------

say "State directory $PREFIX$STATE_DIR"
run install -d -m 0750 "$PREFIX$STATE_DIR"
[ "$CAN_CHOWN" = 0 ] || run chown "$NAME:$NAME" "$PREFIX$STATE_DIR"

# --- systemd unit ----------------------------------------------------------------------------

say "Installing the systemd unit to $PREFIX$UNIT_PATH"
run install -d -m 0755 "$PREFIX$UNIT_DIR"
run install -m 0644 "$UNIT_SRC" "$PREFIX$UNIT_PATH.new"
run mv -f "$PREFIX$UNIT_PATH.new" "$PREFIX$UNIT_PATH"

if [ "$REAL_SYSTEM" = 1 ] && [ "$DRY_RUN" = 0 ] && command -v systemd-analyze >/dev/null 2>&1; then
    # A warning, not an error: verify also complains about unrelated units on some systems.
    systemd-analyze verify "$UNIT_PATH" ||
        printf 'install.sh: warning: systemd-analyze verify reported problems with %s (see above)\n' "$UNIT_PATH" >&2
fi

# --- systemctl -------------------------------------------------------------------------------

if [ "$REAL_SYSTEM" = 0 ] && [ "$MANAGED" = 0 ]; then
    if [ "$DRY_RUN" = 1 ]; then
        say "Dry run done: nothing was changed under $PREFIX"
    else
        say "Staged under $PREFIX; no user was created and systemd was not touched"
    fi
    exit 0
fi

if [ "$MANAGED" = 0 ] && ! command -v systemctl >/dev/null 2>&1; then
    say "systemctl not found: run '$BIN_PATH serve --config $CONFIG_PATH' as user $NAME with your service manager"
    exit 0
fi

if [ "$MANAGED" = 1 ]; then
    say "Reloading the service manager"
    run "$SYSTEMCTL" daemon-reload
else
    say "systemd is not running here (a container?): skipping systemctl daemon-reload"
fi

STARTED=0
if [ "$START" = 1 ]; then
    say "Enabling and (re)starting $NAME"
    run "$SYSTEMCTL" enable "$NAME"
    run "$SYSTEMCTL" restart "$NAME"
    STARTED=1
elif [ "$WAS_RUNNING" = 1 ]; then
    say "Starting $NAME again, on the new binary"
    run "$SYSTEMCTL" start "$NAME"
    STARTED=1
elif [ "$UPGRADE" = 1 ] && [ "$DRY_RUN" = 1 ] && [ "$MANAGED" = 1 ]; then
    printf '    would run: %s (if it was running), then wait up to %s s for /healthz\n' \
        "$(show "$SYSTEMCTL" start "$NAME")" "$HEALTH_WAIT"
fi

if [ "$UPGRADE" = 1 ] && [ "$STARTED" = 1 ] && [ "$DRY_RUN" = 0 ]; then
    say "Waiting up to $HEALTH_WAIT s for $NAME to answer /healthz"
    wait_healthy || roll_back
    say "$NAME serves on the new binary; the previous one is kept as $PREFIX$BIN_PATH.previous"
    [ -z "$BACKUP_FILE" ] || say "The database as it was before the upgrade: $BACKUP_FILE"
fi

if [ "$DRY_RUN" = 1 ]; then
    say "Dry run done: nothing was changed"
fi

cat <<EOF

Next steps:
  1. Edit $CONFIG_PATH: set server.public_url to the HTTPS address Stripe
     reaches this server at (and server.listen if the reverse proxy is on another host).
     Check it with: $NAME config check --config $CONFIG_PATH
  2. Add your Stripe account, as the service user so the database stays its own:
     sudo -u $NAME $NAME --config $CONFIG_PATH integration add --name shop --webhook-secret -
     (it reads the whsec_... secret from standard input and prints the webhook URL for Stripe)
  3. Start the service now and at boot: systemctl enable --now $NAME
  4. Watch it: journalctl -u $NAME -f    and check it: $NAME healthcheck
EOF
