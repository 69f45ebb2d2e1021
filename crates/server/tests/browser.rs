//! The person's path in headless Chromium, driven over WebDriver (chromedriver + fantoccini):
//! sign in → open the project from the sidebar → Registrars → New Registrar → fill in → see the
//! URI → Save → listed; a bad domain shows its error next to the field; a Viewer sees no
//! New Registrar button; "Check connectivity" on a registrar shows the checklist. Needs Debian's `chromium` and `chromium-driver`.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Auth, TestServer};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use store::Role;

const FLAGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1280,900",
];

/// chromedriver on a free loopback port; killed on drop, even when the test fails.
struct Driver {
    child: Child,
    port: u16,
    profile: std::path::PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn find(paths: &[&str]) -> Option<String> {
    paths
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

async fn start_driver() -> Driver {
    let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]).expect(
        "chromedriver not found: install the Debian packages `chromium` and `chromium-driver`",
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start chromedriver");
    let d = Driver {
        child,
        port,
        profile: common::tempdir("chromium-profile"),
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on port {port} within 10 s");
}

async fn browser(d: &Driver) -> Client {
    let chromium = find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"])
        .expect("chromium not found: install the Debian package `chromium`");
    let mut args: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", d.profile.display()));
    let caps = json!({ "goog:chromeOptions": { "binary": chromium, "args": args } });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.port))
        .await
        .expect("cannot open a Chromium session through chromedriver")
}

const WAIT: Duration = Duration::from_secs(15);

