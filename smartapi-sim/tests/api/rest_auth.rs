//! Login, profile, token expiry / refresh / revocation and logout.

use std::time::Duration;

use pinnacle_smartapi_sim::{SessionExpiry, SimConfig};
use serde_json::json;

use crate::helpers::*;

/// A 6-digit code that matches none of the steps the simulator accepts (now ± 30 s).
fn wrong_totp() -> String {
    let key = data_encoding::BASE32_NOPAD
        .decode(SEED.as_bytes())
        .expect("base32 seed");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let valid: Vec<String> = [now - 60, now - 30, now, now + 30, now + 60]
        .iter()
        .map(|t| totp(&key, *t, 6))
        .collect();
    (0..10u32)
        .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
        .find(|c| !valid.contains(c))
        .expect("some code is wrong")
}

const PROFILE: &str = "/rest/secure/angelbroking/user/v1/getProfile";
const REFRESH: &str = "/rest/auth/angelbroking/jwt/v1/generateTokens";

#[tokio::test]
async fn login_then_profile_works_and_tokens_are_hs512_jwts() {
    let t = spawn().await;
    let tokens = t.login().await;
    assert!(
        tokens.jwt.starts_with("eyJhbGciOiJIUzUxMiJ9."),
        "{}",
        tokens.jwt
    );
    // The Python SDK's query-string quirk must be ignored.
    let v = t
        .get(
            &format!("{PROFILE}?%7B%22refreshToken%22:%20%22x%22%7D"),
            &tokens.jwt,
        )
        .await;
    assert_eq!(v["status"], true);
    assert_eq!(v["data"]["clientcode"], CLIENT);
    assert_eq!(v["data"]["brokerid"], "B2C");
    assert_eq!(t.sim.login_count(CLIENT), 1);
    let seen = t.sim.requests();
    let login = seen
        .iter()
        .find(|r| r.path.ends_with("loginByPassword"))
        .expect("login recorded");
    assert_eq!(
        login.headers.get("x-privatekey").map(String::as_str),
        Some(API_KEY)
    );
    assert_eq!(login.client_code.as_deref(), Some(CLIENT));
}

#[tokio::test]
async fn bad_totp_and_bad_pin_are_business_errors() {
    let t = spawn().await;
    let v = t
        .post(
            LOGIN,
            None,
            json!({"clientcode": CLIENT, "password": PIN, "totp": wrong_totp()}),
        )
        .await;
    assert_eq!(v["status"], false);
    assert_eq!(v["errorcode"], "AB1050");
    assert!(v["data"].is_null());
    let v = t
        .post(
            LOGIN,
            None,
            json!({"clientcode": CLIENT, "password": "9999", "totp": totp_now()}),
        )
        .await;
    assert_eq!(v["status"], false);
    assert_eq!(v["errorcode"], "AB1007");
    assert_eq!(t.sim.login_count(CLIENT), 0);
}

#[tokio::test]
async fn wrong_api_key_is_refused() {
    let t = spawn().await;
    let resp = t
        .http
        .post(t.url(LOGIN))
        .header("X-PrivateKey", "nope")
        .json(&json!({"clientcode": CLIENT, "password": PIN, "totp": totp_now()}))
        .send()
        .await
        .expect("request");
    let v: serde_json::Value = resp.json().await.expect("json");
    // SPEC §7: AB1007 in the normal envelope, which Angel One's Python SDK reads.
    assert_eq!(
        v,
        json!({"status": false, "message": "Invalid API Key", "errorcode": "AB1007", "data": null})
    );
    assert_eq!(t.sim.login_count(CLIENT), 0);
    // Without any key, too.
    let resp = t
        .http
        .post(t.url(LOGIN))
        .json(&json!({"clientcode": CLIENT, "password": PIN, "totp": totp_now()}))
        .send()
        .await
        .expect("request");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        (v["status"].clone(), v["errorcode"].clone()),
        (json!(false), json!("AB1007"))
    );
    // On a secure route a wrong key is still the gateway's AG8004.
    let tokens = t.login().await;
    let resp = t
        .http
        .get(t.url(PROFILE))
        .header("X-PrivateKey", "nope")
        .bearer_auth(&tokens.jwt)
        .send()
        .await
        .expect("request");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        (v["success"].clone(), v["errorCode"].clone()),
        (json!(false), json!("AG8004"))
    );
}

#[tokio::test]
async fn expired_jwt_gives_ag8001_and_refresh_recovers() {
    let t = spawn().await;
    let tokens = t.login().await;
    t.sim.expire_session(CLIENT);
    let v = t.get(PROFILE, &tokens.jwt).await;
    assert_eq!(
        v,
        json!({"success": false, "message": "Invalid Token", "errorCode": "AG8001", "data": ""})
    );
    let v = t
        .post(
            REFRESH,
            Some(&tokens.jwt),
            json!({"refreshToken": tokens.refresh}),
        )
        .await;
    assert_eq!(v["status"], true, "{v}");
    let fresh = v["data"]["jwtToken"].as_str().expect("new jwt");
    assert!(v["data"]["feedToken"].is_string() && v["data"]["refreshToken"].is_string());
    assert_eq!(t.get(PROFILE, fresh).await["status"], true);
}

#[tokio::test]
async fn refresh_fails_after_revoke() {
    let t = spawn().await;
    let tokens = t.login().await;
    t.sim.revoke_session(CLIENT);
    assert_eq!(t.get(PROFILE, &tokens.jwt).await["errorCode"], "AG8001");
    let v = t
        .post(
            REFRESH,
            Some(&tokens.jwt),
            json!({"refreshToken": tokens.refresh}),
        )
        .await;
    assert_eq!(v["status"], false);
    assert_eq!(v["errorcode"], "AB8050");
}

#[tokio::test]
async fn logout_revokes_the_session() {
    let t = spawn().await;
    let tokens = t.login().await;
    let v = t
        .post(
            "/rest/secure/angelbroking/user/v1/logout",
            Some(&tokens.jwt),
            json!({"clientcode": CLIENT}),
        )
        .await;
    assert_eq!(v["status"], true);
    assert_eq!(v["data"], "");
    assert_eq!(t.get(PROFILE, &tokens.jwt).await["errorCode"], "AG8001");
    let v = t
        .post(
            REFRESH,
            Some(&tokens.jwt),
            json!({"refreshToken": tokens.refresh}),
        )
        .await;
    assert_eq!(v["errorcode"], "AB8050");
}

#[tokio::test]
async fn session_expiry_after_a_duration_is_in_the_exp_claim() {
    let t = spawn_with(SimConfig {
        session_expiry: SessionExpiry::After(Duration::from_secs(1)),
        ..SimConfig::default()
    })
    .await;
    let tokens = t.login().await;
    let body = tokens.jwt.split('.').nth(1).expect("payload");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body)
            .expect("b64"),
    )
    .expect("claims");
    let exp = claims["exp"].as_i64().expect("exp");
    let now = chrono::Utc::now().timestamp();
    assert!(exp > now - 1 && exp <= now + 2, "exp {exp} now {now}");
}

#[tokio::test]
async fn malformed_json_and_missing_token_do_not_panic() {
    let t = spawn().await;
    let tokens = t.login().await;
    let resp = t
        .request(
            &t.http,
            reqwest::Method::POST,
            &format!("{SECURE}/order/v1/placeOrder"),
            Some(&tokens.jwt),
        )
        .body("{not json")
        .send()
        .await
        .expect("request");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["status"], false);
    let resp = t
        .request(&t.http, reqwest::Method::GET, PROFILE, None)
        .send()
        .await
        .expect("request");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["success"], false);
}
