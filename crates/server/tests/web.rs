//! Web UI tests over a real socket: sign-in, cookies, CSRF, rate limiting, setup, the registrar
//! form's server-side validation.

mod common;

use common::{TestServer, cookie_pair, csrf_of, form, http, sign_in};
use server::{AppState, FirstStart, ServerConfig};
use store::Role;

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn sign_in_cookies_csrf_and_logout() {
    let s = TestServer::start("signin").await;
    // Signed out: pages redirect to the sign-in page.
    let r = http(s.addr, "GET", "/projects/demo/registrars", &[], "").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));

    let page = http(s.addr, "GET", "/login", &[], "").await;
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .starts_with("default-src 'self'")
    );
    let login_cookie_header = page.set_cookies()[0].to_string();
    assert!(
        login_cookie_header.contains("HttpOnly") && login_cookie_header.contains("SameSite=Strict")
    );
    let login_cookie = cookie_pair(&page, "sipmeter_login_csrf").unwrap();
    let csrf = csrf_of(&page.body);

    // Without the CSRF cookie the form is refused.
    let r = http(
        s.addr,
        "POST",
        "/login",
        &[("Content-Type", FORM)],
        &form(&[
            ("csrf", &csrf),
            ("email", common::OWNER_EMAIL),
            ("password", common::PASSWORD),
        ]),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(cookie_pair(&r, "sipmeter_session").is_none());

    // Right credentials: a session cookie, HttpOnly and SameSite=Lax.
    let r = http(
        s.addr,
        "POST",
        "/login",
        &[("Cookie", &login_cookie), ("Content-Type", FORM)],
        &form(&[
            ("csrf", &csrf),
            ("email", "OWNER@example.com"),
            ("password", common::PASSWORD),
        ]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let set = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("sipmeter_session="))
        .unwrap()
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"),
        "{set}"
    );
    let cookie = cookie_pair(&r, "sipmeter_session").unwrap();

    // The sidebar lists the organization's projects; the project navigation has Registrars.
    let home = http(s.addr, "GET", "/", &[("Cookie", &cookie)], "").await;
    assert_eq!(home.header("location"), Some("/projects/demo/registrars"));
    let page = http(
        s.addr,
        "GET",
        "/projects/demo/registrars",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-project=\"demo\">Demo</a>"));
    assert!(
        page.body
            .contains("href=\"/projects/demo/registrars\" class=\"active\">Registrars</a>")
    );
    assert!(page.body.contains("sip:127.0.0.1:5060;transport=udp"));
    assert!(page.body.contains("built-in · no accounts needed"));
    assert!(page.body.contains("id=\"new-registrar\""));
    let session_csrf = csrf_of(&page.body);

    // A form post without the session's CSRF token is refused and saves nothing.
    let body = form(&[
        ("name", "X"),
        ("domain", "sip.example.com"),
        ("transport", "UDP"),
    ]);
    let r = http(
        s.addr,
        "POST",
        "/projects/demo/registrars",
        &[("Cookie", &cookie), ("Content-Type", FORM)],
        &body,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = http(
        s.addr,
        "POST",
        "/projects/demo/registrars",
        &[("Cookie", &cookie), ("Content-Type", FORM)],
        &format!("{body}&csrf=wrong"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(s.store.registrars(s.boot.demo.id).await.unwrap().len(), 1);

    // Logout ends the session server-side.
    let r = http(
        s.addr,
        "POST",
        "/logout",
        &[("Cookie", &cookie), ("Content-Type", FORM)],
        &form(&[("csrf", &session_csrf)]),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(r.set_cookies()[0].contains("Max-Age=0"));
    let r = http(
        s.addr,
        "GET",
        "/projects/demo/registrars",
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(r.status, 303);
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_account() {
    let s = TestServer::start("ratelimit").await;
    let attempt = |password: &'static str, email: &'static str| async move {
        let page = http(s.addr, "GET", "/login", &[], "").await;
        let c = cookie_pair(&page, "sipmeter_login_csrf").unwrap();
        http(
            s.addr,
            "POST",
            "/login",
            &[("Cookie", &c), ("Content-Type", FORM)],
            &form(&[
                ("csrf", &csrf_of(&page.body)),
                ("email", email),
                ("password", password),
            ]),
        )
        .await
    };
    for _ in 0..5 {
        let r = attempt("wrong password!", common::OWNER_EMAIL).await;
        assert_eq!(r.status, 401);
        assert!(r.body.contains("Wrong email or password."));
    }
    // Locked: even the right password is refused now.
    let r = attempt(common::PASSWORD, common::OWNER_EMAIL).await;
    assert_eq!(r.status, 429);
    assert!(
        r.body
            .contains("Too many failed sign-in attempts. Try again in 15 minute(s)."),
        "{}",
        r.body
    );
    // Other accounts are unaffected.
    s.add_user("other@example.com", Role::Viewer).await;
    assert_eq!(
        attempt(common::PASSWORD, "other@example.com").await.status,
        303
    );
}

#[tokio::test]
async fn registrar_form_validates_each_field_and_keeps_input() {
    let s = TestServer::start("form").await;
    let owner = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let post = |pairs: Vec<(&'static str, String)>| {
        let cookie = owner.cookie.clone();
        let csrf = owner.csrf.clone();
        async move {
            let mut all: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            all.push(("csrf", &csrf));
            http(
                s.addr,
                "POST",
                "/projects/demo/registrars",
                &[("Cookie", &cookie), ("Content-Type", FORM)],
                &form(&all),
            )
            .await
        }
    };
    let r = post(vec![
        ("name", "Staging".into()),
        ("domain", "pbx.example.com:5060".into()),
        ("port", "99999".into()),
        ("transport", "TLS".into()),
        ("outboundProxy", "proxy.example.com:5060".into()),
        ("tlsVerify", "system".into()),
    ])
    .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("<p class=\"field-error\" id=\"domain-error\">Put the port in the Port field, not in the domain</p>"));
    assert!(r.body.contains("id=\"port-error\""));
    assert!(
        !r.body.contains("id=\"name-error\""),
        "a valid field has no error"
    );
    assert!(r.body.contains("value=\"Staging\""), "input kept");
    assert!(r.body.contains("value=\"proxy.example.com:5060\""));
    assert!(r.body.contains("<option value=\"TLS\" selected>"));
    assert_eq!(
        s.store.registrars(s.boot.demo.id).await.unwrap().len(),
        1,
        "nothing saved"
    );

    // Valid: saved, redirected to its page, listed with the seed's URI.
    let r = post(vec![
        ("name", "Staging".into()),
        ("domain", "pbx.example.com".into()),
        ("port", "".into()),
        ("transport", "TLS".into()),
    ])
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let loc = r.header("location").unwrap().to_string();
    let id = loc
        .strip_prefix("/projects/demo/registrars?saved=")
        .unwrap()
        .to_string();
    let list = http(s.addr, "GET", &loc, &[("Cookie", &owner.cookie)], "").await;
    assert!(list.body.contains("Registrar “Staging” saved."));
    let view = http(
        s.addr,
        "GET",
        &format!("/projects/demo/registrars/{id}"),
        &[("Cookie", &owner.cookie)],
        "",
    )
    .await;
    assert!(
        view.body.contains(
            "<code id=\"registration-uri\">sip:pbx.example.com:5061;transport=tls</code>"
        ),
        "{}",
        view.body
    );
    assert!(view.body.contains("5061 (transport default)"));
    let list = http(
        s.addr,
        "GET",
        "/projects/demo/registrars",
        &[("Cookie", &owner.cookie)],
        "",
    )
    .await;
    assert!(list.body.contains("sip:pbx.example.com:5061;transport=tls"));

    // Edit and delete through the forms.
    let edit = http(
        s.addr,
        "GET",
        &format!("/projects/demo/registrars/{id}/edit"),
        &[("Cookie", &owner.cookie)],
        "",
    )
    .await;
    assert!(edit.body.contains("value=\"pbx.example.com\""));
    let r = http(
        s.addr,
        "POST",
        &format!("/projects/demo/registrars/{id}"),
        &[("Cookie", &owner.cookie), ("Content-Type", FORM)],
        &form(&[
            ("csrf", &owner.csrf),
            ("name", "Staging"),
            ("domain", "10.0.0.50"),
            ("port", "5070"),
            ("transport", "TCP"),
        ]),
    )
    .await;
    assert_eq!(r.status, 303);
    let stored = s
        .store
        .registrar(s.boot.demo.id, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.registration_uri(),
        "sip:10.0.0.50:5070;transport=tcp"
    );
    let r = http(
        s.addr,
        "POST",
        &format!("/projects/demo/registrars/{id}/delete"),
        &[("Cookie", &owner.cookie), ("Content-Type", FORM)],
        &form(&[("csrf", &owner.csrf)]),
    )
    .await;
    assert_eq!(
        r.header("location"),
        Some("/projects/demo/registrars?deleted=1")
    );
    assert_eq!(s.store.registrars(s.boot.demo.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn viewers_see_no_new_registrar_button_and_cannot_post() {
    let s = TestServer::start("viewer").await;
    s.add_user("viewer@example.com", Role::Viewer).await;
    let v = sign_in(s.addr, "viewer@example.com", common::PASSWORD).await;
    let list = http(
        s.addr,
        "GET",
        "/projects/demo/registrars",
        &[("Cookie", &v.cookie)],
        "",
    )
    .await;
    assert_eq!(list.status, 200);
    assert!(!list.body.contains("New Registrar"));
    assert_eq!(
        http(
            s.addr,
            "GET",
            "/projects/demo/registrars/new",
            &[("Cookie", &v.cookie)],
            ""
        )
        .await
        .status,
        403
    );
    let r = http(
        s.addr,
        "POST",
        "/projects/demo/registrars",
        &[("Cookie", &v.cookie), ("Content-Type", FORM)],
        &form(&[
            ("csrf", &v.csrf),
            ("name", "X"),
            ("domain", "a.com"),
            ("transport", "UDP"),
        ]),
    )
    .await;
    assert_eq!(r.status, 403);
    // Another organization's project slug is simply not there.
    let other = s.store.create_organization("Other").await.unwrap();
    s.store.create_project(other.id, "Hidden").await.unwrap();
    assert_eq!(
        http(
            s.addr,
            "GET",
            "/projects/hidden/registrars",
            &[("Cookie", &v.cookie)],
            ""
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn projects_get_a_fixed_slug() {
    let s = TestServer::start("projects").await;
    let o = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let r = http(
        s.addr,
        "POST",
        "/projects",
        &[("Cookie", &o.cookie), ("Content-Type", FORM)],
        &form(&[("csrf", &o.csrf), ("name", "Staging PBX")]),
    )
    .await;
    assert_eq!(
        r.header("location"),
        Some("/projects/staging-pbx/registrars")
    );
    let p = s
        .store
        .project_by_slug(s.boot.org.id, "staging-pbx")
        .await
        .unwrap()
        .unwrap();
    s.store.rename_project(p.id, "Renamed").await.unwrap();
    let page = http(
        s.addr,
        "GET",
        "/projects/staging-pbx/registrars",
        &[("Cookie", &o.cookie)],
        "",
    )
    .await;
    assert!(
        page.body
            .contains("data-project=\"staging-pbx\">Renamed</a>")
    );
    // Placeholders for what comes later.
    let t = http(
        s.addr,
        "GET",
        "/projects/staging-pbx/tests",
        &[("Cookie", &o.cookie)],
        "",
    )
    .await;
    assert_eq!(t.status, 200);
    assert!(t.body.contains("Tests arrive in a later version"));
    assert_eq!(
        http(
            s.addr,
            "GET",
            "/projects/staging-pbx/nonsense",
            &[("Cookie", &o.cookie)],
            ""
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn first_start_setup_link_works_once() {
    let dir = common::tempdir("setup");
    let store = store::Store::connect(&format!("sqlite://{}/db.sqlite?mode=rwc", dir.display()))
        .await
        .unwrap();
    let FirstStart::NeedsSetup { token } = server::first_start(&store, None).await.unwrap() else {
        panic!("expected a setup token");
    };
    assert_eq!(token.len(), 48);
    let (addr, task) = common::serve(AppState::new(
        store.clone(),
        ServerConfig::default(),
        Some(token.clone()),
    ))
    .await;

    assert_eq!(
        http(addr, "GET", "/setup?token=wrong", &[], "")
            .await
            .status,
        404
    );
    let page = http(addr, "GET", &format!("/setup?token={token}"), &[], "").await;
    assert_eq!(page.status, 200);
    let c = cookie_pair(&page, "sipmeter_login_csrf").unwrap();
    let csrf = csrf_of(&page.body);
    let post = |password: &'static str| {
        let (c, csrf, token) = (c.clone(), csrf.clone(), token.clone());
        async move {
            http(
                addr,
                "POST",
                "/setup",
                &[("Cookie", &c), ("Content-Type", FORM)],
                &form(&[
                    ("csrf", &csrf),
                    ("token", &token),
                    ("org", "Acme"),
                    ("email", "boss@acme.example"),
                    ("password", password),
                ]),
            )
            .await
        }
    };
    let short = post("short").await;
    assert_eq!(short.status, 422);
    assert!(
        short
            .body
            .contains("The password must be at least 10 characters")
    );
    assert_eq!(store.count_users().await.unwrap(), 0);
    let ok = post("long enough password").await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some("/projects/demo/registrars"));
    assert!(cookie_pair(&ok, "sipmeter_session").is_some());
    assert_eq!(store.count_users().await.unwrap(), 1);
    let again = post("long enough password").await;
    assert_eq!(again.status, 404);
    assert_eq!(
        http(addr, "GET", &format!("/setup?token={token}"), &[], "")
            .await
            .status,
        303
    );
    assert!(matches!(
        server::first_start(&store, None).await.unwrap(),
        FirstStart::AlreadySetUp
    ));
    let orgs = store
        .memberships(
            store
                .user_by_email("boss@acme.example")
                .await
                .unwrap()
                .unwrap()
                .id,
        )
        .await
        .unwrap();
    assert_eq!((orgs[0].0.name.as_str(), orgs[0].1), ("Acme", Role::Owner));
    task.abort();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sip_accounts_page_adds_one_and_in_bulk() {
    let s = TestServer::start("accountspage").await;
    let o = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let empty = http(
        s.addr,
        "GET",
        "/projects/demo/accounts",
        &[("Cookie", &o.cookie)],
        "",
    )
    .await;
    assert!(
        empty.body.contains("Add a registrar"),
        "only the built-in registrar so far"
    );
    let mut input = store::RegistrarInput::builtin();
    input.name = "Asterisk".into();
    input.domain = "pbx.corp.net".into();
    let reg = s
        .store
        .create_registrar(s.boot.demo.id, &input)
        .await
        .unwrap();
    let post = |path: String, pairs: Vec<(&'static str, &'static str)>| {
        let (cookie, csrf) = (o.cookie.clone(), o.csrf.clone());
        async move {
            let mut all: Vec<(&str, &str)> = pairs.clone();
            all.push(("csrf", &csrf));
            http(
                s.addr,
                "POST",
                &path,
                &[("Cookie", &cookie), ("Content-Type", FORM)],
                &form(&all),
            )
            .await
        }
    };
    let bulk = format!("/projects/demo/accounts/{}/bulk", reg.id);
    let r = post(bulk.clone(), vec![("csv", "2001,pw1\n2002\n")]).await;
    assert_eq!(r.status, 422);
    assert!(
        r.body.contains(
            "Line 2: expected username,password[,realm[,extension]] but found 1 field(s)"
        ),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("2001,pw1\n2002\n</textarea>"),
        "CSV kept for correction"
    );
    assert_eq!(s.store.count_sip_accounts(reg.id).await.unwrap(), 0);

    let r = post(
        bulk,
        vec![("csv", "2001,pw-one\n2002,pw-two,pbx.corp.net\n")],
    )
    .await;
    assert_eq!(
        r.header("location").map(str::to_string),
        Some(format!(
            "/projects/demo/accounts?registrar={}&added=2",
            reg.id
        ))
    );
    let r = post(
        format!("/projects/demo/accounts/{}", reg.id),
        vec![
            ("username", "2003"),
            ("password", "pw-three"),
            ("extension", "300"),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let dup = post(
        format!("/projects/demo/accounts/{}", reg.id),
        vec![("username", "2003"), ("password", "x")],
    )
    .await;
    assert_eq!(dup.status, 409);
    assert!(
        dup.body
            .contains("1 username(s) already exist on this registrar: 2003")
    );

    let page = http(
        s.addr,
        "GET",
        &format!("/projects/demo/accounts?registrar={}&added=1", reg.id),
        &[("Cookie", &o.cookie)],
        "",
    )
    .await;
    assert!(page.body.contains("<td>2001</td><td>••••••</td>"));
    assert!(
        page.body
            .contains("<td>2002</td><td>••••••</td><td>pbx.corp.net</td>")
    );
    assert!(
        !page.body.contains("pw-one") && !page.body.contains("pw-three"),
        "passwords never shown"
    );
    assert!(
        page.body
            .contains("Asterisk <span class=\"count\">3</span>")
    );
    // A pool from all accounts, then its deletion.
    let r = post(
        format!("/projects/demo/accounts/{}/pools", reg.id),
        vec![("name", "load"), ("strategy", "round_robin")],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let pools = s.store.account_pools(reg.id).await.unwrap();
    assert_eq!(
        (pools[0].name.as_str(), pools[0].account_ids.len()),
        ("load", 3)
    );
    let page = http(
        s.addr,
        "GET",
        &format!("/projects/demo/accounts?registrar={}", reg.id),
        &[("Cookie", &o.cookie)],
        "",
    )
    .await;
    assert!(
        page.body
            .contains("<td>load</td><td>Round robin across runs</td><td>3</td>"),
        "{}",
        page.body
    );
    let dup = post(
        format!("/projects/demo/accounts/{}/pools", reg.id),
        vec![("name", "load"), ("strategy", "random")],
    )
    .await;
    assert_eq!(dup.status, 409);
    let r = post(
        format!(
            "/projects/demo/accounts/{}/pools/{}/delete",
            reg.id, pools[0].id
        ),
        vec![],
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(s.store.account_pools(reg.id).await.unwrap().is_empty());

    let id = s.store.sip_accounts(reg.id).await.unwrap()[0].id;
    let r = post(
        format!("/projects/demo/accounts/{}/{id}/delete", reg.id),
        vec![],
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(s.store.count_sip_accounts(reg.id).await.unwrap(), 2);
}

#[tokio::test]
async fn a_certificate_expiring_soon_is_saved_with_a_warning_on_its_page() {
    let s = TestServer::start("warn").await;
    let o = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    // A client certificate expiring in ~10 days, with its key.
    let soon = server::certs::date(store::now_ms() / 1000 + 10 * 86_400);
    let (y, m, d) = (
        soon[..4].parse().unwrap(),
        soon[5..7].parse().unwrap(),
        soon[8..].parse().unwrap(),
    );
    let mut params = rcgen::CertificateParams::new(vec!["client.example.com".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let r = http(
        s.addr,
        "POST",
        "/projects/demo/registrars",
        &[("Cookie", &o.cookie), ("Content-Type", FORM)],
        &form(&[
            ("csrf", &o.csrf),
            ("name", "mTLS"),
            ("domain", "pbx.example.com"),
            ("transport", "TLS"),
            ("tlsVerify", "skip"),
            ("tlsCertPem", &cert.pem()),
            ("tlsKeyPem", &key.serialize_pem()),
        ]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let loc = r.header("location").unwrap().to_string();
    assert!(loc.ends_with("?saved=1&warn=1"), "{loc}");
    let page = http(s.addr, "GET", &loc, &[("Cookie", &o.cookie)], "").await;
    assert!(
        page.body
            .contains(&format!("The client certificate expires on {soon} (in ")),
        "{}",
        page.body
    );
    assert!(page.body.contains("1 certificate(s), valid until"));
    assert!(page.body.contains("with its key"));
    assert!(!page.body.contains("PRIVATE KEY"), "the key is never shown");
}
