//! "Check connectivity" against a real built-in registrar (static accounts) on loopback UDP:
//! through the API (success, wrong password, account unknown to the registrar, unknown account
//! id, permissions, the built-in registrar) and through the registrar page's form.

mod common;

use std::collections::HashMap;

use agent::builtin::BuiltinRegistrar;
use common::{Auth, TestServer, api, form, http, sign_in};
use registrar::{AccountStatus, Accounts, AuthMode, RegistrarConfig};
use serde_json::{Value, json};
use sip_msg::Host;
use store::Role;

async fn static_registrar() -> BuiltinRegistrar {
    let mut accounts = HashMap::new();
    accounts.insert(
        "alice".to_owned(),
        ("alice-secret-1".to_owned(), AccountStatus::Enabled),
    );
    accounts.insert(
        "bob".to_owned(),
        ("the-real-password".to_owned(), AccountStatus::Enabled),
    );
    BuiltinRegistrar::start_udp(
        "127.0.0.1:0".parse().unwrap(),
        RegistrarConfig {
            domain: "127.0.0.1".into(),
            host: Host::parse("127.0.0.1").unwrap(),
            port: 0,
            transport: "UDP".into(),
            auth: AuthMode::Static(Accounts(accounts)),
            secret: b"check-test".to_vec(),
            min_expires: 10,
            max_expires: 3600,
        },
    )
    .await
    .unwrap()
}

