//! Tests of the `pinnacle nats` helpers: password hashing, the trader insert, stream drift.

use super::*;

const TEMPLATE: &str = "    { user: \"@USER_ID@\", password: \"@PASSWORD_HASH@\" }\n";
const AUTH: &str = "users = [\n  # BEGIN TRADERS\n  # END TRADERS\n]\n";
const ID: &str = "3f1c0000-0000-4000-8000-00000000000a";

fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("trader.conf.tmpl"), TEMPLATE).expect("template");
    std::fs::write(dir.path().join("auth.conf"), AUTH).expect("auth");
    dir
}

#[test]
fn a_password_hashes_to_a_bcrypt_hash_that_verifies() {
    let password = read_password("s3cret pass\nignored\n".as_bytes()).expect("password");
    let hashed = hash(&password, 4).expect("hash");
    assert!(hashed.starts_with("$2b$04$"), "{hashed}");
    assert!(bcrypt::verify("s3cret pass", &hashed).expect("verify"));
    assert!(matches!(
        read_password("\n".as_bytes()),
        Err(NatsAdminError::NoPassword)
    ));
    assert!(matches!(hash(&password, 99), Err(NatsAdminError::Hash(_))));
}

#[test]
fn a_trader_is_inserted_once_before_the_marker() {
    let dir = files();
    let auth = dir.path().join("auth.conf");
    add_trader(&auth, ID, "$2b$04$hash").expect("added");
    let text = std::fs::read_to_string(&auth).expect("read");
    let entry = text.find(ID).expect("entry");
    assert!(
        entry < text.find("# END TRADERS").expect("marker"),
        "{text}"
    );
    assert!(text.contains("password: \"$2b$04$hash\""), "{text}");
    assert!(matches!(
        add_trader(&auth, ID, "$2b$04$other"),
        Err(NatsAdminError::Exists { .. })
    ));
    for bad in [
        "3F1C0000-0000-4000-8000-00000000000A",
        "not-a-uuid",
        "3f1c0000000040008000000000000000a",
        "a.b",
        "",
    ] {
        assert!(
            matches!(
                add_trader(&auth, bad, "h"),
                Err(NatsAdminError::BadUserId(_))
            ),
            "{bad}"
        );
    }
    std::fs::write(&auth, "users = []\n").expect("no marker");
    let other = "3f1c0000-0000-4000-8000-00000000000b";
    assert!(matches!(
        add_trader(&auth, other, "h"),
        Err(NatsAdminError::NoMarker(_))
    ));
}

#[test]
fn drift_names_the_fields_that_differ() {
    let definition: serde_json::Map<String, Value> =
        serde_json::from_str(r#"{"name":"S","max_msgs":-1,"deny_delete":true}"#).expect("json");
    let live = serde_json::json!({"name":"S","max_msgs":10,"deny_delete":true,"extra":1});
    assert_eq!(drift(&definition, &live), ["max_msgs"]);
    let same = serde_json::json!({"name":"S","max_msgs":-1,"deny_delete":true});
    assert!(drift(&definition, &same).is_empty());
}
