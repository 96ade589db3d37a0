//! The authority validates from memory, like a sidecar: the transport
//! serves both through `TokenValidation`.
use std::time::Duration;

use token_authority_verify::caller::Caller;
use token_authority_verify::clock::Millis;
use token_authority_verify::error::Result;
use token_authority_verify::model::{ValidateRequest, ValidatedToken};
use token_authority_verify::validation::TokenValidation;
use token_authority_verify::validator::Validator;

use super::Authority;

impl TokenValidation for Authority {
    fn validate(&self, caller: &Caller, req: &ValidateRequest) -> Result<ValidatedToken> {
        Authority::validate(self, caller, req)
    }

    fn validator(&self) -> &Validator {
        Authority::validator(self)
    }

    fn now(&self) -> Millis {
        Authority::now(self)
    }

    fn state_age(&self) -> Option<Duration> {
        Authority::state_age(self)
    }
}
