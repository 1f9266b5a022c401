//! The generation register port: every broker account's latest credential generation,
//! kept outside the order store, so that a row restored from an old copy is refused
//! before it is decrypted (the rules are in `pinnacle_common::keystore::generations`).
//!
//! The engine asks it in [`super::credentials`] (check a row before decrypting, advance it
//! after a newer row decrypted) and in `lookup` (is a cached row superseded?). An
//! implementation fails closed: any doubt is an error, never a generation. The production
//! implementation is [`Register`], the JetStream KV bucket with its watch-fed cache.

use async_trait::async_trait;
use pinnacle_common::keystore::generations::{CheckError, RegisterError, Standing};
use pinnacle_common::keystore::Register;

/// Reads and advances accounts' credential generations.
#[async_trait]
pub trait Generations: std::fmt::Debug + Send + Sync {
    /// The latest generation written for `account_id` (`None`: none recorded yet).
    async fn latest(&self, account_id: &str) -> Result<Option<i64>, RegisterError>;

    /// How a row of `account_id` at `generation` stands; older than the register is
    /// [`CheckError::RolledBack`].
    async fn check(&self, account_id: &str, generation: i64) -> Result<Standing, CheckError>;

    /// Records that `account_id` is at `generation` (a row that decrypted); a failure is
    /// logged, since the next reader advances it again. It never moves backwards.
    async fn advance_after_commit(&self, account_id: &str, generation: i64);
}

#[async_trait]
impl Generations for Register {
    async fn latest(&self, account_id: &str) -> Result<Option<i64>, RegisterError> {
        Register::latest(self, account_id).await
    }

    async fn check(&self, account_id: &str, generation: i64) -> Result<Standing, CheckError> {
        Register::check(self, account_id, generation).await
    }

    async fn advance_after_commit(&self, account_id: &str, generation: i64) {
        Register::advance_after_commit(self, account_id, generation).await;
    }
}
