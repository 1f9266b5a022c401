//! Unit tests of the vault: binding to the row, rotation, opaque errors, Wycheproof KATs.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};

use super::*;

fn vault() -> Vault {
    Vault::new(1, &[7u8; 32])
}

fn row(user: &str, generation: i64) -> RowIdentity<'_> {
    RowIdentity {
        user_id: user,
        account_id: "acct-1",
        generation,
    }
}

fn aad<'a>(user: &'a str, field: &'a str, generation: i64) -> CredentialAad<'a> {
    CredentialAad {
        user_id: user,
        account_id: "acct-1",
        field,
        generation,
    }
}

#[test]
fn round_trips_and_binds_to_the_row() {
    let v = vault();
    let dk = DataKey::generate();
    let wrapped = v.wrap(1, row("alice", 1), &dk).expect("wrap");
    assert!(wrapped.starts_with("pnk1:1:"));
    let blob = dk.seal(aad("alice", "api_key", 1), b"secret-api-key");
    assert!(blob.starts_with("pnk1:1:") && !blob.contains("secret-api-key"));

    let opened = v.unwrap(1, row("alice", 1), &wrapped).expect("unwrap");
    let plain = opened
        .open(aad("alice", "api_key", 1), &blob)
        .expect("decrypt");
    assert_eq!(plain.expose_secret(), "secret-api-key");
    // Another user, another field, an older generation: all refused, identically.
    for bad in [
        aad("bob", "api_key", 1),
        aad("alice", "pin", 1),
        aad("alice", "api_key", 2),
    ] {
        assert_eq!(opened.open(bad, &blob).err(), Some(DecryptError));
    }
    // The wrapped data key is bound to its row and master key too.
    assert_eq!(
        v.unwrap(1, row("bob", 1), &wrapped).err(),
        Some(DecryptError)
    );
    assert_eq!(
        v.unwrap(1, row("alice", 2), &wrapped).err(),
        Some(DecryptError)
    );
    assert_eq!(
        v.unwrap(2, row("alice", 1), &wrapped).err(),
        Some(DecryptError)
    );
    // A different master key cannot read it either.
    let other = Vault::new(1, &[8u8; 32]);
    assert_eq!(
        other.unwrap(1, row("alice", 1), &wrapped).err(),
        Some(DecryptError)
    );
}

#[test]
fn rotation_rewraps_and_old_keys_decrypt_until_retired() {
    let v = vault();
    let dk = DataKey::generate();
    let blob = dk.seal(aad("u", "secret", 3), b"1234");
    let old = v.wrap(1, row("u", 3), &dk).expect("wrap");
    v.add_key(2, &[9u8; 32]);
    assert!(v.set_current(2));
    assert!(!v.set_current(99));
    assert_eq!(v.current_key_id(), 2);
    let opened = v
        .unwrap(1, row("u", 3), &old)
        .expect("old key still decrypts");
    let new = v.wrap(2, row("u", 3), &opened).expect("rewrap");
    assert!(new.starts_with("pnk1:2:"));
    let again = v.unwrap(2, row("u", 3), &new).expect("new key");
    assert_eq!(
        again
            .open(aad("u", "secret", 3), &blob)
            .expect("fields untouched")
            .expose_secret(),
        "1234"
    );
    // The blob's key id is never trusted: the row's key id must match it.
    assert_eq!(v.unwrap(2, row("u", 3), &old).err(), Some(DecryptError));
    v.retire(1);
    assert_eq!(v.unwrap(1, row("u", 3), &old).err(), Some(DecryptError));
    assert!(v.wrap(1, row("u", 3), &again).is_err());
}

#[test]
fn subkeys_differ_by_purpose_and_the_pepper_survives_rotation() {
    let v = vault();
    assert_ne!(
        v.token_pepper().expose_secret(),
        v.audit_key().expose_secret()
    );
    let pepper = *v.token_pepper().expose_secret();
    v.add_key(2, &[1u8; 32]);
    v.set_current(2);
    assert_eq!(*v.token_pepper().expose_secret(), pepper);
    let fps = v.key_fingerprints();
    assert_eq!(fps.len(), 2);
    assert_ne!(fps[0].1, fps[1].1);
    assert_eq!(fps[0].1.len(), 16);
}

