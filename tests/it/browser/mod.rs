//! Browser tests: real headless Chromium driven over WebDriver (`chromedriver` on a loopback
//! port, `fantoccini` as the client) against the real release binary, as a merchant would use it.
//!
//! `Browser` owns one chromedriver process (and through it one Chromium), killed on drop, and
//! offers what the tests need in a person's terms: a field by its label, a button by its text,
//! the flash message, and `screenshot(name)`, which saves every page at 1280 px and 390 px under
//! `target/screenshots/`. A missing Chromium or chromedriver fails the test with the fix (tests/run
//! installs both), as a missing smtp-sink does: a skipped browser test would look like a pass.

mod catalog;
mod connect;
mod editor;
mod events;
mod flow;
mod log;
mod merchant;
mod oauth;
mod smoke;
mod templates;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::cli::mmc_with;
use crate::sink::free_port;

/// The two widths every page is looked at: a laptop and a phone (an iPhone 12-15's 390×844).
pub const WIDE: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

/// How long a page may take to show what a step waits for before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

const CHROMIUM: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];
const CHROMEDRIVER: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

fn installed(candidates: &[&str], package: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{} is not installed (Debian's {package} package): run tests/run, which installs \
                 it, or `apt-get install chromium chromium-driver`",
                candidates[0]
            )
        })
}

/// `<target>/`, found from the test executable (`<target>/debug/deps/it-…`), whatever
/// CARGO_TARGET_DIR says.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.ancestors()
        .nth(3)
        .expect("the test executable is under <target>/debug/deps")
        .to_path_buf()
}

pub fn screenshots_dir() -> PathBuf {
    target_dir().join("screenshots")
}

/// A `chromedriver` on a free loopback port, in its own process group so that dropping it ends
/// the Chromium it started as well, even when the test panicked before closing the session.
struct Chromedriver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Chromedriver {
    fn start(dir: &Path) -> Chromedriver {
        use std::os::unix::process::CommandExt;
        let binary = installed(CHROMEDRIVER, "chromium-driver");
        let port = free_port();
        let log = dir.join("chromedriver.log");
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("chromedriver.stderr")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut driver = Chromedriver { child, port, log };
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("chromedriver exited with {status}:\n{}", driver.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port} within {PATIENCE:?}:\n{}",
                driver.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        driver
    }

