//! Login, token refresh, profile and logout (SPEC §2).

use serde_json::{json, Value};

use super::reply::{Ctx, Reply};
use crate::codes;
use crate::json::text;
use crate::jwt::TokenKind;
use crate::sessions::{TokenProblem, TokenSet};
use crate::state::lock;
use crate::totp;

fn tokens_json(t: &TokenSet) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("jwtToken".into(), json!(t.jwt));
    m.insert("refreshToken".into(), json!(t.refresh));
    m.insert("feedToken".into(), json!(t.feed));
    m
}

/// POST loginByPassword: client code + PIN + TOTP.
pub fn login(ctx: &Ctx<'_>) -> Reply {
    let cc = text(ctx.body, "clientcode").unwrap_or_default();
    let pin = text(ctx.body, "password").unwrap_or_default();
    let code = text(ctx.body, "totp").unwrap_or_default();
    let Some(account) = ctx.shared.account(&cc).filter(|a| a.pin == pin) else {
        return Reply::business(codes::LOGIN_FAILED, "Invalid clientcode or password");
    };
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    if !totp::verify(&account.totp_seed, &code, now) {
        return Reply::business(codes::INVALID_TOTP, "Invalid totp");
    }
    let tokens =
        lock(&ctx.shared.sessions).login(&ctx.shared.secret, &cc, ctx.shared.config.session_expiry);
    *lock(&ctx.shared.logins).entry(cc).or_default() += 1;
    let mut data = tokens_json(&tokens);
    if let Some(state) = ctx.body.get("state").filter(|s| !s.is_null()) {
        data.insert("state".into(), state.clone());
    }
    Reply::Ok(Value::Object(data))
}

/// POST generateTokens: a new token set for a live refresh token.
pub fn generate_tokens(ctx: &Ctx<'_>) -> Reply {
    let refresh = text(ctx.body, "refreshToken").unwrap_or_default();
    let verified =
        lock(&ctx.shared.sessions).verify(&ctx.shared.secret, &refresh, TokenKind::Refresh, false);
    match verified {
        Ok(claims)
            if Some(claims.username.as_str())
                == ctx.claims.as_ref().map(|c| c.username.as_str()) =>
        {
            let tokens = lock(&ctx.shared.sessions).issue(
                &ctx.shared.secret,
                claims.sid,
                ctx.shared.config.session_expiry,
            );
            Reply::Ok(Value::Object(tokens_json(&tokens)))
        }
        Err(TokenProblem::Expired) => {
            Reply::business(codes::REFRESH_TOKEN_EXPIRED, "Refresh Token Expired")
        }
        _ => Reply::business(codes::INVALID_REFRESH_TOKEN, "Invalid Refresh Token"),
    }
}

/// GET getProfile.
pub fn profile(ctx: &Ctx<'_>) -> Reply {
    let Some(acc) = &ctx.account else {
        return super::gateway::invalid_token();
    };
    let last_login = ctx
        .claims
        .as_ref()
        .and_then(|c| lock(&ctx.shared.sessions).get(c.sid).map(|s| s.login_at))
        .map(|t| {
            t.with_timezone(&crate::calendar::ist())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    Reply::Ok(json!({
        "clientcode": acc.client_code,
        "name": acc.name,
        "email": "",
        "mobileno": "",
        "exchanges": ["NSE", "BSE", "NFO", "BFO", "MCX", "CDS", "NCDEX"],
        "products": ["DELIVERY", "INTRADAY", "MARGIN"],
        "lastlogintime": last_login,
        "brokerid": "B2C",
    }))
}

/// POST logout: the session's tokens all die.
pub fn logout(ctx: &Ctx<'_>) -> Reply {
    if let Some(c) = &ctx.claims {
        lock(&ctx.shared.sessions).revoke_sid(c.sid);
    }
    Reply::Ok(json!(""))
}
