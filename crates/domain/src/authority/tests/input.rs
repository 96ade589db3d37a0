//! Requests refused before the store.
use super::*;

#[tokio::test]
async fn invalid_requests_are_refused_before_the_store() {
    let fx = Fixture::new().await;
    fx.store.set_unavailable(true);
    let a = anonymous();
    for (tenant, subject) in [("", "alice"), ("a b", "alice"), ("acme", "")] {
        assert_err!(
            fx.try_issue(&a, tenant, subject).await,
            Error::InvalidArgument { .. }
        );
    }
    let bad_ip = fx
        .authority
        .issue(
            &a,
            IssueRequest {
                tenant_id: "acme".into(),
                subject: "alice".into(),
                audience: "api".into(),
                device: Device {
                    ip: "not an ip".into(),
                    ..Device::default()
                },
                ..IssueRequest::default()
            },
        )
        .await;
    assert_err!(
        bad_ip,
        Error::InvalidArgument {
            field: "device.ip",
            ..
        }
    );
    fx.store.set_unavailable(false);
    assert_eq!(fx.store.sessions(), []);
}
