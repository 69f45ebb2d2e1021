//! JSON API tests over a real socket (127.0.0.1:0).

mod common;

use common::{Auth, TestServer, api, form, http, sign_in};
use serde_json::{Value, json};
use store::Role;

async fn make_key(s: &TestServer, cookie: &str, project: i64, name: &str) -> String {
    let r = api(
        s.addr,
        "POST",
        &format!("/api/v1/projects/{project}/api-keys"),
        &Auth::Cookie(cookie),
        Some(&json!({ "name": name })),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["data"]["key"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn registrar_crud_with_an_api_key() {
    let s = TestServer::start("crud").await;
    let owner = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let pid = s.boot.demo.id;
    let key = make_key(&s, &owner.cookie, pid, "ci").await;
    assert!(key.starts_with("smk_") && key.len() == 68, "{key}");

    // The key is shown once: listing shows only its prefix.
    let keys = api(
        s.addr,
        "GET",
        &format!("/api/v1/projects/{pid}/api-keys"),
        &Auth::Key(&key),
        None,
    )
    .await;
    assert_eq!(keys.status, 200);
    let listed = &keys.json()["data"][0];
    assert_eq!(listed["prefix"], json!(&key[..12]));
    assert!(listed.get("key").is_none());
    assert!(!keys.body.contains(&key[12..]));

    // Create: TLS, port blank → the seed's URI with the TLS default port.
    let base = format!("/api/v1/projects/{pid}/registrars");
    let body = json!({ "name": "Production Asterisk", "domain": "pbx.corp.net", "transport": "TLS",
                       "outboundProxy": "proxy.example.com:5060" });
    let r = api(s.addr, "POST", &base, &Auth::Key(&key), Some(&body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(
        v["data"]["registrationUri"],
        "sip:pbx.corp.net:5061;transport=tls"
    );
    assert_eq!(v["data"]["port"], Value::Null);
    assert_eq!(v["data"]["effectivePort"], 5061);
    assert_eq!(v["data"]["transport"], "TLS");
    assert_eq!(v["data"]["kind"], "custom");
    assert_eq!(v["meta"]["requestId"].as_str(), r.header("x-request-id"));
    let rid = v["data"]["id"].as_i64().unwrap();

    // List: the built-in registrar and the new one, with pagination.
    let l = api(
        s.addr,
        "GET",
        &format!("{base}?perPage=1&page=2"),
        &Auth::Key(&key),
        None,
    )
    .await;
    let lv = l.json();
    assert_eq!(
        lv["meta"]["pagination"],
        json!({ "page": 2, "perPage": 1, "total": 2 })
    );
    assert_eq!(lv["data"].as_array().unwrap().len(), 1);
    let all = api(s.addr, "GET", &base, &Auth::Key(&key), None)
        .await
        .json();
    let uris: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["registrationUri"].as_str().unwrap())
        .collect();
    assert_eq!(
        uris,
        vec![
            "sip:127.0.0.1:5060;transport=udp",
            "sip:pbx.corp.net:5061;transport=tls"
        ]
    );
    assert_eq!(all["data"][0]["kind"], "builtin");

    // Update (port as a JSON number), then AUTO.
    let upd = json!({ "name": "Production Asterisk", "domain": "10.0.0.50", "transport": "TCP", "port": 5060 });
    let u = api(
        s.addr,
        "PUT",
        &format!("{base}/{rid}"),
        &Auth::Key(&key),
        Some(&upd),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(
        u.json()["data"]["registrationUri"],
        "sip:10.0.0.50:5060;transport=tcp"
    );
    assert_eq!(u.json()["data"]["outboundProxy"], Value::Null);
    let auto = json!({ "name": "DNS", "domain": "example.com", "transport": "AUTO" });
    let a = api(
        s.addr,
        "PUT",
        &format!("{base}/{rid}"),
        &Auth::Key(&key),
        Some(&auto),
    )
    .await;
    assert_eq!(a.json()["data"]["registrationUri"], "sip:example.com");
    assert_eq!(a.json()["data"]["dnsDiscovery"], true);

    // Invalid fields: each named, nothing saved.
    let bad = json!({ "name": "", "domain": "pbx..corp", "transport": "TLS", "port": 70000, "outboundProxy": "sip:x" });
    let e = api(s.addr, "POST", &base, &Auth::Key(&key), Some(&bad)).await;
    assert_eq!(e.status, 422);
    let ev = e.json();
    assert_eq!(ev["error"]["code"], "VALIDATION_FAILED");
    let fields: Vec<&str> = ev["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["name", "domain", "port", "outboundProxy"]);
    let e2 = api(
        s.addr,
        "PUT",
        &format!("{base}/{rid}"),
        &Auth::Key(&key),
        Some(&bad),
    )
    .await;
    assert_eq!(e2.status, 422);
    let still = api(
        s.addr,
        "GET",
        &format!("{base}/{rid}"),
        &Auth::Key(&key),
        None,
    )
    .await
    .json();
    assert_eq!(
        still["data"]["name"], "DNS",
        "a refused update changes nothing"
    );
    assert_eq!(
        api(s.addr, "GET", &base, &Auth::Key(&key), None)
            .await
            .json()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The built-in registrar is read-only.
    let builtin_id = all["data"][0]["id"].as_i64().unwrap();
    let b = api(
        s.addr,
        "PUT",
        &format!("{base}/{builtin_id}"),
        &Auth::Key(&key),
        Some(&auto),
    )
    .await;
    assert_eq!(
        (b.status, b.json()["error"]["code"].clone()),
        (409, json!("BUILTIN_READ_ONLY"))
    );

    // Delete, then it is gone.
    let d = api(
        s.addr,
        "DELETE",
        &format!("{base}/{rid}"),
        &Auth::Key(&key),
        None,
    )
    .await;
    assert_eq!(d.status, 200);
    let g = api(
        s.addr,
        "GET",
        &format!("{base}/{rid}"),
        &Auth::Key(&key),
        None,
    )
    .await;
    assert_eq!(
        (g.status, g.json()["error"]["code"].clone()),
        (404, json!("NOT_FOUND"))
    );

    // The session cookie works for the API too; a revoked key does not.
    let kid = keys.json()["data"][0]["id"].as_i64().unwrap();
    let rv = api(
        s.addr,
        "DELETE",
        &format!("/api/v1/projects/{pid}/api-keys/{kid}"),
        &Auth::Cookie(&owner.cookie),
        None,
    )
    .await;
    assert_eq!(rv.status, 200, "{}", rv.body);
    let after = api(s.addr, "GET", &base, &Auth::Key(&key), None).await;
    assert_eq!(
        (after.status, after.json()["error"]["code"].clone()),
        (401, json!("UNAUTHENTICATED"))
    );
    assert_eq!(
        api(s.addr, "GET", &base, &Auth::Cookie(&owner.cookie), None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn errors_are_enveloped_with_stable_codes() {
    let s = TestServer::start("errors").await;
    let owner = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let pid = s.boot.demo.id;
    let base = format!("/api/v1/projects/{pid}/registrars");

    let none = api(s.addr, "GET", &base, &Auth::None, None).await;
    assert_eq!(
        (none.status, none.json()["error"]["code"].clone()),
        (401, json!("UNAUTHENTICATED"))
    );
    let badkey = api(s.addr, "GET", &base, &Auth::Key("smk_nope"), None).await;
    assert_eq!(badkey.status, 401);

    // Another organization's project, by id: 404 whether or not it exists.
    let other = s.store.create_organization("Rival").await.unwrap();
    let theirs = s.store.create_project(other.id, "Secret").await.unwrap();
    for id in [theirs.id, 999_999] {
        let r = api(
            s.addr,
            "GET",
            &format!("/api/v1/projects/{id}/registrars"),
            &Auth::Cookie(&owner.cookie),
            None,
        )
        .await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].clone()),
            (404, json!("NOT_FOUND")),
            "{id}"
        );
    }
    // A key of one project cannot reach another project of the same organization.
    let second = s
        .store
        .create_project(s.boot.org.id, "Second")
        .await
        .unwrap();
    let key = make_key(&s, &owner.cookie, pid, "k").await;
    let r = api(
        s.addr,
        "GET",
        &format!("/api/v1/projects/{}/registrars", second.id),
        &Auth::Key(&key),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    let projects = api(s.addr, "GET", "/api/v1/projects", &Auth::Key(&key), None)
        .await
        .json();
    assert_eq!(
        projects["data"].as_array().unwrap().len(),
        1,
        "a key sees its project only"
    );
    let projects = api(
        s.addr,
        "GET",
        "/api/v1/projects",
        &Auth::Cookie(&owner.cookie),
        None,
    )
    .await
    .json();
    assert_eq!(
        projects["meta"]["pagination"]["total"], 2,
        "Demo and Second, not Rival's"
    );

    // Writes must be JSON (CSRF defence for cookie-authenticated calls).
    let form_post = http(
        s.addr,
        "POST",
        &base,
        &[
            ("Cookie", &owner.cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &form(&[("name", "x"), ("domain", "a.com"), ("transport", "UDP")]),
    )
    .await;
    assert_eq!(
        (form_post.status, form_post.json()["error"]["code"].clone()),
        (415, json!("UNSUPPORTED_MEDIA_TYPE"))
    );
    let broken = http(
        s.addr,
        "POST",
        &base,
        &[
            ("Cookie", &owner.cookie),
            ("Content-Type", "application/json"),
        ],
        "{\"name\":",
    )
    .await;
    assert_eq!(
        (broken.status, broken.json()["error"]["code"].clone()),
        (400, json!("BAD_REQUEST"))
    );
    let arr = api(
        s.addr,
        "POST",
        &base,
        &Auth::Cookie(&owner.cookie),
        Some(&json!([1])),
    )
    .await;
    assert_eq!(arr.status, 400);
    let typed = api(
        s.addr,
        "POST",
        &base,
        &Auth::Cookie(&owner.cookie),
        Some(&json!({ "name": ["x"], "domain": "a.com", "transport": "UDP" })),
    )
    .await;
    assert_eq!(typed.status, 422);
    assert_eq!(typed.json()["error"]["fields"][0]["field"], "name");

    let page0 = api(
        s.addr,
        "GET",
        &format!("{base}?page=0"),
        &Auth::Cookie(&owner.cookie),
        None,
    )
    .await;
    assert_eq!(page0.status, 400);
    assert_eq!(
        api(
            s.addr,
            "GET",
            "/api/v1/nope",
            &Auth::Cookie(&owner.cookie),
            None
        )
        .await
        .json()["error"]["code"],
        "NOT_FOUND"
    );
    let doc = http(s.addr, "GET", "/api/v1/openapi.json", &[], "").await;
    assert_eq!(doc.status, 200, "the OpenAPI document needs no credentials");
    assert_eq!(doc.json()["openapi"], "3.1.0");
    assert!(doc.json()["paths"]["/projects/{id}/registrars"]["post"].is_object());
    let me = api(
        s.addr,
        "GET",
        "/api/v1/me",
        &Auth::Cookie(&owner.cookie),
        None,
    )
    .await
    .json();
    assert_eq!(me["data"]["email"], common::OWNER_EMAIL);
    assert_eq!(me["data"]["organizations"][0]["role"], "owner");
}

/// rcgen certificates for the TLS checks.
mod pki {
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};

    pub struct Issued {
        pub cert_pem: String,
        pub key_pem: String,
    }

    /// A self-signed certificate valid from `from` to `until` (y, m, d).
    pub fn issue(from: (i32, u8, u8), until: (i32, u8, u8)) -> Issued {
        let mut params = CertificateParams::new(vec!["pbx.corp.net".to_string()]).unwrap();
        params.not_before = date_time_ymd(from.0, from.1, from.2);
        params.not_after = date_time_ymd(until.0, until.1, until.2);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

#[tokio::test]
async fn tls_material_is_checked_on_save() {
    let s = TestServer::start("tls").await;
    let owner = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let base = format!("/api/v1/projects/{}/registrars", s.boot.demo.id);
    let post = |body: Value| {
        let cookie = owner.cookie.clone();
        let base = base.clone();
        let addr = s.addr;
        async move { api(addr, "POST", &base, &Auth::Cookie(&cookie), Some(&body)).await }
    };
    let good = pki::issue((2020, 1, 1), (2099, 1, 1));
    let other = pki::issue((2020, 1, 1), (2099, 1, 1));
    let expired = pki::issue((2015, 1, 1), (2016, 6, 30));
    // Expires in ~10 days from the real clock: warning, still saved.
    let soon_secs = store::now_ms() / 1000 + 10 * 86_400;
    let soon_date = server::certs::date(soon_secs);
    let (y, m, d) = (
        soon_date[..4].parse().unwrap(),
        soon_date[5..7].parse().unwrap(),
        soon_date[8..].parse().unwrap(),
    );
    let soon = pki::issue((2020, 1, 1), (y, m, d));

    let tls = |ca: &str, cert: &str, key: &str, verify: &str| {
        json!({ "name": "TLS PBX", "domain": "pbx.corp.net", "transport": "TLS", "tlsVerify": verify,
                "tlsCaPem": ca, "tlsCertPem": cert, "tlsKeyPem": key })
    };
    let field_errors = |r: &common::Resp| -> Vec<(String, String)> {
        r.json()["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["field"].as_str().unwrap().to_string(),
                    f["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    let ok = post(tls(&good.cert_pem, &good.cert_pem, &good.key_pem, "custom")).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.json()["data"]["hasTlsKey"], true);
    assert!(
        ok.json()["data"].get("tlsKeyPem").is_none(),
        "the key is never returned"
    );
    assert_eq!(ok.json()["data"]["warnings"], json!([]));

    let e = post(tls(&expired.cert_pem, "", "", "custom")).await;
    assert_eq!(e.status, 422);
    assert_eq!(
        field_errors(&e),
        vec![(
            "tlsCaPem".into(),
            "The CA certificate expired on 2016-06-30".into()
        )]
    );

    let e = post(tls("", &good.cert_pem, &other.key_pem, "system")).await;
    assert_eq!(
        field_errors(&e),
        vec![(
            "tlsKeyPem".into(),
            "The private key does not match the client certificate".into()
        )]
    );

    let e = post(tls("", &expired.cert_pem, &expired.key_pem, "skip")).await;
    assert_eq!(field_errors(&e)[0].0, "tlsCertPem");

    let e = post(tls("not pem", "", "", "custom")).await;
    assert_eq!(field_errors(&e)[0].0, "tlsCaPem");

    let e = post(tls("", "", "", "custom")).await;
    assert_eq!(
        field_errors(&e),
        vec![(
            "tlsCaPem".into(),
            "Custom verification needs a CA certificate".into()
        )]
    );

    let w = post(tls(&soon.cert_pem, "", "", "custom")).await;
    assert_eq!(w.status, 201, "{}", w.body);
    let warn = w.json()["data"]["warnings"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        warn.starts_with(&format!("The CA certificate expires on {soon_date} (in ")),
        "{warn}"
    );

    // Editing with a blank key keeps the stored key.
    let rid = ok.json()["data"]["id"].as_i64().unwrap();
    let mut edit = tls(&good.cert_pem, &good.cert_pem, "", "custom");
    edit["name"] = json!("Renamed");
    let u = api(
        s.addr,
        "PUT",
        &format!("{base}/{rid}"),
        &Auth::Cookie(&owner.cookie),
        Some(&edit),
    )
    .await;
    assert_eq!(u.status, 200, "{}", u.body);
    let stored = s
        .store
        .registrar(s.boot.demo.id, rid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.name, "Renamed");
    let sealed = stored.tls_key_pem.clone().unwrap();
    assert!(
        sealed.starts_with("v1:") && !sealed.contains("PRIVATE KEY"),
        "encrypted at rest"
    );
    let config = server::ServerConfig {
        secret_key: s.key.clone(),
        ..Default::default()
    };
    let state = server::AppState::new(s.store.clone(), config, None);
    assert_eq!(
        state.registrar_tls_key(&stored).unwrap().as_deref(),
        Some(good.key_pem.trim()),
        "the blank key on edit kept the stored key"
    );
}

/// Every role × every action that exists so far, through the API.
#[tokio::test]
async fn permission_matrix() {
    let s = TestServer::start("matrix").await;
    let pid = s.boot.demo.id;
    let base = format!("/api/v1/projects/{pid}/registrars");
    let body = json!({ "name": "R", "domain": "sip.example.com", "transport": "UDP" });
    let mut sessions = Vec::new();
    for role in [Role::Viewer, Role::Tester, Role::Editor, Role::Admin] {
        s.add_user(&format!("{}@example.com", role.as_str()), role)
            .await;
        sessions.push((
            role,
            sign_in(
                s.addr,
                &format!("{}@example.com", role.as_str()),
                common::PASSWORD,
            )
            .await,
        ));
    }
    sessions.push((
        Role::Owner,
        sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await,
    ));

    let seed = api(
        s.addr,
        "POST",
        &base,
        &Auth::Cookie(&sessions[4].1.cookie),
        Some(&body),
    )
    .await;
    let seed_id = seed.json()["data"]["id"].as_i64().unwrap();

    let mut table = Vec::new();
    for (role, sess) in &sessions {
        let c = Auth::Cookie(&sess.cookie);
        let list = api(s.addr, "GET", &base, &c, None).await.status;
        let view = api(s.addr, "GET", &format!("{base}/{seed_id}"), &c, None)
            .await
            .status;
        let create = api(s.addr, "POST", &base, &c, Some(&body)).await;
        let update = api(s.addr, "PUT", &format!("{base}/{seed_id}"), &c, Some(&body))
            .await
            .status;
        let delete = match create.json()["data"]["id"].as_i64() {
            Some(id) => {
                api(s.addr, "DELETE", &format!("{base}/{id}"), &c, None)
                    .await
                    .status
            }
            None => {
                api(s.addr, "DELETE", &format!("{base}/{seed_id}"), &c, None)
                    .await
                    .status
            }
        };
        let keys = api(
            s.addr,
            "GET",
            &format!("/api/v1/projects/{pid}/api-keys"),
            &c,
            None,
        )
        .await
        .status;
        let new_key = api(
            s.addr,
            "POST",
            &format!("/api/v1/projects/{pid}/api-keys"),
            &c,
            Some(&json!({ "name": "k" })),
        )
        .await
        .status;
        let new_project = api(
            s.addr,
            "POST",
            "/api/v1/projects",
            &c,
            Some(&json!({ "name": format!("P {}", role.as_str()) })),
        )
        .await
        .status;
        let accounts = format!("{base}/{seed_id}/accounts");
        let list_accounts = api(s.addr, "GET", &accounts, &c, None).await.status;
        let user = format!("u-{}", role.as_str());
        let add = api(
            s.addr,
            "POST",
            &accounts,
            &c,
            Some(&json!({ "username": user, "password": "pw" })),
        )
        .await;
        let bulk = api(
            s.addr,
            "POST",
            &format!("{accounts}/bulk"),
            &c,
            Some(&json!({ "csv": format!("b-{}-1,pw\nb-{}-2,pw", role.as_str(), role.as_str()) })),
        )
        .await
        .status;
        let del_account = match add.json()["data"]["id"].as_i64() {
            Some(id) => {
                api(s.addr, "DELETE", &format!("{accounts}/{id}"), &c, None)
                    .await
                    .status
            }
            None => {
                api(s.addr, "DELETE", &format!("{accounts}/1"), &c, None)
                    .await
                    .status
            }
        };
        table.push((
            *role,
            [
                list,
                view,
                create.status,
                update,
                delete,
                keys,
                new_key,
                new_project,
                list_accounts,
                add.status,
                bulk,
                del_account,
            ],
        ));
    }
    // Columns: registrars list, view, create, update, delete; API keys list, create;
    // project create; SIP accounts list, add, bulk add, delete.
    let expected = vec![
        (
            Role::Viewer,
            [200, 200, 403, 403, 403, 403, 403, 403, 200, 403, 403, 403],
        ),
        (
            Role::Tester,
            [200, 200, 403, 403, 403, 403, 403, 403, 200, 403, 403, 403],
        ),
        (
            Role::Editor,
            [200, 200, 201, 200, 200, 200, 201, 403, 200, 201, 201, 200],
        ),
        (
            Role::Admin,
            [200, 200, 201, 200, 200, 200, 201, 201, 200, 201, 201, 200],
        ),
        (
            Role::Owner,
            [200, 200, 201, 200, 200, 200, 201, 201, 200, 201, 201, 200],
        ),
    ];
    assert_eq!(table, expected);

    // A 403 says which role is needed.
    let v = api(
        s.addr,
        "POST",
        &base,
        &Auth::Cookie(&sessions[0].1.cookie),
        Some(&body),
    )
    .await
    .json();
    assert_eq!(
        v["error"],
        json!({ "code": "FORBIDDEN", "message": "this action needs the Editor role or higher" })
    );

    // A key carries its creator's role, and never more than the creator's current role.
    let editor = &sessions[2].1;
    let key = make_key(&s, &editor.cookie, pid, "editor key").await;
    assert_eq!(
        api(s.addr, "POST", &base, &Auth::Key(&key), Some(&body))
            .await
            .status,
        201
    );
    let editor_user = s
        .store
        .user_by_email("editor@example.com")
        .await
        .unwrap()
        .unwrap();
    s.store
        .set_member(s.boot.org.id, editor_user.id, Role::Viewer)
        .await
        .unwrap();
    assert_eq!(
        api(s.addr, "POST", &base, &Auth::Key(&key), Some(&body))
            .await
            .status,
        403
    );
    assert_eq!(
        api(s.addr, "GET", &base, &Auth::Key(&key), None)
            .await
            .status,
        200
    );
    // Keys cannot mint keys.
    s.store
        .set_member(s.boot.org.id, editor_user.id, Role::Editor)
        .await
        .unwrap();
    let r = api(
        s.addr,
        "POST",
        &format!("/api/v1/projects/{pid}/api-keys"),
        &Auth::Key(&key),
        Some(&json!({ "name": "x" })),
    )
    .await;
    assert_eq!(r.status, 403);

    // Outsiders (no membership) get 404 for the project, for every role-gated action.
    let outsider = s
        .store
        .create_user(
            "out@example.com",
            "Out",
            &server::auth::hash_password(common::PASSWORD).unwrap(),
        )
        .await
        .unwrap();
    let org2 = s.store.create_organization("Elsewhere").await.unwrap();
    s.store
        .set_member(org2.id, outsider.id, Role::Owner)
        .await
        .unwrap();
    let out = sign_in(s.addr, "out@example.com", common::PASSWORD).await;
    for (m, path, b) in [
        ("GET", base.clone(), None),
        ("POST", base.clone(), Some(&body)),
        ("PUT", format!("{base}/{seed_id}"), Some(&body)),
        ("DELETE", format!("{base}/{seed_id}"), None),
        (
            "POST",
            format!("/api/v1/projects/{pid}/api-keys"),
            Some(&body),
        ),
    ] {
        assert_eq!(
            api(s.addr, m, &path, &Auth::Cookie(&out.cookie), b)
                .await
                .status,
            404,
            "{m} {path}"
        );
    }
}

#[tokio::test]
async fn api_requests_are_rate_limited_per_credential() {
    let dir = common::tempdir("apilimit");
    let store = store::Store::connect(&format!("sqlite://{}/db.sqlite?mode=rwc", dir.display()))
        .await
        .unwrap();
    let boot = server::create_owner(&store, common::OWNER_EMAIL, common::PASSWORD, "Acme")
        .await
        .unwrap();
    let config = server::ServerConfig {
        api_requests_per_minute: 5,
        ..Default::default()
    };
    let (addr, task) = common::serve(server::AppState::new(store, config, None)).await;
    let owner = sign_in(addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let path = format!("/api/v1/projects/{}/registrars", boot.demo.id);
    for _ in 0..5 {
        assert_eq!(
            api(addr, "GET", &path, &Auth::Cookie(&owner.cookie), None)
                .await
                .status,
            200
        );
    }
    let r = api(addr, "GET", &path, &Auth::Cookie(&owner.cookie), None).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "RATE_LIMITED");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Another credential has its own budget; the web UI is not counted.
    let other = sign_in(addr, common::OWNER_EMAIL, common::PASSWORD).await;
    assert_eq!(
        api(addr, "GET", &path, &Auth::Cookie(&other.cookie), None)
            .await
            .status,
        200
    );
    assert_eq!(
        http(
            addr,
            "GET",
            "/projects/demo/registrars",
            &[("Cookie", &owner.cookie)],
            ""
        )
        .await
        .status,
        200
    );
    task.abort();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sip_accounts_one_bulk_and_range_with_encrypted_passwords() {
    let s = TestServer::start("accounts").await;
    let owner = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let c = Auth::Cookie(&owner.cookie);
    let pid = s.boot.demo.id;
    let reg = api(
        s.addr,
        "POST",
        &format!("/api/v1/projects/{pid}/registrars"),
        &c,
        Some(&json!({ "name": "PBX", "domain": "pbx.corp.net", "transport": "UDP" })),
    )
    .await
    .json()["data"]["id"]
        .as_i64()
        .unwrap();
    let base = format!("/api/v1/projects/{pid}/registrars/{reg}/accounts");

    // One account: the password is never returned, and is stored encrypted.
    let one = api(
        s.addr,
        "POST",
        &base,
        &c,
        Some(&json!({ "username": "1001", "password": "pw-1001", "realm": "pbx.corp.net" })),
    )
    .await;
    assert_eq!(one.status, 201, "{}", one.body);
    assert!(!one.body.contains("pw-1001"));
    assert_eq!(one.json()["data"]["hasPassword"], true);
    let stored = s.store.sip_accounts(reg).await.unwrap();
    assert!(
        stored[0].password_enc.starts_with("v1:") && !stored[0].password_enc.contains("pw-1001")
    );
    let dup = api(
        s.addr,
        "POST",
        &base,
        &c,
        Some(&json!({ "username": "1001", "password": "x" })),
    )
    .await;
    assert_eq!(
        (dup.status, dup.json()["error"]["code"].clone()),
        (409, json!("CONFLICT"))
    );
    let bad = api(
        s.addr,
        "POST",
        &base,
        &c,
        Some(&json!({ "username": "a b", "password": "x" })),
    )
    .await;
    assert_eq!(bad.json()["error"]["fields"][0]["field"], "username");

    // CSV: errors per line, nothing saved; then a good batch.
    let csv_bad = "1002,pw2\n1003\n1004,pw4,realm with space\n";
    let e = api(
        s.addr,
        "POST",
        &format!("{base}/bulk"),
        &c,
        Some(&json!({ "csv": csv_bad })),
    )
    .await;
    assert_eq!(e.status, 422);
    let msgs: Vec<String> = e.json()["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs[0].starts_with("line 2: expected username,password"),
        "{msgs:?}"
    );
    assert!(msgs[1].starts_with("line 3: realm"), "{msgs:?}");
    assert_eq!(
        s.store.count_sip_accounts(reg).await.unwrap(),
        1,
        "nothing saved"
    );
    let clash = api(
        s.addr,
        "POST",
        &format!("{base}/bulk"),
        &c,
        Some(&json!({ "csv": "1005,a\n1001,b\n" })),
    )
    .await;
    assert_eq!(clash.status, 409);
    assert!(
        clash.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1001")
    );
    assert_eq!(s.store.count_sip_accounts(reg).await.unwrap(), 1);
    let ok = api(
        s.addr,
        "POST",
        &format!("{base}/bulk"),
        &c,
        Some(&json!({ "csv": "# user,pass\n1002,pw2\n1003,pw3,,2003\n" })),
    )
    .await;
    assert_eq!(
        (ok.status, ok.json()["data"]["created"].clone()),
        (201, json!(2))
    );

    // Range with a password pattern.
    let range = json!({ "range": { "from": 1, "to": 100, "width": 3, "usernameTemplate": "load{n}", "passwordTemplate": "s3cret{n}" } });
    let r = api(s.addr, "POST", &format!("{base}/bulk"), &c, Some(&range)).await;
    assert_eq!(
        (r.status, r.json()["data"]["created"].clone()),
        (201, json!(100))
    );
    let list = api(s.addr, "GET", &format!("{base}?perPage=200"), &c, None)
        .await
        .json();
    assert_eq!(list["meta"]["pagination"]["total"], 103);
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert_eq!(&names[..5], &["1001", "1002", "1003", "load001", "load002"]);

    // Every stored password decrypts to what was entered, with the server's key only.
    let config = server::ServerConfig {
        secret_key: s.key.clone(),
        ..Default::default()
    };
    let state = server::AppState::new(s.store.clone(), config, None);
    let all = s.store.sip_accounts(reg).await.unwrap();
    let a42 = all.iter().find(|a| a.username == "load042").unwrap();
    assert_eq!(state.sip_password(a42).unwrap(), "s3cret042");
    let first = all.iter().find(|a| a.username == "1001").unwrap();
    assert_eq!(state.sip_password(first).unwrap(), "pw-1001");
    let stranger = server::AppState::new(s.store.clone(), server::ServerConfig::default(), None);
    assert!(
        stranger.sip_password(a42).is_err(),
        "another key cannot decrypt"
    );

    // Pools: every account or a chosen few, with a strategy; foreign ids are refused.
    let pools = format!("/api/v1/projects/{pid}/registrars/{reg}/pools");
    let p = api(
        s.addr,
        "POST",
        &pools,
        &c,
        Some(&json!({ "name": "load", "strategy": "round_robin", "allAccounts": true })),
    )
    .await;
    assert_eq!(p.status, 201, "{}", p.body);
    assert_eq!(
        p.json()["data"]["accountIds"].as_array().unwrap().len(),
        103
    );
    assert_eq!(p.json()["data"]["strategy"], "round_robin");
    let few: Vec<i64> = all.iter().take(2).map(|a| a.id).collect();
    let p2 = api(
        s.addr,
        "POST",
        &pools,
        &c,
        Some(&json!({ "name": "two", "strategy": "least_recently_used", "accountIds": few })),
    )
    .await;
    assert_eq!(p2.status, 201);
    let bad = api(
        s.addr,
        "POST",
        &pools,
        &c,
        Some(&json!({ "name": "x", "strategy": "fifo", "accountIds": [999_999] })),
    )
    .await;
    assert_eq!(bad.json()["error"]["fields"][0]["field"], "strategy");
    let bad = api(
        s.addr,
        "POST",
        &pools,
        &c,
        Some(&json!({ "name": "x", "accountIds": [999_999] })),
    )
    .await;
    assert_eq!(
        (
            bad.status,
            bad.json()["error"]["fields"][0]["field"].clone()
        ),
        (422, json!("accountIds"))
    );
    let dup = api(s.addr, "POST", &pools, &c, Some(&json!({ "name": "two" }))).await;
    assert_eq!(dup.status, 409);
    let p2id = p2.json()["data"]["id"].as_i64().unwrap();
    let u = api(
        s.addr,
        "PUT",
        &format!("{pools}/{p2id}"),
        &c,
        Some(&json!({ "name": "three", "strategy": "random", "accountIds": [all[2].id] })),
    )
    .await;
    assert_eq!(u.json()["data"]["accountIds"], json!([all[2].id]));
    let listed = api(s.addr, "GET", &pools, &c, None).await.json();
    assert_eq!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["load", "three"]
    );
    assert_eq!(
        api(s.addr, "DELETE", &format!("{pools}/{p2id}"), &c, None)
            .await
            .status,
        200
    );
    assert_eq!(
        api(s.addr, "GET", &format!("{pools}/{p2id}"), &c, None)
            .await
            .status,
        404
    );

    // Delete one; the built-in registrar has no accounts.
    let id = list["data"][0]["id"].as_i64().unwrap();
    assert_eq!(
        api(s.addr, "DELETE", &format!("{base}/{id}"), &c, None)
            .await
            .status,
        200
    );
    assert_eq!(
        api(s.addr, "DELETE", &format!("{base}/{id}"), &c, None)
            .await
            .status,
        404
    );
    let builtin = s
        .store
        .registrars(pid)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == store::RegistrarKind::Builtin)
        .unwrap();
    let b = api(
        s.addr,
        "GET",
        &format!("/api/v1/projects/{pid}/registrars/{}/accounts", builtin.id),
        &c,
        None,
    )
    .await;
    assert_eq!(
        (b.status, b.json()["error"]["code"].clone()),
        (409, json!("BUILTIN_NO_ACCOUNTS"))
    );
}