fn steps(v: &Value) -> Vec<(String, String)> {
    v["data"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn check_connectivity_through_the_api_and_the_page() {
    let reg = static_registrar().await;
    let port = reg.addr().port();
    let s = TestServer::start("check").await;
    let pid = s.boot.demo.id;
    let owner = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let o = Auth::Cookie(&owner.cookie);
    let base = format!("/api/v1/projects/{pid}/registrars");
    let r = api(
        s.addr,
        "POST",
        &base,
        &o,
        Some(&json!({ "name": "Lab", "domain": "127.0.0.1", "port": port, "transport": "UDP" })),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.json()["data"]["id"].as_i64().unwrap();
    let mut ids = HashMap::new();
    for (user, pw) in [
        ("alice", "alice-secret-1"),
        ("bob", "a-wrong-password"),
        ("carol", "carol-secret-1"),
    ] {
        let a = api(
            s.addr,
            "POST",
            &format!("{base}/{rid}/accounts"),
            &o,
            Some(&json!({ "username": user, "password": pw })),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.body);
        ids.insert(user, a.json()["data"]["id"].as_i64().unwrap());
    }
    let check = format!("{base}/{rid}/check");

    // Success: every step ok, 200, the trace holds the REGISTER and the 200 with the digest.
    let t = std::time::Instant::now();
    let ok = api(
        s.addr,
        "POST",
        &check,
        &o,
        Some(&json!({ "account": ids["alice"] })),
    )
    .await;
    let took = t.elapsed();
    assert_eq!(ok.status, 200, "{}", ok.body);
    let v = ok.json();
    assert_eq!(v["data"]["registered"], true, "{}", ok.body);
    assert_eq!(v["data"]["finalCode"], 200);
    assert_eq!(v["data"]["hint"], Value::Null);
    assert_eq!(
        v["data"]["registrationUri"],
        format!("sip:127.0.0.1:{port};transport=udp")
    );
    assert_eq!(v["data"]["server"], format!("127.0.0.1:{port}"));
    assert_eq!(
        steps(&v),
        pairs(&[
            ("dns", "ok"),
            ("transport", "ok"),
            ("register", "ok"),
            ("auth", "ok")
        ])
    );
    for st in v["data"]["steps"].as_array().unwrap() {
        let ms = st["elapsedMs"].as_f64().unwrap();
        assert!((0.0..20_000.0).contains(&ms), "{st}");
    }
    let trace = v["data"]["trace"].as_array().unwrap();
    let firsts: Vec<String> = trace
        .iter()
        .filter(|e| e["direction"] != "note")
        .map(|e| {
            e["text"]
                .as_str()
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        firsts[0].starts_with("REGISTER sip:127.0.0.1:"),
        "{firsts:?}"
    );
    assert_eq!(firsts[1], "SIP/2.0 401 Unauthorized", "{firsts:?}");
    assert!(firsts.contains(&"SIP/2.0 200 OK".to_owned()), "{firsts:?}");
    assert!(
        trace.iter().any(|e| e["text"]
            .as_str()
            .unwrap()
            .contains("Authorization: Digest")),
        "the second REGISTER carries the digest"
    );
    assert!(
        !ok.body.contains("alice-secret-1"),
        "the password never leaves the server"
    );
    println!("check (UDP, digest, un-REGISTER) answered in {took:?}");

    // Wrong password: 401 at the auth step, with the hint.
    let bad = api(
        s.addr,
        "POST",
        &check,
        &o,
        Some(&json!({ "account": ids["bob"] })),
    )
    .await;
    assert_eq!(bad.status, 200, "{}", bad.body);
    let v = bad.json();
    assert_eq!(v["data"]["registered"], false);
    assert_eq!(v["data"]["finalCode"], 401, "{}", bad.body);
    let hint = v["data"]["hint"].as_str().unwrap();
    assert!(hint.contains("authentication failed"), "{hint}");
    assert_eq!(
        steps(&v)[3],
        ("auth".into(), "failed".into()),
        "{}",
        bad.body
    );

    // An account the registrar does not know: 404 and its hint.
    let unknown = api(
        s.addr,
        "POST",
        &check,
        &o,
        Some(&json!({ "account": ids["carol"] })),
    )
    .await;
    let v = unknown.json();
    assert_eq!(v["data"]["registered"], false);
    assert_eq!(v["data"]["finalCode"], 404, "{}", unknown.body);
    assert!(
        v["data"]["hint"].as_str().unwrap().contains("not found"),
        "{}",
        unknown.body
    );

    // An account id that is not this registrar's: NOT_FOUND, nothing sent.
    let missing = api(
        s.addr,
        "POST",
        &check,
        &o,
        Some(&json!({ "account": 999_999 })),
    )
    .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.json()["error"]["code"], "NOT_FOUND");
    // A malformed account and a non-JSON body.
    let malformed = api(
        s.addr,
        "POST",
        &check,
        &o,
        Some(&json!({ "account": "alice" })),
    )
    .await;
    assert_eq!(malformed.status, 422, "{}", malformed.body);
    assert_eq!(malformed.json()["error"]["code"], "VALIDATION_FAILED");
    let plain = http(
        s.addr,
        "POST",
        &check,
        &[("Cookie", owner.cookie.as_str())],
        "account=1",
    )
    .await;
    assert_eq!(plain.status, 415);
    // Another project's registrar id: 404.
    let other = api(
        s.addr,
        "POST",
        &format!("{base}/{}/check", rid + 1000),
        &o,
        Some(&json!({})),
    )
    .await;
    assert_eq!(other.status, 404);

    // Permissions: a Viewer cannot run it, a Tester can.
    s.add_user("viewer@example.com", Role::Viewer).await;
    s.add_user("tester@example.com", Role::Tester).await;
    let viewer = sign_in(s.addr, "viewer@example.com", common::PASSWORD).await;
    let tester = sign_in(s.addr, "tester@example.com", common::PASSWORD).await;
    let denied = api(
        s.addr,
        "POST",
        &check,
        &Auth::Cookie(&viewer.cookie),
        Some(&json!({ "account": ids["alice"] })),
    )
    .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(denied.json()["error"]["code"], "FORBIDDEN");
    let allowed = api(
        s.addr,
        "POST",
        &check,
        &Auth::Cookie(&tester.cookie),
        Some(&json!({ "account": ids["alice"] })),
    )
    .await;
    assert_eq!(
        allowed.json()["data"]["registered"],
        true,
        "{}",
        allowed.body
    );

    // The built-in registrar: started on loopback for the check, no account.
    let list = api(s.addr, "GET", &base, &o, None).await.json();
    let builtin = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "builtin")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let b = api(
        s.addr,
        "POST",
        &format!("{base}/{builtin}/check"),
        &o,
        Some(&json!({})),
    )
    .await;
    assert_eq!(b.status, 200, "{}", b.body);
    assert_eq!(b.json()["data"]["registered"], true, "{}", b.body);
    assert_eq!(b.json()["data"]["finalCode"], 200);
    let b2 = api(
        s.addr,
        "POST",
        &format!("{base}/{builtin}/check"),
        &o,
        Some(&json!({ "account": ids["alice"] })),
    )
    .await;
    assert_eq!(b2.status, 409);
    assert_eq!(b2.json()["error"]["code"], "BUILTIN_NO_ACCOUNTS");

    // The page: the form (CSRF as every form) renders the checklist with ✓/✗ and the hint.
    let slug = &s.boot.demo.slug;
    let page_path = format!("/projects/{slug}/registrars/{rid}");
    let page = http(
        s.addr,
        "GET",
        &page_path,
        &[("Cookie", owner.cookie.as_str())],
        "",
    )
    .await;
    assert!(
        page.body.contains("id=\"check-connectivity\""),
        "{}",
        page.body
    );
    assert!(page.body.contains(">alice</option>"));
    let post = |account: i64, csrf: String| {
        let cookie = owner.cookie.clone();
        let path = format!("{page_path}/check");
        let body = form(&[("csrf", &csrf), ("account", &account.to_string())]);
        async move {
            http(
                s.addr,
                "POST",
                &path,
                &[
                    ("Cookie", cookie.as_str()),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                &body,
            )
            .await
        }
    };
    let good = post(ids["alice"], owner.csrf.clone()).await;
    assert_eq!(good.status, 200, "{}", good.body);
    assert!(good.body.contains("✓ registered (200)"), "{}", good.body);
    assert_eq!(good.body.matches("<td>✓</td>").count(), 4, "{}", good.body);
    let wrong = post(ids["bob"], owner.csrf.clone()).await;
    assert!(
        wrong.body.contains("✗ not registered (final code 401)"),
        "{}",
        wrong.body
    );
    assert!(
        wrong.body.contains("<td>✗</td><td>auth</td>"),
        "{}",
        wrong.body
    );
    assert!(
        wrong.body.contains("Hint: authentication failed"),
        "{}",
        wrong.body
    );
    let forged = post(ids["alice"], "not-the-token".into()).await;
    assert_ne!(forged.status, 200, "a bad CSRF token is refused");
    let viewer_page = http(
        s.addr,
        "GET",
        &page_path,
        &[("Cookie", viewer.cookie.as_str())],
        "",
    )
    .await;
    assert!(!viewer_page.body.contains("check-connectivity"));

    // What the registrar saw: three successful checks (API owner, API tester, page), each a
    // REGISTER and an un-REGISTER; one 404 (carol); the unknown and malformed ids sent nothing.
    let stats = reg.stop().await;
    assert_eq!(stats.registered, 6, "{stats:?}");
    assert_eq!(stats.refused, 1, "{stats:?}");
}