/// With `SIPMETER_SCREENSHOTS=DIR`, saves a PNG of the current page (for reviewing the UI).
async fn shot(c: &Client, name: &str) {
    if let Ok(dir) = std::env::var("SIPMETER_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

async fn wait_css(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
}

async fn sign_in(c: &Client, base: &str, email: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    wait_css(c, "#email").await.send_keys(email).await.unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(common::PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(c, "#sidebar").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_adds_a_registrar_in_chromium() {
    let s = TestServer::start("browser").await;
    s.store
        .create_project(s.boot.org.id, "Staging PBX")
        .await
        .unwrap();
    s.add_user("viewer@example.com", Role::Viewer).await;
    // A real registrar on loopback UDP for "Check connectivity", with one static account.
    let reg = lab_registrar(&s).await;
    let driver = start_driver().await;
    let c = browser(&driver).await;
    let c2 = c.clone();
    let outcome = tokio::spawn(async move { person_path(&c2, &s).await }).await;
    // Close the browser session whatever happened, then report.
    let _ = c.close().await;
    drop(driver);
    let stats = reg.stop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
    // The check clicked in the browser: one REGISTER accepted, then its un-REGISTER.
    assert_eq!(stats.registered, 2, "{stats:?}");
}

/// Starts a built-in registrar with the static account `lab-1001` and saves it in the Demo
/// project as "Lab registrar" with that account (through the API, password encrypted).
async fn lab_registrar(s: &TestServer) -> agent::builtin::BuiltinRegistrar {
    use registrar::{AccountStatus, Accounts, AuthMode, RegistrarConfig};
    let accounts = Accounts(
        [(
            "lab-1001".to_owned(),
            ("lab-secret-1".to_owned(), AccountStatus::Enabled),
        )]
        .into_iter()
        .collect(),
    );
    let reg = agent::builtin::BuiltinRegistrar::start_udp(
        "127.0.0.1:0".parse().unwrap(),
        RegistrarConfig {
            domain: "127.0.0.1".into(),
            host: sip_msg::Host::parse("127.0.0.1").unwrap(),
            port: 0,
            transport: "UDP".into(),
            auth: AuthMode::Static(accounts),
            secret: b"browser-test".to_vec(),
            min_expires: 10,
            max_expires: 3600,
        },
    )
    .await
    .unwrap();
    let owner = common::sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let o = Auth::Cookie(&owner.cookie);
    let base = format!("/api/v1/projects/{}/registrars", s.boot.demo.id);
    let body = json!({ "name": "Lab registrar", "domain": "127.0.0.1",
                       "port": reg.addr().port(), "transport": "UDP" });
    let r = common::api(s.addr, "POST", &base, &o, Some(&body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.json()["data"]["id"].as_i64().unwrap();
    let a = common::api(
        s.addr,
        "POST",
        &format!("{base}/{rid}/accounts"),
        &o,
        Some(&json!({ "username": "lab-1001", "password": "lab-secret-1" })),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    reg
}

/// Demo → Registrars → Lab registrar → choose the account → Check connectivity → the
/// checklist with four ✓ and "registered".
async fn check_connectivity(c: &Client, s: &TestServer) {
    let base = format!("http://{}", s.addr);
    c.goto(&format!("{base}/projects/{}/registrars", s.boot.demo.slug))
        .await
        .unwrap();
    wait_css(c, "table#registrars").await;
    c.find(Locator::LinkText("Lab registrar"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(c, "#check-account")
        .await
        .select_by_label("lab-1001")
        .await
        .unwrap();
    c.find(Locator::Css("#check-connectivity"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let verdict = wait_css(c, "#check-verdict").await.text().await.unwrap();
    assert!(verdict.starts_with("✓ registered (200)"), "{verdict}");
    let steps = c
        .find(Locator::Css("#check-steps"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in ["dns", "transport", "register", "auth"] {
        assert!(steps.contains(name), "{steps}");
    }
    assert_eq!(steps.matches('✓').count(), 4, "{steps}");
    assert!(steps.contains(" ms"), "timings shown: {steps}");
    assert!(
        c.find(Locator::Css("#check-hint")).await.is_err(),
        "no hint when it works"
    );
    shot(c, "6-check-connectivity").await;
}

async fn person_path(c: &Client, s: &TestServer) {
    let c = c.clone();
    let base = format!("http://{}", s.addr);
    sign_in(&c, &base, common::OWNER_EMAIL).await;
    // Open the project from the sidebar.
    c.find(Locator::Css("#sidebar a[data-project=\"staging-pbx\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&c, "nav.project-nav").await;
    assert_eq!(
        c.find(Locator::Css(".project-name"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "Staging PBX"
    );
    // Registrars → New Registrar.
    c.find(Locator::LinkText("Registrars"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&c, "#new-registrar").await.click().await.unwrap();
    wait_css(&c, "#registrar-form").await;
    c.find(Locator::Css("#name"))
        .await
        .unwrap()
        .send_keys("Production Asterisk")
        .await
        .unwrap();
    c.find(Locator::Css("#domain"))
        .await
        .unwrap()
        .send_keys("pbx.corp.net")
        .await
        .unwrap();
    c.find(Locator::Css("#transport"))
        .await
        .unwrap()
        .select_by_value("TLS")
        .await
        .unwrap();
    // Port left blank: the live URI shows the TLS default port, and the TLS fields appear.
    shot(&c, "1-new-registrar").await;
    let uri = c
        .find(Locator::Css("#uri-preview"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(uri, "sip:pbx.corp.net:5061;transport=tls");
    assert!(
        c.find(Locator::Css("#tlsVerify"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
    let placeholder = c
        .find(Locator::Css("#port"))
        .await
        .unwrap()
        .attr("placeholder")
        .await
        .unwrap();
    assert_eq!(placeholder.as_deref(), Some("5061"));
    c.find(Locator::Css("#save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Listed, with the seed's URI.
    let table = wait_css(&c, "table#registrars").await;
    let text = table.text().await.unwrap();
    assert!(text.contains("Production Asterisk"), "{text}");
    assert!(
        text.contains("sip:pbx.corp.net:5061;transport=tls"),
        "{text}"
    );
    assert!(
        c.find(Locator::Css(".notice"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("saved")
    );
    shot(&c, "2-listed").await;

    // An invalid domain: its error next to the field, nothing saved, input kept.
    c.find(Locator::Css("#new-registrar"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&c, "#registrar-form").await;
    c.find(Locator::Css("#name"))
        .await
        .unwrap()
        .send_keys("Broken")
        .await
        .unwrap();
    c.find(Locator::Css("#domain"))
        .await
        .unwrap()
        .send_keys("pbx..corp.net")
        .await
        .unwrap();
    c.find(Locator::Css("#save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let err = wait_css(&c, "#domain-error").await.text().await.unwrap();
    assert_eq!(err, "pbx..corp.net is not a valid host name (empty label)");
    shot(&c, "3-field-error").await;
    let kept = c
        .find(Locator::Css("#name"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("Broken"));
    let p = s
        .store
        .project_by_slug(s.boot.org.id, "staging-pbx")
        .await
        .unwrap()
        .unwrap();
    let names: Vec<String> = s
        .store
        .registrars(p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["Production Asterisk"]);

    // SIP Accounts of the new registrar: paste CSV, save, listed with masked passwords.
    c.find(Locator::LinkText("SIP Accounts"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&c, "#csv")
        .await
        .send_keys("1001,secret-1\n1002,secret-2,pbx.corp.net\n")
        .await
        .unwrap();
    c.find(Locator::Css("#bulk-accounts button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let accounts = wait_css(&c, "table#accounts").await.text().await.unwrap();
    assert!(
        accounts.contains("1001") && accounts.contains("1002") && !accounts.contains("secret-1"),
        "{accounts}"
    );
    shot(&c, "4-accounts").await;
    c.find(Locator::LinkText("Members"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&c, "table#members").await;
    shot(&c, "5-members").await;

    check_connectivity(&c, s).await;

    // A Viewer sees the registrar but no New Registrar button; the API refuses the create.
    c.find(Locator::Css("form.logout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&c, "#email").await;
    sign_in(&c, &base, "viewer@example.com").await;
    c.goto(&format!("{base}/projects/staging-pbx/registrars"))
        .await
        .unwrap();
    let text = wait_css(&c, "table#registrars").await.text().await.unwrap();
    assert!(text.contains("Production Asterisk"));
    assert!(c.find(Locator::Css("#new-registrar")).await.is_err());
    let viewer = common::sign_in(s.addr, "viewer@example.com", common::PASSWORD).await;
    let r = common::api(
        s.addr,
        "POST",
        &format!("/api/v1/projects/{}/registrars", p.id),
        &Auth::Cookie(&viewer.cookie),
        Some(&json!({ "name": "V", "domain": "a.com", "transport": "UDP" })),
    )
    .await;
    assert_eq!(r.status, 403);
}
