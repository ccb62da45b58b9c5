//! The harness itself, on pages that need no account: Chromium starts, reaches the release
//! binary, reads pages, and screenshots land at both widths.

use fantoccini::Locator;

use super::{screenshots_dir, Browser, Served};

#[tokio::test(flavor = "multi_thread")]
async fn chromium_reads_the_health_check_and_is_sent_to_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = Served::start(dir.path(), &[]);
    let browser = Browser::start(&server.url("")).await;

    browser.open("/healthz").await;
    let text = browser.wait_for_text("schema_version").await;
    assert!(text.contains("\"status\":\"ok\""), "{text}");
    assert_eq!(browser.path().await, "/healthz");

    let page = format!(
        r#"<a href="{}">Go to a page that needs sign-in</a>"#,
        server.url("/no/such/page")
    );
    browser
        .open(&format!("data:text/html,{}", urlencode(&page)))
        .await;
    // Signed out, every page (even one that does not exist) leads to sign-in.
    browser.click_link("page that needs sign-in").await;
    browser.wait_for_path("/login").await;
    browser.wait_for(Locator::Css("body")).await;
    let console = browser.console_errors().await;
    assert!(
        console.is_empty(),
        "the sign-in page logged errors: {console:?}"
    );
    let problems = browser.screenshot("harness-sign-in").await;
    assert!(problems.is_empty(), "{problems:?}");
    for width in [1280, 390] {
        let png =
            std::fs::read(screenshots_dir().join(format!("harness-sign-in-{width}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // The PNG header's width (bytes 16..20): the viewport was really that wide.
        let png_width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        assert_eq!(png_width, width);
        let png_height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert!(png_height >= 844, "{png_height}");
    }
    let light = std::fs::read(screenshots_dir().join("harness-sign-in-1280.png")).unwrap();
    let dark = std::fs::read(screenshots_dir().join("harness-sign-in-1280-dark.png")).unwrap();
    assert_ne!(light, dark, "the dark colour scheme changed nothing");
    browser.close().await;
}

/// The helpers a flow is written with, on a form of known shape: a field found by its label (for=
/// and nesting, an exact label before one it starts), by its name, a select, a checkbox, a button
/// by its text, the flash region, and Tab. The form GETs `/healthz`, so the query string shows what
/// the browser really submitted.
#[tokio::test(flavor = "multi_thread")]
async fn fields_are_found_by_label_or_name_and_buttons_by_text() {
    let dir = tempfile::tempdir().unwrap();
    let server = Served::start(dir.path(), &[]);
    let browser = Browser::start(&server.url("")).await;
    let page = format!(
        r#"<!doctype html><title>form</title>
        <p role="status">Saved: it's "done"</p>
        <form method="get" action="{}">
          <label for="e">Email address</label><input id="e" name="email" value="old">
          <label>Password again<input type="password" name="pw2"></label>
          <label for="p">Password</label><input type="password" id="p" name="pw">
          <label>Your name (optional)<input name="who"></label>
          <input name="plain">
          <label for="s">Security</label>
          <select id="s" name="security"><option value="none">None</option>
            <option value="starttls">STARTTLS</option></select>
          <label><input type="checkbox" name="remember" value="yes"> Remember me</label>
          <button type="button">Not this one</button><button>Sign in</button>
        </form>"#,
        server.url("/healthz")
    );
    browser
        .open(&format!("data:text/html,{}", urlencode(&page)))
        .await;
    assert_eq!(browser.flash().await, r#"Saved: it's "done""#);
    assert_eq!(browser.tab().await, "Email address");
    assert_eq!(browser.tab().await, "Password again");
    browser
        .fill_all(&[
            ("Email address", "merchant@rosen.example"),
            ("Password", "it's a \"secret\""),
            ("Your name", "Jenny"),
            ("plain", "by name"),
            ("Security", "STARTTLS"),
            ("remember", "on"),
        ])
        .await;
    assert_eq!(
        browser.value("Email address").await,
        "merchant@rosen.example"
    );
    browser.click_button("Sign in").await;
    browser.wait_for_path("/healthz").await;
    let query = browser.path().await;
    for expected in [
        "email=merchant%40rosen.example",
        "pw=it%27s+a+%22secret%22",
        "pw2=&",
        "who=Jenny",
        "plain=by+name",
        "security=starttls",
        "remember=yes",
    ] {
        assert!(query.contains(expected), "{expected} not in {query}");
    }
    assert!(server.log().contains("serving"), "{}", server.log());
    browser.close().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