    /// The end of chromedriver's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: kill(2) with a process group id we created for our own child.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// chromedriver's `POST /session/{id}/se/log`: the browser console since the last call. It is
/// how a page's CSP violations and script errors reach the test.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (hyper::Method, Option<String>) {
        (hyper::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// chromedriver's `POST /session/{id}/goog/cdp/execute`: one Chrome DevTools command, for what
/// WebDriver has no word for (the colour scheme a page is shown in).
#[derive(Debug)]
struct Cdp(serde_json::Value);

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (hyper::Method, Option<String>) {
        (hyper::Method::POST, Some(self.0.to_string()))
    }
}

/// One headless Chromium session, reused for a whole test.
pub struct Browser {
    pub client: Client,
    /// Where relative paths go, e.g. `http://127.0.0.1:PORT`.
    pub base: String,
    // Dropped after `client`: the driver takes the browser with it.
    driver: Chromedriver,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(base: &str) -> Browser {
        installed(CHROMIUM, "chromium");
        let profile = tempfile::tempdir().unwrap();
        let driver = Chromedriver::start(profile.path());
        let user_data = profile.path().join("chromium");
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": installed(CHROMIUM, "chromium"),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    // Without these Chromium keeps calling hosts a closed network refuses.
                    "--disable-quic",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                    "--disable-sync",
                    // /dev/shm is small in containers; Chromium crashes tabs when it fills.
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    // Headless Chromium's screen is its first window, and a window is never
                    // made larger than the screen: start taller than WIDE, so that `resize`
                    // can add the window's own bars on top of WIDE's viewport.
                    format!("--window-size={},{}", WIDE.0, WIDE.1 + 400),
                    format!("--user-data-dir={}", user_data.display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start Chromium: {e}\n{}",
                    driver.log_tail()
                )
            });
        let browser = Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            driver,
            _profile: profile,
        };
        browser.resize(WIDE).await;
        browser
    }

    /// Ends the session and the browser; call it at the end of a passing test (a failing one
    /// leaves it to `Drop`, which kills the driver's process group).
    pub async fn close(self) {
        let Browser { client, driver, .. } = self;
        client.close().await.expect("close the WebDriver session");
        drop(driver);
    }

    /// Panics with `what`, the error, the page's address and chromedriver's log.
    async fn fail(&self, what: &str, error: impl std::fmt::Display) -> ! {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        panic!(
            "{what}\n  ({error}, on {url})\n--- the end of chromedriver's log ---\n{}",
            self.driver.log_tail()
        )
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            path.to_owned()
        }
    }

    /// Opens `path` (from `/`, relative to `base`; or a full URL).
    pub async fn open(&self, path: &str) {
        let url = self.url(path);
        if let Err(e) = self.client.goto(&url).await {
            self.fail(&format!("cannot open {url}"), e).await;
        }
    }

    /// The path (and query) of the page shown now.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Waits until the page shows an element `locator` finds.
    pub async fn wait_for(&self, locator: Locator<'_>) -> Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(locator)
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let text = self.text().await;
                self.fail(
                    &format!("no {locator:?} within {PATIENCE:?}; the page says:\n{text}\n"),
                    e,
                )
                .await
            }
        }
    }

    /// Waits until the page's path is `path` (the query ignored).
    pub async fn wait_for_path(&self, path: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = self.client.current_url().await.unwrap();
            if now.path() == path {
                return;
            }
            if Instant::now() > deadline {
                let text = self.text().await;
                self.fail(
                    &format!(
                        "still on {} instead of {path}; the page says:\n{text}\n",
                        now.path()
                    ),
                    "timed out",
                )
                .await;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The visible text of the whole page.
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the page's visible text contains `expected`, and returns that text.
    pub async fn wait_for_text(&self, expected: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.text().await;
            if text.contains(expected) {
                return text;
            }
            if Instant::now() > deadline {
                self.fail(
                    &format!("the page never said {expected:?}; it says:\n{text}\n"),
                    "timed out",
                )
                .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The form control a person would call `label`: the one a `<label>` with exactly that text
    /// points to or holds, else one whose label starts with it (e.g. "Password (at least 12
    /// characters)"), else the one named `label`.
    pub async fn field(&self, label: &str) -> Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(field) = self.find_field(label).await {
                return field;
            }
            if Instant::now() > deadline {
                let text = self.text().await;
                self.fail(
                    &format!("no field labelled or named {label:?}; the page says:\n{text}\n"),
                    "timed out",
                )
                .await;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `field` without waiting: `None` when the page has no such field.
    pub async fn find_field(&self, label: &str) -> Option<Element> {
        let text = xpath_literal(label);
        // A required field's label ends in " *".
        let exact =
            format!("//label[normalize-space()={text} or normalize-space()=concat({text}, ' *')]");
        let prefix = format!("//label[starts-with(normalize-space(), {text})]");
        for xpath in [exact, prefix] {
            let Ok(label_element) = self.client.find(Locator::XPath(&xpath)).await else {
                continue;
            };
            if let Some(id) = label_element.attr("for").await.ok().flatten() {
                if let Ok(field) = self.client.find(Locator::Id(&id)).await {
                    return Some(field);
                }
            }
            if let Ok(field) = label_element
                .find(Locator::XPath(".//input|.//select|.//textarea"))
                .await
            {
                return Some(field);
            }
        }
        let by_name = format!("[name={}]", css_string(label));
        self.client.find(Locator::Css(&by_name)).await.ok()
    }

    /// The message beside the field `label`, which must be marked faulty (`aria-invalid`), as
    /// a screen reader finds it (`aria-describedby`).
    pub async fn field_error(&self, label: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let field = loop {
            let field = self.field(label).await;
            // The answer to a submit may still be on its way.
            if field.attr("aria-invalid").await.ok().flatten().as_deref() == Some("true") {
                break field;
            }
            if Instant::now() > deadline {
                let text = self.text().await;
                self.fail(
                    &format!("the field {label:?} is not marked faulty; the page says:\n{text}\n"),
                    "no aria-invalid",
                )
                .await;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let Some(described) = field.attr("aria-describedby").await.unwrap() else {
            self.fail(
                &format!("the faulty field {label:?} has no message"),
                "no aria-describedby",
            )
            .await
        };
        let mut said = Vec::new();
        for id in described.split_whitespace() {
            let element = self.client.find(Locator::Id(id)).await.unwrap();
            said.push(element.text().await.unwrap());
        }
        said.join(" ")
    }

    /// Types `value` into the field `label` (replacing what it held), or picks the option
    /// showing `value` in a select, or ticks/unticks a checkbox for "on"/"off".
    pub async fn fill(&self, label: &str, value: &str) {
        let field = self.field(label).await;
        let tag = field.tag_name().await.unwrap();
        let kind = field.attr("type").await.unwrap().unwrap_or_default();
        let result = if tag == "select" {
            match field.select_by_label(value).await {
                Ok(()) => Ok(()),
                Err(_) => field.select_by_value(value).await,
            }
        } else if kind == "checkbox" || kind == "radio" {
            let want = value == "on";
            if field.is_selected().await.unwrap() != want {
                field.click().await
            } else {
                Ok(())
            }
        } else {
            match field.clear().await {
                Ok(()) => field.send_keys(value).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = result {
            self.fail(&format!("cannot fill {label:?} with {value:?}"), e)
                .await;
        }
    }

    /// Fills each `(label, value)` in order.
    pub async fn fill_all(&self, fields: &[(&str, &str)]) {
        for (label, value) in fields {
            self.fill(label, value).await;
        }
    }

    /// The value a field holds now.
    pub async fn value(&self, label: &str) -> String {
        let field = self.field(label).await;
        field.prop("value").await.unwrap().unwrap_or_default()
    }

    /// Clicks the button (or submit input) that says `text`, waiting for it to appear.
    pub async fn click_button(&self, text: &str) {
        let text = xpath_literal(text);
        let xpath = format!(
            "//button[normalize-space()={text}] | //input[(@type='submit' or @type='button') \
             and @value={text}] | //*[@role='button' and normalize-space()={text}]"
        );
        let button = self.wait_for(Locator::XPath(&xpath)).await;
        if let Err(e) = button.click().await {
            self.fail(&format!("cannot click the button {text}"), e)
                .await;
        }
    }

    /// Follows the link that says `text` (exactly, else the first whose text contains it).
    pub async fn click_link(&self, text: &str) {
        let literal = xpath_literal(text);
        let exact = format!("//a[normalize-space()={literal}]");
        let partial = format!("//a[contains(normalize-space(), {literal})]");
        let deadline = Instant::now() + PATIENCE;
        let link = loop {
            if let Ok(link) = self.client.find(Locator::XPath(&exact)).await {
                break link;
            }
            if let Ok(link) = self.client.find(Locator::XPath(&partial)).await {
                break link;
            }
            if Instant::now() > deadline {
                let text = self.text().await;
                self.fail(
                    &format!("no link says {literal}; the page says:\n{text}\n"),
                    "timed out",
                )
                .await;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        if let Err(e) = link.click().await {
            self.fail(&format!("cannot follow the link {text:?}"), e)
                .await;
        }
    }

    /// Presses Tab and returns what has the keyboard focus now, as a person would name it: its
    /// label, text, `aria-label` or else its name.
    pub async fn tab(&self) -> String {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let tab = char::from(fantoccini::key::Key::Tab);
        let press = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: tab })
            .then(KeyAction::Up { value: tab });
        if let Err(e) = self.client.perform_actions(press).await {
            self.fail("cannot press Tab", e).await;
        }
        let focused = self
            .client
            .execute(
                "const e = document.activeElement; \
                 return (e.labels && e.labels.length ? e.labels[0].innerText : '') \
                   || e.innerText || e.getAttribute('aria-label') || e.name || e.tagName",
                vec![],
            )
            .await
            .unwrap();
        // A required field's label ends in " *".
        let name = focused.as_str().unwrap_or_default();
        name.trim().trim_end_matches('*').trim_end().to_owned()
    }

    /// The flash message the page shows after an action (a `role=status` or `role=alert`
    /// region), waiting for one to appear.
    pub async fn flash(&self) -> String {
        let element = self
            .wait_for(Locator::Css("[role=status], [role=alert]"))
            .await;
        element.text().await.unwrap()
    }

    /// What the browser console said since the last call: CSP violations, script errors, failed
    /// loads. Only messages at SEVERE level.
    pub async fn console_errors(&self) -> Vec<String> {
        let log = match self.client.issue_cmd(BrowserLog).await {
            Ok(log) => log,
            Err(e) => self.fail("cannot read the browser console", e).await,
        };
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .filter_map(|entry| entry["message"].as_str().map(str::to_owned))
            .collect()
    }

    /// Sizes the viewport (not the window) to `width`×`height` CSS pixels.
    pub async fn resize(&self, (width, height): (u32, u32)) {
        // WebDriver sizes the window, which even headless is taller than its viewport; measure
        // the difference and ask again. Checked, since a screenshot at the wrong width would
        // look fine and prove nothing.
        let mut window = (width, height);
        for _ in 0..4 {
            self.client
                .set_window_size(window.0, window.1)
                .await
                .unwrap();
            let inner = self.settled_viewport().await;
            if inner == (width, height) {
                return;
            }
            window = (
                (window.0 + width).saturating_sub(inner.0),
                (window.1 + height).saturating_sub(inner.1),
            );
        }
        let inner = self.viewport().await;
        assert_eq!(
            inner,
            (width, height),
            "the viewport is {inner:?} after asking for {width}×{height}"
        );
    }

    /// The viewport once a resize has taken effect: on a busy machine the page can report
    /// its old size for a moment after WebDriver answers.
    async fn settled_viewport(&self) -> (u32, u32) {
        let mut last = self.viewport().await;
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let now = self.viewport().await;
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    async fn viewport(&self) -> (u32, u32) {
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await
            .unwrap();
        let px = |v: &serde_json::Value| v.as_u64().unwrap_or(0) as u32;
        (px(&inner[0]), px(&inner[1]))
    }

    /// Saves the page as `target/screenshots/NAME-1280.png` and `NAME-390.png`, each the
    /// page's full height, and `NAME-1280-dark.png` in the dark colour scheme; returns what a
    /// person would call broken at either width: a page that scrolls sideways. Leaves the
    /// window at 1280 px, light.
    pub async fn screenshot(&self, name: &str) -> Vec<String> {
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let mut problems = Vec::new();
        for (width, height) in [WIDE, PHONE] {
            self.resize((width, height)).await;
            let sizes = self
                .client
                .execute(
                    "const d = document.documentElement; \
                     return [d.scrollWidth, Math.max(d.scrollHeight, document.body ? \
                     document.body.scrollHeight : 0)]",
                    vec![],
                )
                .await
                .unwrap();
            let scroll_width = sizes[0].as_u64().unwrap_or(0);
            let full = sizes[1].as_u64().unwrap_or(0) as u32;
            if scroll_width > u64::from(width) {
                problems.push(format!(
                    "{name} at {width} px scrolls sideways: the page is {scroll_width} px wide"
                ));
            }
            // The whole page in one picture: make the viewport as tall as the page.
            self.resize((width, full.clamp(height, 8000))).await;
            let png = match self.client.screenshot().await {
                Ok(png) => png,
                Err(e) => self.fail(&format!("cannot screenshot {name}"), e).await,
            };
            std::fs::write(dir.join(format!("{name}-{width}.png")), png).unwrap();
            if width == WIDE.0 {
                self.color_scheme("dark").await;
                let png = match self.client.screenshot().await {
                    Ok(png) => png,
                    Err(e) => self.fail(&format!("cannot screenshot {name}"), e).await,
                };
                self.color_scheme("light").await;
                std::fs::write(dir.join(format!("{name}-{width}-dark.png")), png).unwrap();
            }
        }
        self.resize(WIDE).await;
        problems
    }

    /// Shows the page as under `prefers-color-scheme: SCHEME`.
    async fn color_scheme(&self, scheme: &str) {
        let command = Cdp(serde_json::json!({
            "cmd": "Emulation.setEmulatedMedia",
            "params": { "features": [{ "name": "prefers-color-scheme", "value": scheme }] },
        }));
        if let Err(e) = self.client.issue_cmd(command).await {
            self.fail(&format!("cannot switch to the {scheme} colour scheme"), e)
                .await;
        }
    }
}

/// `s` as an XPath 1.0 string literal (which has no escapes: quotes are joined with concat).
fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

/// `s` as a CSS string literal.
fn css_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The real release binary serving on a loopback port, its log kept for failure messages and
/// read for the one-time setup link. Killed on drop.
pub struct Served {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// Starts `serve` on a free loopback port in `dir` (its database there) with `env` set, and
    /// waits until it listens. A real port rather than 0, so the webhook URLs the pages show
    /// (derived from `server.listen`) are the ones to post to, as for a merchant running it locally.
    pub fn start(dir: &Path, env: &[(&str, String)]) -> Served {
        let binary = crate::support::release_binary();
        let listen = format!("127.0.0.1:{}", free_port());
        let mut child = mmc_with(&binary, dir, &["serve", "--listen", &listen])
            .env("MMC_LOG__FORMAT", "json")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let kept = log.clone();
        // Reads stderr to the end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) {
                    let fields = &entry["fields"];
                    let serving = fields["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("serving"));
                    if let (true, Some(listen)) = (serving, fields["listen"].as_str()) {
                        let _ = addr_tx.send(listen.to_owned());
                    }
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = addr_rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            panic!(
                "serve did not say where it listens within {PATIENCE:?}:\n{}",
                log.lock().unwrap().join("\n")
            )
        });
        Served { child, addr, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's log so far, one JSON object a line.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The one-time `/setup?token=…` path `serve` logs when no user exists.
    pub fn setup_path(&self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found = self.log.lock().unwrap().iter().find_map(|line| {
                let start = line.find("/setup?token=")?;
                let rest = &line[start..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '"' || c == '\\')
                    .unwrap_or(rest.len());
                Some(rest[..end].to_owned())
            });
            if let Some(path) = found {
                return path;
            }
            assert!(
                Instant::now() < deadline,
                "serve logged no /setup?token= link:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
