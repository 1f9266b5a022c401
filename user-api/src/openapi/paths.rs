//! The document's `paths`: every operation with its parameters, body and every status it
//! can answer with, and the builders of those parts.
//!
//! [`paths`] stays one long function on purpose: it is the table of every route, read and
//! reviewed next to `app.rs`'s router; splitting it would scatter one table.

use serde_json::{json, Value};

use crate::audit_trail::{MAX_AFTER, MAX_LIMIT};
use crate::error::{NAME_PATTERN, TOKEN_ID_PATTERN, USER_ID_PATTERN};

/// What a failure of an operation can be, beyond its success.
mod fails {
    /// A path or query with a control character, or a path parameter out of its pattern.
    pub const BAD_INPUT: &[&str] = &["400"];
    /// Routes behind the bearer token: missing or bad token, another user's resource or
    /// a scope the token lacks, too many failed tokens from this source.
    pub const AUTH: &[&str] = &["401", "403", "429"];
    /// Routes that read a JSON body: too large, not JSON, not the right object.
    pub const BODY: &[&str] = &["413", "415", "422"];
}

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn responses(ok: (&str, &str, &str), groups: &[&[&str]], extra: &[(&str, &str)]) -> Value {
    let mut out = json!({});
    out[ok.0] = json!({
        "description": ok.1,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", ok.2)}}}
    });
    for status in groups.iter().flat_map(|g| g.iter()) {
        out[*status] = match *status {
            "429" => json!({"$ref": "#/components/responses/RateLimited"}),
            "400" => error("invalid input (`INVALID_REQUEST`, or `BAD_PAYLOAD` for a body that is not JSON)"),
            "401" => error("no `Authorization: Bearer <token>` header, more than one, or a bad token (`UNAUTHENTICATED`)"),
            "403" => error("another user's resource, or a scope the token lacks (`FORBIDDEN`)"),
            "413" => error("the body is over 16 KiB (`PAYLOAD_TOO_LARGE`)"),
            "415" => error("the body's `Content-Type` is not JSON (`BAD_PAYLOAD`)"),
            "422" => error("the body is not the object this operation takes (`BAD_PAYLOAD`)"),
            other => error(other),
        };
    }
    for (status, description) in extra {
        out[*status] = error(description);
    }
    out
}

fn path_param(name: &str, pattern: &str) -> Value {
    json!({"name": name, "in": "path", "required": true,
           "schema": {"type": "string", "pattern": pattern}})
}

fn body(schema: &str, required: bool) -> Value {
    json!({
        "required": required,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn health_op(summary: &str, ok: &str, unavailable: &str) -> Value {
    let health = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}});
    json!({"get": {"summary": summary, "security": [], "responses": {
        "200": {"description": ok, "content": health},
        "400": error("a control character in the path or query"),
        "503": {"description": unavailable, "content": health}
    }}})
}

