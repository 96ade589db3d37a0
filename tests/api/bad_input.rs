//! Every RPC answers bad input with INVALID_ARGUMENT naming the field.
use tonic::Code;

use crate::common::*;
use token_authority::proto::{self as pb, revoke_request::Target};

fn long(n: usize) -> String {
    "x".repeat(n)
}

async fn issue_rejects_bad_fields(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client();
    let base = issue_request("acme", "alice");
    let claim = |key: &str, value: prost_types::value::Kind| {
        Some(prost_types::Struct {
            fields: [(key.to_string(), prost_types::Value { kind: Some(value) })].into(),
        })
    };
    use prost_types::value::Kind;
    let device = |f: fn(&mut pb::Device)| {
        let mut d = base.device.clone().unwrap();
        f(&mut d);
        Some(d)
    };
    let cases: Vec<(&str, pb::IssueRequest)> = vec![
        (
            "tenant_id",
            pb::IssueRequest {
                tenant_id: "".into(),
                ..base.clone()
            },
        ),
        (
            "tenant_id",
            pb::IssueRequest {
                tenant_id: "has space".into(),
                ..base.clone()
            },
        ),
        (
            "tenant_id",
            pb::IssueRequest {
                tenant_id: long(129),
                ..base.clone()
            },
        ),
        (
            "subject",
            pb::IssueRequest {
                subject: "".into(),
                ..base.clone()
            },
        ),
        (
            "subject",
            pb::IssueRequest {
                subject: "a\nb".into(),
                ..base.clone()
            },
        ),
        (
            "subject",
            pb::IssueRequest {
                subject: long(257),
                ..base.clone()
            },
        ),
        (
            "audience",
            pb::IssueRequest {
                audience: "".into(),
                ..base.clone()
            },
        ),
        (
            "scopes",
            pb::IssueRequest {
                scopes: vec!["two words".into()],
                ..base.clone()
            },
        ),
        (
            "scopes",
            pb::IssueRequest {
                scopes: vec!["".into()],
                ..base.clone()
            },
        ),
        (
            "scopes",
            pb::IssueRequest {
                scopes: (0..65).map(|i| format!("s{i}")).collect(),
                ..base.clone()
            },
        ),
        (
            "device.name",
            pb::IssueRequest {
                device: device(|d| d.name = long(129)),
                ..base.clone()
            },
        ),
        (
            "device.user_agent",
            pb::IssueRequest {
                device: device(|d| d.user_agent = long(513)),
                ..base.clone()
            },
        ),
        (
            "device.ip",
            pb::IssueRequest {
                device: device(|d| d.ip = "300.1.1.1".into()),
                ..base.clone()
            },
        ),
        (
            "extra_claims",
            pb::IssueRequest {
                extra_claims: claim("sub", Kind::StringValue("root".into())),
                ..base.clone()
            },
        ),
        (
            "extra_claims",
            pb::IssueRequest {
                extra_claims: claim("blob", Kind::StringValue(long(5000))),
                ..base.clone()
            },
        ),
    ];
    for (field, request) in cases {
        assert_invalid(client.issue(request).await, field);
    }
    // Nothing was created by the rejected requests.
    assert!(server.list("acme", "alice").await.is_empty());
}

async fn refresh_rejects_bad_fields(backend: Backend) {
    let server = TestServer::start(backend).await;
    let pair = server.issue("acme", "alice").await;
    let mut client = server.client();
    assert_invalid(server.refresh("").await, "refresh_token");
    assert_invalid(server.refresh(&long(513)).await, "refresh_token");
    let bad_ip = client
        .refresh(pb::RefreshRequest {
            refresh_token: pair.refresh_token.clone(),
            device: Some(pb::Device {
                ip: "nope".into(),
                ..Default::default()
            }),
            binding: None,
        })
        .await;
    assert_invalid(bad_ip, "device.ip");
    // The rejected request did not rotate anything.
    assert_eq!(server.list("acme", "alice").await[0].refresh_count, 0);
    server.refresh(&pair.refresh_token).await.unwrap();
}

async fn revoke_rejects_bad_fields(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client();
    let req = |tenant: &str, target: Option<Target>, reason: &str| pb::RevokeRequest {
        tenant_id: tenant.into(),
        target,
        reason: reason.into(),
    };
    let cases = vec![
        ("target", req("acme", None, "")),
        (
            "session_id",
            req("acme", Some(Target::SessionId("not-a-uuid".into())), ""),
        ),
        (
            "session_id",
            req("acme", Some(Target::SessionId("".into())), ""),
        ),
        (
            "tenant_id",
            req(
                "",
                Some(Target::SessionId(uuid::Uuid::now_v7().to_string())),
                "",
            ),
        ),
        (
            "tenant_id",
            req(
                "",
                Some(Target::AllSessions(pb::SubjectSessions {
                    subject: "a".into(),
                })),
                "",
            ),
        ),
        (
            "all_sessions.subject",
            req(
                "acme",
                Some(Target::AllSessions(pb::SubjectSessions {
                    subject: "".into(),
                })),
                "",
            ),
        ),
        (
            "refresh_token",
            req("acme", Some(Target::RefreshToken("".into())), ""),
        ),
        (
            "reason",
            req(
                "acme",
                Some(Target::SessionId(uuid::Uuid::now_v7().to_string())),
                &long(257),
            ),
        ),
    ];
    for (field, request) in cases {
        assert_invalid(client.revoke(request).await, field);
    }
    let unknown = client
        .revoke(req(
            "acme",
            Some(Target::SessionId(uuid::Uuid::now_v7().to_string())),
            "",
        ))
        .await;
    assert_error(unknown, Code::NotFound, "SESSION_NOT_FOUND");
    let forged = client
        .revoke(req(
            "acme",
            Some(Target::RefreshToken("rt1_forged".into())),
            "",
        ))
        .await;
    assert_error(forged, Code::Unauthenticated, "TOKEN_INVALID");
}