#[test]
fn master_key_must_be_32_bytes_of_base64() {
    assert!(parse_master_key(&SecretString::from("not base64!")).is_err());
    assert!(parse_master_key(&SecretString::from(B64.encode([1u8; 16]))).is_err());
    assert!(parse_master_key(&SecretString::from(B64.encode([1u8; 32]))).is_ok());
    let err = parse_master_key(&SecretString::from(B64.encode([1u8; 31])))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("32 bytes"), "{err}");
}

#[test]
fn debug_never_shows_key_material() {
    let dk = DataKey::generate();
    assert_eq!(format!("{dk:?}"), "DataKey([REDACTED])");
    let shown = format!("{:?}", vault());
    assert!(
        shown.contains("key_ids") && !shown.contains("wrap"),
        "{shown}"
    );
}

/// Project Wycheproof's AES-GCM vectors with 256-bit keys, 96-bit IVs and 128-bit tags,
/// run through the same `pnk1` open path credentials use.
#[test]
fn wycheproof_aes_256_gcm_96_bit_iv_vectors_pass() {
    use wycheproof::aead::{TestName, TestSet};
    use wycheproof::TestResult;
    let set = TestSet::load(TestName::AesGcm).expect("vectors load");
    let mut checked = 0;
    for group in set
        .test_groups
        .iter()
        .filter(|g| g.key_size == 256 && g.nonce_size == 96 && g.tag_size == 128)
    {
        for test in &group.tests {
            let cipher = Aes256Gcm::new_from_slice(&test.key).expect("256-bit key");
            let mut sealed = test.ct.to_vec();
            sealed.extend_from_slice(&test.tag);
            let mut blob = test.nonce.to_vec();
            blob.extend_from_slice(&sealed);
            let stored = format!("pnk1:1:{}", B64.encode(&blob));
            let opened = aead::open(&cipher, 1, &test.aad, &stored);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    let plain = opened.unwrap_or_else(|_| panic!("tc {} opens", test.tc_id));
                    assert_eq!(plain.as_slice(), test.pt.as_slice(), "tc {}", test.tc_id);
                    let ours = cipher
                        .encrypt(
                            Nonce::from_slice(&test.nonce),
                            Payload {
                                msg: &test.pt,
                                aad: &test.aad,
                            },
                        )
                        .expect("encrypt");
                    assert_eq!(ours, sealed, "tc {} encrypts to the vector", test.tc_id);
                }
                TestResult::Invalid => {
                    assert_eq!(opened.err(), Some(DecryptError), "tc {}", test.tc_id);
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} vectors checked");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]
    #[test]
    fn arbitrary_blobs_give_the_one_opaque_error(s in ".{0,200}", raw in proptest::collection::vec(any::<u8>(), 0..120)) {
        let v = vault();
        let dk = DataKey::generate();
        prop_assert_eq!(dk.open(aad("u", "f", 1), &s).err(), Some(DecryptError));
        prop_assert_eq!(v.unwrap(1, row("u", 1), &s).err(), Some(DecryptError));
        let forged = format!("pnk1:1:{}", B64.encode(&raw));
        prop_assert_eq!(dk.open(aad("u", "f", 1), &forged).err(), Some(DecryptError));
        prop_assert_eq!(v.unwrap(1, row("u", 1), &forged).err(), Some(DecryptError));
    }
}

#[test]
fn audit_keys_are_per_id_and_purpose_and_outlive_retirement() {
    use hmac::Mac as _;
    let tag = |mac: Option<HmacSha256>| {
        let mut mac = mac.expect("key id in the ring");
        mac.update(b"x");
        mac.finalize().into_bytes().to_vec()
    };
    let v = vault();
    let id = v.audit_key_id();
    v.add_key(id + 1, &[3u8; 32]);
    let chain = tag(v.audit_mac(id, AuditKey::Chain));
    assert_ne!(chain, tag(v.audit_mac(id, AuditKey::Checkpoint)));
    assert_ne!(chain, tag(v.audit_mac(id + 1, AuditKey::Chain)));
    v.retire(id);
    assert_eq!(chain, tag(v.audit_mac(id, AuditKey::Chain)));
    assert!(v.audit_mac(id + 7, AuditKey::Chain).is_none());
}
