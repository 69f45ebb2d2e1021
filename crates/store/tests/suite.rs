//! The store test suite, run on SQLite (a temporary file in WAL mode) and on PostgreSQL (a
//! private cluster on a free loopback port, started and stopped by the test).

mod pg;

use store::rotation::{NotEnoughAccounts, Strategy};
use store::{
    RegistrarInput, RegistrarKind, Role, SipAccountInput, Store, StoreError, TlsVerify, Transport,
};

fn tls_input(name: &str) -> RegistrarInput {
    RegistrarInput {
        name: name.to_string(),
        domain: "pbx.corp.net".to_string(),
        port: None,
        transport: Transport::Tls,
        outbound_proxy: Some("proxy.example.com:5060".to_string()),
        tls_verify: TlsVerify::Custom,
        tls_ca_pem: Some(
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_string(),
        ),
        tls_cert_pem: None,
        tls_key_pem: None,
    }
}

/// Everything the store does, asserted against one fresh database.
async fn suite(store: &Store) {
    // Migrations ran exactly once and are recorded.
    assert_eq!(store.applied_migrations().await.unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(store.count_users().await.unwrap(), 0);

    // First start.
    let boot = store
        .bootstrap(
            "Owner@Example.com",
            "Olive Owner",
            "$argon2id$fake",
            "Acme Telecom",
        )
        .await
        .unwrap();
    assert_eq!(boot.user.email, "owner@example.com");
    assert_eq!(boot.org.slug, "acme-telecom");
    assert_eq!(boot.demo.slug, "demo");
    assert_eq!(store.count_users().await.unwrap(), 1);
    let regs = store.registrars(boot.demo.id).await.unwrap();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].kind, RegistrarKind::Builtin);
    assert_eq!(
        regs[0].registration_uri(),
        "sip:127.0.0.1:5060;transport=udp"
    );

    // Users: lookup is case-insensitive, duplicates are a conflict.
    let found = store
        .user_by_email(" OWNER@example.COM ")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, boot.user.id);
    assert_eq!(found.password_hash, "$argon2id$fake");
    assert!(matches!(
        store.create_user("owner@example.com", "Again", "h").await,
        Err(StoreError::Conflict("user"))
    ));
    let viewer = store
        .create_user("viewer@example.com", "Vic", "h2")
        .await
        .unwrap();
    assert_eq!(store.user(viewer.id).await.unwrap().unwrap().name, "Vic");
    assert!(store.user(viewer.id + 1000).await.unwrap().is_none());

    // Memberships and roles.
    assert_eq!(
        store.member_role(boot.org.id, boot.user.id).await.unwrap(),
        Some(Role::Owner)
    );
    assert_eq!(
        store.member_role(boot.org.id, viewer.id).await.unwrap(),
        None
    );
    store
        .set_member(boot.org.id, viewer.id, Role::Viewer)
        .await
        .unwrap();
    store
        .set_member(boot.org.id, viewer.id, Role::Tester)
        .await
        .unwrap();
    assert_eq!(
        store.member_role(boot.org.id, viewer.id).await.unwrap(),
        Some(Role::Tester)
    );
    let members = store.members(boot.org.id).await.unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| (m.email.as_str(), m.role))
            .collect::<Vec<_>>(),
        vec![
            ("owner@example.com", Role::Owner),
            ("viewer@example.com", Role::Tester)
        ]
    );
    let other_org = store.create_organization("Acme Telecom").await.unwrap();
    assert_eq!(
        store.organization(other_org.id).await.unwrap(),
        Some(other_org.clone())
    );
    assert_eq!(store.organization(other_org.id + 100).await.unwrap(), None);
    assert_eq!(other_org.slug, "acme-telecom-2");
    store
        .set_member(other_org.id, viewer.id, Role::Admin)
        .await
        .unwrap();
    let ms = store.memberships(viewer.id).await.unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].0.id, boot.org.id);
    assert_eq!(ms[1].1, Role::Admin);

    // Projects: slugs generated once, unique per organization, kept on rename.
    let p1 = store
        .create_project(boot.org.id, "Staging PBX")
        .await
        .unwrap();
    let p2 = store
        .create_project(boot.org.id, "Staging  PBX!")
        .await
        .unwrap();
    let p3 = store
        .create_project(other_org.id, "Staging PBX")
        .await
        .unwrap();
    assert_eq!(
        (p1.slug.as_str(), p2.slug.as_str(), p3.slug.as_str()),
        ("staging-pbx", "staging-pbx-2", "staging-pbx")
    );
    assert!(store.rename_project(p1.id, "Renamed").await.unwrap());
    let p1b = store.project(p1.id).await.unwrap().unwrap();
    assert_eq!(
        (p1b.name.as_str(), p1b.slug.as_str()),
        ("Renamed", "staging-pbx")
    );
    assert_eq!(
        store
            .project_by_slug(boot.org.id, "staging-pbx-2")
            .await
            .unwrap()
            .unwrap()
            .id,
        p2.id
    );
    assert!(
        store
            .project_by_slug(other_org.id, "staging-pbx-2")
            .await
            .unwrap()
            .is_none()
    );
    let names: Vec<String> = store
        .projects(boot.org.id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["Demo", "Renamed", "Staging  PBX!"]);

    // Sessions expire and log out.
    store
        .create_session("h-live", viewer.id, "csrf1", 2_000)
        .await
        .unwrap();
    store
        .create_session("h-old", viewer.id, "csrf2", 1_000)
        .await
        .unwrap();
    let s = store.session("h-live", 1_500).await.unwrap().unwrap();
    assert_eq!((s.user_id, s.csrf_token.as_str()), (viewer.id, "csrf1"));
    assert!(store.session("h-old", 1_500).await.unwrap().is_none());
    assert_eq!(store.purge_sessions(1_500).await.unwrap(), 1);
    store.delete_session("h-live").await.unwrap();
    assert!(store.session("h-live", 1_500).await.unwrap().is_none());

    // API keys: looked up by hash, listed, revoked.
    let k = store
        .create_api_key(
            p1.id,
            "ci",
            "smk_abcd",
            "hash-1",
            Role::Editor,
            boot.user.id,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_api_key(p1.id, "dup", "smk_x", "hash-1", Role::Viewer, boot.user.id)
            .await,
        Err(StoreError::Conflict("api key"))
    ));
    let got = store.api_key_by_hash("hash-1").await.unwrap().unwrap();
    assert_eq!(
        (got.id, got.role, got.project_id),
        (k.id, Role::Editor, p1.id)
    );
    assert_eq!(store.api_keys(p1.id).await.unwrap().len(), 1);
    assert!(
        !store.revoke_api_key(p2.id, k.id).await.unwrap(),
        "another project's key"
    );
    assert!(store.revoke_api_key(p1.id, k.id).await.unwrap());
    assert!(
        !store.revoke_api_key(p1.id, k.id).await.unwrap(),
        "already revoked"
    );
    assert!(store.api_key_by_hash("hash-1").await.unwrap().is_none());
    assert!(store.api_keys(p1.id).await.unwrap()[0].revoked_at.is_some());

    // Registrars: create, read back every field, update, scope by project, delete.
    let r = store
        .create_registrar(p1.id, &tls_input("Production Asterisk"))
        .await
        .unwrap();
    assert_eq!(r.kind, RegistrarKind::Custom);
    assert_eq!(r.registration_uri(), "sip:pbx.corp.net:5061;transport=tls");
    assert_eq!(r.to_input(), tls_input("Production Asterisk"));
    let mut edit = tls_input("Staging FreeSWITCH");
    edit.transport = Transport::Tcp;
    edit.port = Some(5080);
    edit.domain = "10.0.0.50".to_string();
    edit.outbound_proxy = None;
    edit.tls_ca_pem = None;
    edit.tls_verify = TlsVerify::System;
    let r2 = store
        .update_registrar(p1.id, r.id, &edit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r2.to_input(), edit);
    assert_eq!(r2.registration_uri(), "sip:10.0.0.50:5080;transport=tcp");
    assert!(r2.updated_at >= r.updated_at);
    assert!(
        store
            .update_registrar(p2.id, r.id, &edit)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.registrar(p2.id, r.id).await.unwrap().is_none());
    store
        .create_registrar(p1.id, &tls_input("Another"))
        .await
        .unwrap();
    let listed: Vec<String> = store
        .registrars(p1.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(listed, vec!["Another", "Staging FreeSWITCH"]);
    assert!(!store.delete_registrar(p2.id, r.id).await.unwrap());
    assert!(store.delete_registrar(p1.id, r.id).await.unwrap());
    assert!(store.registrar(p1.id, r.id).await.unwrap().is_none());
    assert_eq!(store.registrars(p1.id).await.unwrap().len(), 1);

    // Access: all projects, specific projects, per-project overrides.
    let scoped = store
        .create_user("scoped@example.com", "Sam", "h3")
        .await
        .unwrap();
    store
        .set_member(boot.org.id, scoped.id, Role::Viewer)
        .await
        .unwrap();
    assert_eq!(
        store.project_role(p1.id, scoped.id).await.unwrap(),
        Some(Role::Viewer)
    );
    assert_eq!(
        store
            .accessible_projects(boot.org.id, scoped.id)
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        store
            .set_member_scope(boot.org.id, scoped.id, false)
            .await
            .unwrap()
    );
    assert_eq!(store.project_role(p1.id, scoped.id).await.unwrap(), None);
    assert!(
        store
            .accessible_projects(boot.org.id, scoped.id)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .set_project_role(p2.id, scoped.id, Some(Role::Editor))
        .await
        .unwrap();
    assert_eq!(
        store.project_role(p2.id, scoped.id).await.unwrap(),
        Some(Role::Editor)
    );
    let visible: Vec<i64> = store
        .accessible_projects(boot.org.id, scoped.id)
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(visible, vec![p2.id]);
    assert_eq!(
        store.project_overrides(p2.id).await.unwrap(),
        vec![(scoped.id, Role::Editor)]
    );
    // Admins see everything whatever their scope; an override still applies.
    store
        .set_member(boot.org.id, scoped.id, Role::Admin)
        .await
        .unwrap();
    assert_eq!(
        store.project_role(p1.id, scoped.id).await.unwrap(),
        Some(Role::Admin)
    );
    assert_eq!(
        store.project_role(p2.id, scoped.id).await.unwrap(),
        Some(Role::Editor)
    );
    store
        .set_project_role(p2.id, scoped.id, None)
        .await
        .unwrap();
    assert_eq!(
        store.project_role(p2.id, scoped.id).await.unwrap(),
        Some(Role::Admin)
    );
    assert_eq!(
        store.project_role(p3.id, scoped.id).await.unwrap(),
        None,
        "other organization"
    );
    let members = store.members(boot.org.id).await.unwrap();
    let sam = members.iter().find(|m| m.user_id == scoped.id).unwrap();
    assert!(!sam.all_projects);
    store
        .set_project_role(p2.id, scoped.id, Some(Role::Tester))
        .await
        .unwrap();
    assert!(store.remove_member(boot.org.id, scoped.id).await.unwrap());
    assert_eq!(store.project_role(p2.id, scoped.id).await.unwrap(), None);
    assert!(store.project_overrides(p2.id).await.unwrap().is_empty());
    assert!(!store.remove_member(boot.org.id, scoped.id).await.unwrap());

    // Invitations: open until used or expired; accepting creates the user and the access.
    let far = store::now_ms() + 3_600_000;
    let inv = store
        .create_invitation(
            boot.org.id,
            " New@Example.com ",
            Role::Tester,
            Some(p1.id),
            "inv-hash",
            boot.user.id,
            far,
        )
        .await
        .unwrap();
    assert_eq!(inv.email, "new@example.com");
    store
        .create_invitation(
            boot.org.id,
            "old@example.com",
            Role::Viewer,
            None,
            "old-hash",
            boot.user.id,
            1,
        )
        .await
        .unwrap();
    assert!(
        store
            .open_invitation("old-hash", store::now_ms())
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert_eq!(
        store
            .invitations(boot.org.id, store::now_ms())
            .await
            .unwrap()
            .len(),
        1
    );
    let open = store
        .open_invitation("inv-hash", store::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open, inv);
    let uid = store
        .accept_invitation(&open, None, Some(("Newbie", "h4")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.user(uid).await.unwrap().unwrap().email,
        "new@example.com"
    );
    assert_eq!(
        store.project_role(p1.id, uid).await.unwrap(),
        Some(Role::Tester)
    );
    assert_eq!(
        store.project_role(p2.id, uid).await.unwrap(),
        None,
        "invited to one project"
    );
    assert_eq!(
        store
            .accept_invitation(&open, Some(uid), None)
            .await
            .unwrap(),
        None,
        "used once"
    );
    assert!(
        store
            .open_invitation("inv-hash", store::now_ms())
            .await
            .unwrap()
            .is_none()
    );
    let inv2 = store
        .create_invitation(
            boot.org.id,
            "viewer@example.com",
            Role::Editor,
            None,
            "inv2",
            boot.user.id,
            far,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .accept_invitation(&inv2, Some(viewer.id), None)
            .await
            .unwrap(),
        Some(viewer.id)
    );
    assert_eq!(
        store.member_role(boot.org.id, viewer.id).await.unwrap(),
        Some(Role::Editor)
    );
    let inv3 = store
        .create_invitation(
            boot.org.id,
            "z@example.com",
            Role::Viewer,
            None,
            "inv3",
            boot.user.id,
            far,
        )
        .await
        .unwrap();
    assert!(
        !store
            .revoke_invitation(other_org.id, inv3.id)
            .await
            .unwrap(),
        "other organization"
    );
    assert!(store.revoke_invitation(boot.org.id, inv3.id).await.unwrap());
    assert!(
        store
            .open_invitation("inv3", store::now_ms())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store.revoke_invitation(boot.org.id, inv2.id).await.unwrap(),
        "accepted ones stay"
    );

    // SIP accounts: batches are all-or-nothing, usernames unique per registrar, deleted with
    // their registrar.
    let acc = |u: &str| SipAccountInput {
        username: u.to_string(),
        password_enc: format!("enc-{u}"),
        realm: (u == "1001").then(|| "pbx.corp.net".to_string()),
        extension: None,
    };
    let reg = store
        .create_registrar(p1.id, &tls_input("With accounts"))
        .await
        .unwrap();
    let added = store
        .add_sip_accounts(reg.id, &[acc("1002"), acc("1001")])
        .await
        .unwrap();
    assert_eq!(added.len(), 2);
    assert!(matches!(
        store
            .add_sip_accounts(reg.id, &[acc("1003"), acc("1001")])
            .await,
        Err(StoreError::Conflict("sip account"))
    ));
    assert!(matches!(
        store
            .add_sip_accounts(reg.id, &[acc("1004"), acc("1004")])
            .await,
        Err(StoreError::Conflict("sip account"))
    ));
    let listed = store.sip_accounts(reg.id).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|a| (
                a.username.as_str(),
                a.password_enc.as_str(),
                a.realm.as_deref()
            ))
            .collect::<Vec<_>>(),
        vec![
            ("1001", "enc-1001", Some("pbx.corp.net")),
            ("1002", "enc-1002", None)
        ]
    );
    assert_eq!(store.count_sip_accounts(reg.id).await.unwrap(), 2);
    assert!(
        store
            .delete_sip_account(reg.id, listed[0].id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_sip_account(reg.id, listed[0].id)
            .await
            .unwrap()
    );
    // Pools: a registrar's accounts only; draws follow the strategy and are recorded.
    let more: Vec<SipAccountInput> = ["1003", "1004", "1005"].iter().map(|u| acc(u)).collect();
    store.add_sip_accounts(reg.id, &more).await.unwrap();
    let all = store.sip_accounts(reg.id).await.unwrap();
    let ids: Vec<i64> = all.iter().map(|a| a.id).collect();
    assert_eq!(
        all.iter().map(|a| a.username.as_str()).collect::<Vec<_>>(),
        ["1002", "1003", "1004", "1005"]
    );
    let rr = store
        .create_pool(reg.id, "rr", Strategy::RoundRobin, &ids)
        .await
        .unwrap();
    assert_eq!(rr.account_ids, ids);
    assert!(matches!(
        store.create_pool(reg.id, "rr", Strategy::Random, &[]).await,
        Err(StoreError::Conflict("pool"))
    ));
    let other_reg = store
        .create_registrar(p1.id, &tls_input("Other"))
        .await
        .unwrap();
    let foreign = store
        .add_sip_accounts(other_reg.id, &[acc("9999")])
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_pool(reg.id, "bad", Strategy::Random, &[ids[0], foreign[0].id])
            .await,
        Err(StoreError::NotFound("sip account"))
    ));
    assert_eq!(
        store.account_pools(reg.id).await.unwrap().len(),
        1,
        "nothing saved"
    );
    let names = |v: Vec<store::SipAccount>| v.into_iter().map(|a| a.username).collect::<Vec<_>>();
    assert_eq!(
        names(
            store
                .draw_accounts(reg.id, rr.id, 3, 0, 1_000)
                .await
                .unwrap()
        ),
        ["1002", "1003", "1004"]
    );
    assert_eq!(
        names(
            store
                .draw_accounts(reg.id, rr.id, 3, 0, 2_000)
                .await
                .unwrap()
        ),
        ["1005", "1002", "1003"]
    );
    assert!(matches!(
        store.draw_accounts(reg.id, rr.id, 5, 0, 3_000).await,
        Err(StoreError::NotEnoughAccounts(NotEnoughAccounts {
            have: 4,
            need: 5
        }))
    ));
    // LRU: last uses are 1002, 1003, 1005 at 2000 and 1004 at 1000 (the refused draw recorded nothing).
    let lru = store
        .update_pool(reg.id, rr.id, "lru", Strategy::LeastRecentlyUsed, &ids)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lru.name, "lru");
    let first = names(
        store
            .draw_accounts(reg.id, lru.id, 1, 0, 4_000)
            .await
            .unwrap(),
    );
    assert_eq!(first, ["1004"], "the account unused for the longest time");
    let random = store
        .create_pool(reg.id, "dice", Strategy::Random, &ids[..3])
        .await
        .unwrap();
    let a = names(
        store
            .draw_accounts(reg.id, random.id, 2, 7, 5_000)
            .await
            .unwrap(),
    );
    let b = names(
        store
            .draw_accounts(reg.id, random.id, 2, 7, 5_000)
            .await
            .unwrap(),
    );
    assert_eq!(a, b, "seeded");
    assert_eq!(
        store
            .account_pools(reg.id)
            .await
            .unwrap()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["dice", "lru"]
    );
    // Deleting an account removes it from pools; deleting a pool keeps the accounts.
    assert!(store.delete_sip_account(reg.id, ids[0]).await.unwrap());
    assert_eq!(
        store
            .account_pool(reg.id, lru.id)
            .await
            .unwrap()
            .unwrap()
            .account_ids,
        ids[1..].to_vec()
    );
    assert!(store.delete_pool(reg.id, random.id).await.unwrap());
    assert!(!store.delete_pool(reg.id, random.id).await.unwrap());
    assert_eq!(store.count_sip_accounts(reg.id).await.unwrap(), 3);

    assert!(store.delete_registrar(p1.id, reg.id).await.unwrap());
    assert_eq!(
        store.count_sip_accounts(reg.id).await.unwrap(),
        0,
        "cascade"
    );
    assert!(
        store.account_pools(reg.id).await.unwrap().is_empty(),
        "cascade"
    );
    assert!(store.delete_registrar(p1.id, other_reg.id).await.unwrap());

    // Concurrent writers do not fail (SQLite: WAL + busy timeout).
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = store.clone();
        let pid = p2.id;
        tasks.push(tokio::spawn(async move {
            s.create_registrar(pid, &tls_input(&format!("r{i:02}")))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.registrars(p2.id).await.unwrap().len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_on_sqlite() {
    let dir = tempdir("sqlite");
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.display());
    let store = Store::connect(&url).await.unwrap();
    suite(&store).await;
    store.close().await;
    // A second connect re-runs no migration and finds the data.
    let again = Store::connect(&url).await.unwrap();
    assert_eq!(again.applied_migrations().await.unwrap(), vec![1, 2, 3, 4]);
    // Owner, viewer, scoped and the invited user.
    assert_eq!(again.count_users().await.unwrap(), 4);
    again.close().await;
    let header = std::fs::read(dir.join("t.db")).unwrap();
    // SQLite file header bytes 18 and 19 are 2 in WAL mode (1 in rollback mode).
    assert_eq!((header[18], header[19]), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_on_postgres() {
    let Some(cluster) = pg::Cluster::start() else {
        return;
    };
    let store = Store::connect(&cluster.url()).await.unwrap();
    suite(&store).await;
    store.close().await;
    let again = Store::connect(&cluster.url()).await.unwrap();
    assert_eq!(again.applied_migrations().await.unwrap(), vec![1, 2, 3, 4]);
    again.close().await;
}

#[tokio::test]
async fn bad_urls_are_refused() {
    assert!(matches!(
        Store::connect("mysql://localhost/x").await,
        Err(StoreError::UnsupportedUrl)
    ));
    let err = Store::connect("sqlite:///nonexistent-dir-sipmeter/x/y.db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err}");
}

/// A temporary directory removed on drop, even when the test fails.
struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!(
        "sipmeter-store-{tag}-{}-{}",
        std::process::id(),
        store::now_ms()
    ));
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}