async fn list_sessions_rejects_bad_fields_and_clamps_page_size(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client();
    let req = |tenant: &str, subject: &str, page_token: &str| pb::ListSessionsRequest {
        tenant_id: tenant.into(),
        subject: subject.into(),
        page_size: 0,
        page_token: page_token.into(),
    };
    assert_invalid(
        client.list_sessions(req("", "alice", "")).await,
        "tenant_id",
    );
    assert_invalid(client.list_sessions(req("acme", "", "")).await, "subject");
    assert_invalid(
        client.list_sessions(req("acme", "alice", "!!!")).await,
        "page_token",
    );
    assert_invalid(
        client
            .list_sessions(req("acme", "alice", "bm90LWEtdXVpZA"))
            .await,
        "page_token",
    );
    server.issue("acme", "alice").await;
    let huge = client
        .list_sessions(pb::ListSessionsRequest {
            page_size: u32::MAX,
            ..req("acme", "alice", "")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(huge.sessions.len(), 1);
}

async fn validate_rejects_bad_fields(backend: Backend) {
    let server = TestServer::start(backend).await;
    assert_invalid(server.validate("").await, "access_token");
    assert_invalid(server.validate(&long(8193)).await, "access_token");
}

async fn oversized_messages_are_refused_before_decoding(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = issue_request("acme", "alice");
    request.scopes = vec![long(100 * 1024)];
    let result = server.client().issue(request).await;
    assert_error(result, Code::ResourceExhausted, "MESSAGE_TOO_LARGE");
    // The server is still healthy afterwards.
    server.issue("acme", "alice").await;
}

/// Bytes sent as they are, as a broken or hostile client would.
#[derive(Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

async fn raw_call(server: &TestServer, method: &str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(server.channel.clone());
    grpc.ready().await.expect("ready");
    let path = format!("/token_authority.v1.TokenAuthority/{method}")
        .parse()
        .expect("path");
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .expect_err("malformed message refused")
}

/// A Struct nested `depth` levels deep, as protobuf bytes.
fn nested_struct(depth: usize) -> Vec<u8> {
    use prost::Message;
    let mut value = prost_types::Value {
        kind: Some(prost_types::value::Kind::BoolValue(true)),
    };
    for _ in 0..depth {
        value = prost_types::Value {
            kind: Some(prost_types::value::Kind::StructValue(prost_types::Struct {
                fields: [("k".to_string(), value)].into(),
            })),
        };
    }
    let Some(prost_types::value::Kind::StructValue(inner)) = value.kind else {
        unreachable!("built as a struct")
    };
    let mut bytes = vec![0x32]; // field 6 (extra_claims), length-delimited
    let encoded = inner.encode_to_vec();
    prost::encoding::encode_varint(encoded.len() as u64, &mut bytes);
    bytes.extend(encoded);
    bytes
}

async fn undecodable_messages_answer_invalid_argument_with_a_reason(backend: Backend) {
    let server = TestServer::start(backend).await;
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        // Field 1 (tenant_id) with invalid UTF-8.
        ("invalid UTF-8", "Issue", vec![0x0a, 0x02, 0xff, 0xfe]),
        // Field 1 as a varint where a string is expected.
        ("wrong wire type", "Issue", vec![0x08, 0x01]),
        // Announces 16 bytes, carries one.
        ("truncated", "Refresh", vec![0x0a, 0x10, 0x61]),
        ("nested 60 deep", "Issue", nested_struct(60)),
        ("wrong wire type", "Validate", vec![0x0d, 0, 0, 0, 0]),
    ];
    for (what, method, body) in cases {
        let status = raw_call(&server, method, body).await;
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{what} to {method}: {status:?}"
        );
        assert_eq!(reason(&status), "MALFORMED_REQUEST", "{what} to {method}");
    }
    // The server is still healthy afterwards.
    server.issue("acme", "alice").await;
}

crate::on_both_backends!(
    undecodable_messages_answer_invalid_argument_with_a_reason,
    issue_rejects_bad_fields,
    refresh_rejects_bad_fields,
    revoke_rejects_bad_fields,
    list_sessions_rejects_bad_fields_and_clamps_page_size,
    validate_rejects_bad_fields,
    oversized_messages_are_refused_before_decoding,
);
