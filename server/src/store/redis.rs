//! Redis implementation of the store (not written yet).

use super::StoreError;

/// Placeholder.
#[derive(Debug)]
pub struct RedisStore;

impl RedisStore {
    /// Not implemented yet.
    ///
    /// # Errors
    /// Always.
    pub async fn connect(_url: &str) -> Result<RedisStore, StoreError> {
        Err(StoreError::Corrupt("redis store not implemented yet"))
    }
}

#[async_trait::async_trait]
impl super::Store for RedisStore {
    async fn create_user(&self, _: &str, _: &str, _: i64) -> Result<super::User, StoreError> {
        unimplemented!()
    }
    async fn user_by_name(&self, _: &str) -> Result<Option<super::User>, StoreError> {
        unimplemented!()
    }
    async fn user_by_id(&self, _: &str) -> Result<Option<super::User>, StoreError> {
        unimplemented!()
    }
    async fn set_password(&self, _: &str, _: &str, _: i64) -> Result<(), StoreError> {
        unimplemented!()
    }
    async fn create_family(&self, _: super::NewFamily) -> Result<(), StoreError> {
        unimplemented!()
    }
    async fn rotate(&self, _: super::RotateRequest) -> Result<super::RotateOutcome, StoreError> {
        unimplemented!()
    }
    async fn live_family_of(
        &self,
        _: &crate::secret::TokenHash,
        _: i64,
    ) -> Result<Option<super::FamilyRef>, StoreError> {
        unimplemented!()
    }
    async fn revoke_family_of(
        &self,
        _: &crate::secret::TokenHash,
        _: i64,
    ) -> Result<Option<super::FamilyRef>, StoreError> {
        unimplemented!()
    }
    async fn revoke_user(&self, _: &str, _: i64) -> Result<u64, StoreError> {
        unimplemented!()
    }
    async fn deny_jti(&self, _: &str, _: &str, _: i64) -> Result<(), StoreError> {
        unimplemented!()
    }
    async fn is_access_revoked(
        &self,
        _: super::AccessCheck<'_>,
        _: i64,
    ) -> Result<bool, StoreError> {
        unimplemented!()
    }
    async fn purge(&self, _: i64, _: i64) -> Result<(), StoreError> {
        unimplemented!()
    }
}