/// Every operation, by path.
pub(super) fn paths() -> Value {
    use fails::{AUTH, BAD_INPUT, BODY};
    let user = path_param("user_id", USER_ID_PATTERN);
    let label = path_param("label", NAME_PATTERN);
    let token = path_param("token_id", TOKEN_ID_PATTERN);
    let audit_down: (&str, &str) = ("503", "the audit log is unavailable (`AUDIT_UNAVAILABLE`)");
    let no_user: (&str, &str) = ("404", "no such user (`NOT_FOUND`)");
    json!({
        "/healthz": health_op("liveness: every NATS connection handler of this process runs", "alive",
            "a NATS connection handler is dead and not yet rebuilt"),
        "/readyz": health_op("readiness: every NATS connection of this process is connected", "ready",
            "a NATS connection is down, reconnecting or being rebuilt"),
        "/v1/login": {"post": {
            "summary": "password login: a user name and password for an API token",
            "security": [],
            "requestBody": body("Login", true),
            "responses": responses(("201", "the token, shown once", "IssuedToken"), &[BAD_INPUT, BODY, &["429"]],
                &[("401", "unknown user or wrong password, alike (`UNAUTHENTICATED`)")])
        }},
        "/v1/users": {
            "post": {
                "summary": "create a user (admin only)",
                "requestBody": body("CreateUser", true),
                "responses": responses(("201", "the user", "User"), &[BAD_INPUT, AUTH, BODY],
                    &[("409", "the name is taken (`CONFLICT`)")])
            },
            "get": {
                "summary": "list every user, by name (admin only)",
                "responses": responses(("200", "the users", "UserList"), &[BAD_INPUT, AUTH], &[])
            }
        },
        "/v1/users/{user_id}": {"get": {
            "parameters": [user],
            "summary": "one user",
            "responses": responses(("200", "the user", "User"), &[BAD_INPUT, AUTH], &[no_user])
        }},
        "/v1/users/{user_id}/default-account": {"put": {
            "parameters": [user],
            "summary": "name the broker account used when a request names none; the label may name an account not stored yet (audited first)",
            "requestBody": body("DefaultAccount", true),
            "responses": responses(("200", "the user", "User"), &[BAD_INPUT, AUTH, BODY],
                &[no_user, audit_down])
        }},
        "/v1/users/{user_id}/risk-limits": {
            "get": {
                "parameters": [user],
                "summary": "the global row, the user's row and the limits in force for the user",
                "responses": responses(("200", "the limits", "RiskView"), &[BAD_INPUT, AUTH], &[no_user])
            },
            "put": {
                "parameters": [user],
                "summary": "change the user's limits or kill switch (admin only; audited first)",
                "requestBody": body("RiskChange", true),
                "responses": responses(("200", "the limits after the change", "RiskView"), &[BAD_INPUT, AUTH, BODY], &[no_user, audit_down])
            },
            "delete": {
                "parameters": [user],
                "summary": "delete the user's row: the global row and the defaults apply (admin only; audited first)",
                "responses": responses(("200", "the limits now in force", "RiskView"), &[BAD_INPUT, AUTH], &[no_user, audit_down])
            }
        },
        "/v1/risk-limits/global": {
            "get": {
                "summary": "the platform-wide row and what a user without a row of their own gets (admin only)",
                "responses": responses(("200", "the limits", "RiskView"), &[BAD_INPUT, AUTH], &[])
            },
            "put": {
                "summary": "change the platform-wide limits or kill switch (admin only; audited first)",
                "requestBody": body("RiskChange", true),
                "responses": responses(("200", "the limits after the change", "RiskView"), &[BAD_INPUT, AUTH, BODY], &[audit_down])
            }
        },
        "/v1/users/{user_id}/tokens": {
            "post": {
                "parameters": [user],
                "summary": "issue an API token (an empty body: the defaults)",
                "requestBody": body("CreateToken", false),
                "responses": responses(("201", "the token, shown once", "IssuedToken"), &[BAD_INPUT, AUTH, BODY], &[no_user])
            },
            "get": {
                "parameters": [user],
                "summary": "list a user's API tokens (never a token or its hash)",
                "responses": responses(("200", "the tokens", "TokenList"), &[BAD_INPUT, AUTH], &[no_user])
            }
        },
        "/v1/users/{user_id}/tokens/{token_id}": {
            "delete": {
                "parameters": [user, token],
                "summary": "revoke an API token",
                "responses": responses(("200", "the token, revoked", "Token"), &[BAD_INPUT, AUTH],
                    &[("404", "no such token for this user (`NOT_FOUND`)")])
            }
        },
        "/v1/users/{user_id}/broker-accounts": {
            "get": {
                "parameters": [user],
                "summary": "list a user's broker accounts",
                "responses": responses(("200", "the accounts", "AccountList"), &[BAD_INPUT, AUTH], &[no_user])
            }
        },
        "/v1/users/{user_id}/broker-accounts/{label}": {
            "put": {
                "parameters": [user, label],
                "summary": "create or replace an account's credentials (audited first)",
                "requestBody": body("PutAccount", true),
                "responses": responses(("200", "the account", "Account"), &[BAD_INPUT, AUTH, BODY], &[
                    no_user,
                    ("409", "another write changed the account first; retry (`CONFLICT`)"),
                    ("503", "the audit log or the credential vault is unavailable (`AUDIT_UNAVAILABLE`, `CREDENTIAL_UNAVAILABLE`)")
                ])
            },
            "get": {
                "parameters": [user, label],
                "summary": "an account's credential status",
                "responses": responses(("200", "the account", "Account"), &[BAD_INPUT, AUTH],
                    &[("404", "no broker account with that label (`NOT_FOUND`)")])
            },
            "delete": {
                "parameters": [user, label],
                "summary": "delete an account (audited first; kept, erased, if orders refer to it)",
                "responses": responses(("200", "what became of the account", "Deleted"), &[BAD_INPUT, AUTH],
                    &[("404", "no broker account with that label (`NOT_FOUND`)"), audit_down])
            }
        },
        "/v1/users/{user_id}/audit": {
            "get": {
                "summary": "a user's credential audit trail, oldest first",
                "parameters": [
                    user,
                    {"name": "after", "in": "query", "required": false,
                     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_AFTER}},
                    {"name": "limit", "in": "query", "required": false,
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}}
                ],
                "responses": responses(("200", "one page of events", "Trail"), &[BAD_INPUT, AUTH], &[no_user, audit_down])
            }
        },
        "/v1/users/{user_id}/audit/verify": {"get": {
            "summary": "`pinnacle audit verify` for this user's chain: links, checkpoints, sealing, the stream's settings, rolled-back accounts, orders without their event",
            "parameters": [user],
            "responses": responses(("200", "the verdict (`clean` true when nothing is wrong)", "ChainReport"), &[BAD_INPUT, AUTH], &[no_user, audit_down])
        }},
        "/v1/me": {"get": {
            "summary": "who the bearer token belongs to (the admin, or a user with the token's id and scopes)",
            "responses": responses(("200", "the caller", "Me"), &[BAD_INPUT, AUTH], &[])
        }},
        "/v1/keys": {"get": {
            "summary": "master keys and rotation status: accounts wrapped and encryptions per key, the current key (admin only)",
            "responses": responses(("200", "every key", "Keys"), &[BAD_INPUT, AUTH], &[])
        }}
    })
}
