//! Access-token signing keys.
use sea_orm::{EntityTrait, QueryOrder, Set};

use super::entities::signing_key;
pub use super::entities::signing_key::Model as StoredKey;
use super::{Store, StoreResult};

impl Store {
    /// Every key, newest first.
    pub async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        Ok(signing_key::Entity::find()
            .order_by_desc(signing_key::Column::CreatedAt)
            .order_by_desc(signing_key::Column::Kid)
            .all(self.conn())
            .await?)
    }

    pub async fn insert_signing_key(&self, key: StoredKey) -> StoreResult<()> {
        signing_key::Entity::insert(signing_key::ActiveModel {
            kid: Set(key.kid),
            algorithm: Set(key.algorithm),
            private_key: Set(key.private_key),
            public_key: Set(key.public_key),
            created_at: Set(key.created_at),
            retired_at: Set(key.retired_at),
        })
        .exec_without_returning(self.conn())
        .await?;
        Ok(())
    }
}
