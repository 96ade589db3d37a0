//! Conversions between protobuf messages and domain types.
use prost_types::{value::Kind, ListValue, Struct, Timestamp, Value as PbValue};
use serde_json::{Map, Number, Value};

use crate::domain::{model, KeyInfo, KeyStatus};
use crate::proto as pb;
use crate::verify::access_token::Actor;
use crate::verify::clock::Millis;
use crate::verify::keys::jwk::Jwk;
use crate::verify::keys::PublicKey;
use crate::verify::model as verify_model;

pub fn timestamp(ms: Millis) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

pub fn device_in(device: Option<pb::Device>) -> model::Device {
    device
        .map(|d| model::Device {
            name: d.name,
            user_agent: d.user_agent,
            ip: d.ip,
        })
        .unwrap_or_default()
}

pub fn device_out(device: model::Device) -> pb::Device {
    pb::Device {
        name: device.name,
        user_agent: device.user_agent,
        ip: device.ip,
    }
}

pub fn token_pair(pair: model::TokenPair) -> pb::TokenPair {
    pb::TokenPair {
        access_token: pair.access_token,
        access_token_expires_at: timestamp(pair.access_token_expires_at),
        refresh_token: pair.refresh_token,
        refresh_token_expires_at: timestamp(pair.refresh_token_expires_at),
        session_id: pair.session_id,
        token_type: "Bearer".into(),
    }
}

pub fn session(s: model::SessionInfo) -> pb::Session {
    pb::Session {
        session_id: s.session_id,
        created_at: timestamp(s.created_at),
        last_used_at: timestamp(s.last_used_at),
        expires_at: timestamp(s.expires_at),
        refresh_count: s.refresh_count,
        device: Some(device_out(s.device)),
        audience: s.audience,
        scopes: s.scopes,
        client_id: s.client_id,
        certificate_thumbprint: s.certificate_thumbprint,
        refresh_token_bound: s.refresh_token_bound,
    }
}

pub fn binding_in(b: pb::TokenBinding) -> model::TokenBinding {
    model::TokenBinding {
        certificate_thumbprint: b.certificate_thumbprint,
        bind_to_caller_certificate: b.bind_to_caller_certificate,
        bind_refresh_token: b.bind_refresh_token,
    }
}

pub fn claims(v: verify_model::ValidatedToken) -> pb::Claims {
    let c = v.claims;
    pb::Claims {
        subject: c.sub,
        tenant_id: c.tenant,
        audience: c.aud,
        scopes: c.scope.split_whitespace().map(str::to_owned).collect(),
        session_id: c.sid,
        issued_at: timestamp(c.iat * 1000),
        expires_at: timestamp(c.exp * 1000),
        token_id: c.jti,
        issuer: c.iss,
        key_id: v.key_id,
        client_id: c.client_id,
        extra_claims: (!c.extra.is_empty()).then(|| struct_from_json(c.extra)),
        actor: c.act.map(actor),
        certificate_thumbprint: c.cnf.map(|cnf| cnf.x5t_s256).unwrap_or_default(),
    }
}

fn actor(a: Actor) -> pb::Actor {
    pb::Actor {
        subject: a.sub,
        actor: a.act.map(|previous| Box::new(actor(*previous))),
    }
}

/// RFC 8693 §3: the type of the token an exchange issued.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

pub fn exchanged(t: model::ExchangedToken) -> pb::ExchangeResponse {
    pb::ExchangeResponse {
        access_token: t.access_token,
        issued_token_type: ACCESS_TOKEN_TYPE.into(),
        token_type: "Bearer".into(),
        expires_at: timestamp(t.expires_at),
        audience: t.audience,
        scopes: t.scopes,
        session_id: t.session_id,
        token_id: t.token_id,
        actors: t.actors,
    }
}

pub fn jwk_set(keys: &[PublicKey]) -> pb::JsonWebKeySet {
    pb::JsonWebKeySet {
        keys: keys.iter().map(|k| jwk_out(Jwk::from(k))).collect(),
    }
}

fn jwk_out(j: Jwk) -> pb::JsonWebKey {
    pb::JsonWebKey {
        kty: j.kty,
        crv: j.crv,
        x: j.x,
        y: j.y.unwrap_or_default(),
        kid: j.kid,
        alg: j.alg,
        r#use: j.use_,
    }
}

/// The keys of a streamed or fetched set that we can verify with (others
/// are skipped: a newer authority may publish algorithms we do not know).
pub fn jwk_set_in(set: &pb::JsonWebKeySet) -> Vec<PublicKey> {
    set.keys
        .iter()
        .filter_map(|k| {
            Jwk {
                kty: k.kty.clone(),
                crv: k.crv.clone(),
                x: k.x.clone(),
                y: (!k.y.is_empty()).then(|| k.y.clone()),
                kid: k.kid.clone(),
                alg: k.alg.clone(),
                use_: k.r#use.clone(),
            }
            .to_public_key()
        })
        .collect()
}

pub fn signing_key(k: KeyInfo) -> pb::SigningKey {
    let status = match k.status {
        KeyStatus::Pending => pb::KeyStatus::Pending,
        KeyStatus::Active => pb::KeyStatus::Active,
        KeyStatus::Retired => pb::KeyStatus::Retired,
        KeyStatus::Withdrawn => pb::KeyStatus::Withdrawn,
    };
    pb::SigningKey {
        kid: k.kid,
        algorithm: k.algorithm,
        status: status as i32,
        created_at: timestamp(k.created_at),
        activates_at: timestamp(k.activates_at),
        retired_at: k.retired_at.and_then(timestamp),
        verifies_until: k.verifies_until.and_then(timestamp),
        withdrawn_at: k.withdrawn_at.and_then(timestamp),
    }
}

pub fn millis_of(t: &Timestamp) -> Millis {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos) / 1_000_000)
}

pub fn struct_to_json(s: Struct) -> Map<String, Value> {
    s.fields
        .into_iter()
        .map(|(k, v)| (k, value_to_json(v)))
        .collect()
}

fn value_to_json(v: PbValue) -> Value {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => {
            // Whole numbers stay integers in the JWT; NaN/inf have no JSON form.
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                Value::Number(Number::from(n as i64))
            } else {
                Number::from_f64(n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s)),
    }
}

pub fn struct_from_json(map: Map<String, Value>) -> Struct {
    Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, value_from_json(v)))
            .collect(),
    }
}

fn value_from_json(v: Value) -> PbValue {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => Kind::ListValue(ListValue {
            values: a.into_iter().map(value_from_json).collect(),
        }),
        Value::Object(o) => Kind::StructValue(struct_from_json(o)),
    };
    PbValue { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_millis() {
        let t = timestamp(1_700_000_000_123).unwrap();
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
    }

    #[test]
    fn struct_round_trips_through_json() {
        let json: Map<String, Value> = serde_json::from_str(
            r#"{"roles":["a","b"],"level":3,"ratio":0.5,"nested":{"ok":true,"none":null}}"#,
        )
        .unwrap();
        assert_eq!(struct_to_json(struct_from_json(json.clone())), json);
    }
}
