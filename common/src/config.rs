//! Typed settings, loaded from environment variables with `envy`: every group of
//! `pinnacle_runtime::config`, re-exported whole, and the store's `DATABASE_*`
//! ([`DatabaseSettings`]), which lives with the store so that the runtime links no
//! database. `pinnacle_common::config::X` is one path for all of them.

pub use pinnacle_runtime::config::*;
pub use pinnacle_store::{redact_url, DatabaseSettings};

pub mod database {
    //! `DATABASE_*`: where the database is (`pinnacle_store::settings`).
    pub use pinnacle_store::settings::*;
}
