//! The `Admin` gRPC service: signing-key rotation and listing.
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::access_layer::caller_of;
use super::convert;
use super::status::to_status;
use crate::domain::{Authority, Error};
use crate::proto as pb;
use crate::proto::admin_server::Admin;
use crate::verify::clock::duration_millis;
use crate::verify::keys::KeyAlgorithm;

pub struct AdminService {
    authority: Arc<Authority>,
}

impl AdminService {
    pub fn new(authority: Arc<Authority>) -> Self {
        Self { authority }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::SigningKey>, Status> {
        let caller = caller_of(&request)?;
        let r = request.into_inner();
        let algorithm =
            match r.algorithm.as_str() {
                "" => None,
                name => Some(KeyAlgorithm::parse(name).ok_or_else(|| {
                    to_status(Error::invalid("algorithm", "must be EdDSA or ES256"))
                })?),
            };
        let activate_in = match r.activate_in {
            None => None,
            Some(d) => {
                let d = std::time::Duration::try_from(d).map_err(|_| {
                    to_status(Error::invalid("activate_in", "must not be negative"))
                })?;
                Some(duration_millis(d))
            }
        };
        let key = self
            .authority
            .within_budget(
                self.authority
                    .rotate_signing_key(&caller, algorithm, activate_in),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::signing_key(key)))
    }

    async fn list_signing_keys(
        &self,
        _request: Request<pb::ListSigningKeysRequest>,
    ) -> Result<Response<pb::ListSigningKeysResponse>, Status> {
        let keys = self
            .authority
            .within_budget(self.authority.list_signing_keys())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListSigningKeysResponse {
            keys: keys.into_iter().map(convert::signing_key).collect(),
        }))
    }
}
