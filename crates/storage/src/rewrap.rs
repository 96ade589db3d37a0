//! Re-sealing every stored key and secret in one transaction (`keys
//! rewrap`). The domain decides each new value; this file only reads and
//! writes the rows.
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
    TransactionTrait,
};

use token_authority_domain::audit::AuditKind;
use token_authority_domain::ports::{Reseal, Resealed, RewrapAudit, SealedRow};
use token_authority_domain::Error;
use token_authority_verify::StorageError;

use super::audit::{self, EventRow};
use super::entities::{server_secret, signing_key};
use super::keys::KEYS_LOCK;
use super::{Backend, Store, StoreError};

fn failed(e: impl Into<StoreError>) -> Error {
    Error::from(StorageError::from(e.into()))
}

impl Store {
    /// Passes every signing key's private half and every secret through
    /// `reseal` and stores what it returns, with the `kek_rewrapped` event,
    /// in one transaction. On PostgreSQL it holds the keys lock, so no key
    /// is added meanwhile; an error of `reseal` rolls everything back.
    pub async fn reseal_all(
        &self,
        reseal: &Reseal<'_>,
        audit: RewrapAudit<'_>,
    ) -> Result<Resealed, Error> {
        let tx = self.conn().begin().await.map_err(failed)?;
        if self.backend() == Backend::Postgres {
            tx.execute_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT pg_advisory_xact_lock({KEYS_LOCK})"),
            ))
            .await
            .map_err(failed)?;
        }
        let mut resealed = Resealed::default();
        let keys: Vec<(String, Vec<u8>)> = signing_key::Entity::find()
            .select_only()
            .column(signing_key::Column::Kid)
            .column(signing_key::Column::PrivateKey)
            .into_tuple()
            .all(&tx)
            .await
            .map_err(failed)?;
        for (kid, value) in keys {
            if let Some(new) = reseal(SealedRow::SigningKey { kid: &kid }, &value)? {
                signing_key::Entity::update_many()
                    .col_expr(signing_key::Column::PrivateKey, Expr::value(new))
                    .filter(signing_key::Column::Kid.eq(kid.as_str()))
                    .exec(&tx)
                    .await
                    .map_err(failed)?;
                resealed.keys += 1;
            }
        }
        let secrets: Vec<(String, Vec<u8>)> = server_secret::Entity::find()
            .select_only()
            .column(server_secret::Column::Name)
            .column(server_secret::Column::Secret)
            .into_tuple()
            .all(&tx)
            .await
            .map_err(failed)?;
        for (name, value) in secrets {
            if let Some(new) = reseal(SealedRow::Secret { name: &name }, &value)? {
                server_secret::Entity::update_many()
                    .col_expr(server_secret::Column::Secret, Expr::value(new))
                    .filter(server_secret::Column::Name.eq(name.as_str()))
                    .exec(&tx)
                    .await
                    .map_err(failed)?;
                resealed.secrets += 1;
            }
        }
        let event = EventRow {
            at: audit.at,
            kind: AuditKind::KekRewrapped,
            tenant_id: "",
            subject: audit.by,
            session_id: None,
            detail: Some(audit.detail(resealed)),
        };
        audit::record(&tx, event).await.map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(resealed)
    }
}
