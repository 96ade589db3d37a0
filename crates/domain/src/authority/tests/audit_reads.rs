//! Reading the audit trail: tenants, filters and pages against the store.
use super::*;
use crate::audit_read::ListAuditEventsRequest;

fn everything() -> ListAuditEventsRequest {
    ListAuditEventsRequest::default()
}

#[tokio::test]
async fn a_limited_caller_reads_only_its_tenants_events() {
    let fx = Fixture::new().await;
    fx.issue("acme", "alice").await;
    fx.issue("globex", "gina").await;
    let acme = limited_to("acme-support", &["acme"]);

    let page = fx
        .authority
        .list_audit_events(&acme, everything())
        .await
        .unwrap();
    let tenants: Vec<&str> = page.events.iter().map(|e| e.tenant_id.as_str()).collect();
    assert_eq!(tenants, ["acme"]);
    let refused = fx
        .authority
        .list_audit_events(
            &acme,
            ListAuditEventsRequest {
                tenant_id: "globex".into(),
                ..everything()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::TenantNotPermitted), "{refused:?}");
    // Every tenant's, and the key rotation of no tenant.
    let all = fx
        .authority
        .list_audit_events(&anonymous(), everything())
        .await
        .unwrap();
    let kinds: Vec<&str> = all.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["issued", "issued", "key_rotated"]);
}

#[tokio::test]
async fn pages_follow_each_other_and_a_down_store_is_unavailable() {
    let fx = Fixture::new().await;
    for i in 0..5 {
        fx.issue("acme", &format!("user-{i}")).await;
        fx.advance(1);
    }
    let mut request = ListAuditEventsRequest {
        page_size: 2,
        ..everything()
    };
    let mut ids = Vec::new();
    loop {
        let page = fx
            .authority
            .list_audit_events(&anonymous(), request.clone())
            .await
            .unwrap();
        ids.extend(page.events.iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(ids, [6, 5, 4, 3, 2, 1]);

    fx.store.set_unavailable(true);
    let err = fx
        .authority
        .list_audit_events(&anonymous(), everything())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}
