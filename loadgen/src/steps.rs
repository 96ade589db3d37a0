//! The workloads: one `Step` per kind of request.
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::load::Step;
use token_authority::proto::token_authority_client::TokenAuthorityClient;
use token_authority::proto::{self as pb};

pub type Client = TokenAuthorityClient<Channel>;

fn code(status: tonic::Status) -> String {
    format!("{:?}", status.code())
}

pub fn issue_request(subject: String) -> pb::IssueRequest {
    pb::IssueRequest {
        tenant_id: "load".into(),
        subject,
        audience: "api".into(),
        scopes: vec!["read".into(), "write".into()],
        device: Some(pb::Device {
            name: "loadgen".into(),
            user_agent: "loadgen/0.1".into(),
            ip: "127.0.0.1".into(),
        }),
        extra_claims: None,
        binding: None,
    }
}

pub async fn issue(client: &mut Client, subject: String) -> Result<pb::TokenPair, String> {
    client
        .issue(issue_request(subject))
        .await
        .map_err(code)?
        .into_inner()
        .tokens
        .ok_or_else(|| "NoTokens".to_owned())
}

pub async fn refresh(client: &mut Client, token: &str) -> Result<pb::TokenPair, String> {
    client
        .refresh(pb::RefreshRequest {
            refresh_token: token.to_owned(),
            device: None,
            binding: None,
        })
        .await
        .map_err(code)?
        .into_inner()
        .tokens
        .ok_or_else(|| "NoTokens".to_owned())
}

/// The cheapest unary RPC the server has: the gRPC floor.
pub struct Health(pub HealthClient<Channel>);

impl Step for Health {
    async fn step(&mut self) -> Result<(), String> {
        self.0
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
            .map_err(code)
    }
}

/// Validate of a rotating set of tokens (one token: the same one every time).
pub struct Validate {
    pub client: Client,
    pub tokens: Vec<String>,
    pub next: usize,
}

impl Step for Validate {
    async fn step(&mut self) -> Result<(), String> {
        let access_token = self.tokens[self.next % self.tokens.len()].clone();
        self.next += 1;
        self.client
            .validate(pb::ValidateRequest {
                access_token,
                expected_audience: "api".into(),
                expected_tenant_id: "load".into(),
                presenter_certificate_thumbprint: String::new(),
            })
            .await
            .map(|_| ())
            .map_err(code)
    }
}

/// A session refreshing with the token it got last.
pub struct Refresh {
    pub client: Client,
    pub token: String,
}

impl Step for Refresh {
    async fn step(&mut self) -> Result<(), String> {
        self.token = refresh(&mut self.client, &self.token).await?.refresh_token;
        Ok(())
    }
}

pub struct Issue {
    pub client: Client,
    pub worker: usize,
    pub n: u64,
}

impl Step for Issue {
    async fn step(&mut self) -> Result<(), String> {
        self.n += 1;
        let subject = format!("issue-{}-{}", self.worker, self.n);
        issue(&mut self.client, subject).await.map(|_| ())
    }
}

/// 90% Validate, 9% Refresh, 1% Issue, from one session per worker.
pub struct Mixed {
    pub client: Client,
    pub access: String,
    pub refresh: String,
    pub worker: usize,
    pub n: u64,
}

impl Step for Mixed {
    async fn step(&mut self) -> Result<(), String> {
        self.n += 1;
        match self.n % 100 {
            0 => issue(
                &mut self.client,
                format!("mixed-{}-{}", self.worker, self.n),
            )
            .await
            .map(|_| ()),
            1..=9 => {
                let pair = refresh(&mut self.client, &self.refresh).await?;
                self.access = pair.access_token;
                self.refresh = pair.refresh_token;
                Ok(())
            }
            _ => self
                .client
                .validate(pb::ValidateRequest {
                    access_token: self.access.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(code),
        }
    }
}
