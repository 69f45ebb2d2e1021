//! The server over PostgreSQL (a private cluster started by the test): sign-in, registrar
//! create/list/update/delete through the API and the form. The store's own suite covers every
//! query on both backends; this proves the server wiring on PostgreSQL end to end.

mod common;
#[path = "../../store/tests/pg/mod.rs"]
mod pg;

use common::{Auth, TestServer, api, form, http, sign_in};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrars_on_postgres() {
    let Some(cluster) = pg::Cluster::start() else {
        return;
    };
    let store = store::Store::connect(&cluster.url()).await.unwrap();
    assert_eq!(store.backend(), store::Backend::Postgres);
    let s = TestServer::on(store, common::tempdir("pg")).await;
    let o = sign_in(s.addr, common::OWNER_EMAIL, common::PASSWORD).await;
    let base = format!("/api/v1/projects/{}/registrars", s.boot.demo.id);

    let r = api(
        s.addr,
        "POST",
        &base,
        &Auth::Cookie(&o.cookie),
        Some(&json!({ "name": "PG", "domain": "sip.example.com", "transport": "WSS" })),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json()["data"]["registrationUri"],
        "sip:sip.example.com:443;transport=wss"
    );
    let id = r.json()["data"]["id"].as_i64().unwrap();

    let page = http(
        s.addr,
        "POST",
        &format!("/projects/demo/registrars/{id}"),
        &[
            ("Cookie", &o.cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &form(&[
            ("csrf", &o.csrf),
            ("name", "PG"),
            ("domain", "10.0.0.50"),
            ("transport", "UDP"),
            ("port", "5080"),
        ]),
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let list = api(s.addr, "GET", &base, &Auth::Cookie(&o.cookie), None)
        .await
        .json();
    let uris: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["registrationUri"].as_str().unwrap())
        .collect();
    assert_eq!(
        uris,
        vec![
            "sip:127.0.0.1:5060;transport=udp",
            "sip:10.0.0.50:5080;transport=udp"
        ]
    );
    assert_eq!(
        api(
            s.addr,
            "DELETE",
            &format!("{base}/{id}"),
            &Auth::Cookie(&o.cookie),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(s.store.registrars(s.boot.demo.id).await.unwrap().len(), 1);
    drop(s);
    drop(cluster);
}
