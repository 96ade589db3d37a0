//! What serves token validation: the authority itself, or a sidecar that
//! holds a copy of the authority's keys and revocations. The transport
//! serves Validate, GetJwks, WatchRevocations and Envoy's Check through this.
use std::time::Duration;

use super::caller::Caller;
use super::error::Result;
use super::model::{ValidateRequest, ValidatedToken};
use super::validator::Validator;
use crate::clock::Millis;

pub trait TokenValidation: Send + Sync + 'static {
    fn validate(&self, caller: &Caller, req: &ValidateRequest) -> Result<ValidatedToken>;

    /// The validator holding keys and revocations (for JWKS and streaming).
    fn validator(&self) -> &Validator;

    fn now(&self) -> Millis;

    /// How old the revocation state is (time since it was last known to be
    /// complete); `None` before it ever was.
    fn state_age(&self) -> Option<Duration>;
}
