//! The vault port: what turns a sealed broker account row into its credentials.
//!
//! The engine calls [`CredentialVault::open`] only from [`super::credentials`], after the
//! audit sink acknowledged the access and the row's generation passed the register's
//! check. An implementation must not cache what it opened beyond the call, and its error
//! names no secret and no reason ([`DecryptError`] is one opaque value). The production
//! implementation is [`Vault`], the master-key ring: every set field of the row under the
//! row's own data key, each bound to the row's user, account, field and generation.

use pinnacle_common::broker::BrokerCredentials;
use pinnacle_common::crypto::{DecryptError, Vault};
use pinnacle_common::entities::broker_accounts::{self, fields};
use pinnacle_common::keystore;

/// Opens a broker account's sealed credentials.
pub trait CredentialVault: std::fmt::Debug + Send + Sync {
    /// Decrypts every set field of `account`.
    fn open(&self, account: &broker_accounts::Model) -> Result<BrokerCredentials, DecryptError>;
}

impl CredentialVault for Vault {
    fn open(&self, account: &broker_accounts::Model) -> Result<BrokerCredentials, DecryptError> {
        let mut open = keystore::open_account(self, account)?;
        Ok(BrokerCredentials {
            account_id: account.id.clone(),
            api_key: open.remove(fields::API_KEY),
            client_code: open.remove(fields::CLIENT_CODE),
            secret: open.remove(fields::SECRET),
            totp_seed: open.remove(fields::TOTP_SEED),
            access_token: open.remove(fields::ACCESS_TOKEN),
            jwt_token: open.remove(fields::JWT_TOKEN),
            refresh_token: open.remove(fields::REFRESH_TOKEN),
            feed_token: open.remove(fields::FEED_TOKEN),
            session_expires_at: account.session_expires_at,
            static_ip: account.static_ip.clone(),
            egress_proxy: account.egress_proxy.clone(),
            algo_id: account.algo_id.clone(),
        })
    }
}
