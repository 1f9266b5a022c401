//! The one error every failed decrypt gives: a leaf that the AEAD, the envelope and the
//! ring all name.

/// The one error every failed decrypt gives, whatever went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("credential could not be decrypted")]
pub struct DecryptError;
