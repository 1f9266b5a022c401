//! The OpenAPI 3.1 document, served at `GET /openapi.json` (no authentication needed).
//!
//! Written by hand next to the routes in `app`, from the same constants the handlers check
//! (patterns, lengths in characters, ranges), and listing every status a route can answer
//! with. Two tests hold it to the server: the `openapi_fuzz` end-to-end test drives every
//! operation with bad input and fails on any 5xx, and the `schemathesis` one runs
//! Schemathesis with all its checks against a real server and fails on any finding.

use axum::Json;
use pinnacle_common::auth::{SCOPE_READ, SCOPE_TRADE};
use serde_json::{json, Value};

use crate::accounts::{BROKERS, MAX_ALGO_ID_LEN, MAX_PROXY_LEN, MAX_SECRET_LEN};
use crate::api_tokens::MAX_EXPIRES_IN_SECS;
use crate::audit_trail::{MAX_AFTER, MAX_LIMIT};
use crate::error::{NAME_PATTERN, TOKEN_ID_PATTERN, USER_ID_PATTERN};
use crate::login::PASSWORD_LEN;
use crate::risk::{LIST_ENTRY_PATTERN, MAX_LIST, MAX_QUANTITY, MAX_RATE, MAX_VALUE_PAISE};

/// `egress_proxy`: a scheme, then visible ASCII without `@` (no credentials).
const PROXY_PATTERN: &str = "^(http|https|socks5|socks5h)://[!-?A-~]+$";
/// `algo_id`: letters, digits, `-`, `_`.
const ALGO_ID_PATTERN: &str = "^[A-Za-z0-9_-]+$";

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

fn nullable_string(extra: Value) -> Value {
    let mut schema = json!({"type": ["string", "null"]});
    if let (Some(target), Some(more)) = (schema.as_object_mut(), extra.as_object()) {
        target.extend(more.clone());
    }
    schema
}

fn secret() -> Value {
    nullable_string(json!({"minLength": 1, "maxLength": MAX_SECRET_LEN, "writeOnly": true}))
}

fn scopes_in() -> Value {
    json!({"type": ["array", "null"], "minItems": 1,
           "items": {"type": "string", "enum": [SCOPE_TRADE, SCOPE_READ]}})
}

fn expires_in() -> Value {
    json!({"type": ["integer", "null"], "minimum": 60, "maximum": MAX_EXPIRES_IN_SECS})
}

fn date_time(nullable: bool) -> Value {
    if nullable {
        json!({"type": ["string", "null"], "format": "date-time"})
    } else {
        json!({"type": "string", "format": "date-time"})
    }
}

fn health_op(summary: &str, ok: &str, unavailable: &str) -> Value {
    let health = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}});
    json!({"get": {"summary": summary, "security": [], "responses": {
        "200": {"description": ok, "content": health},
        "400": error("a control character in the path or query"),
        "503": {"description": unavailable, "content": health}
    }}})
}

fn paths() -> Value {
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
                "responses": responses(("200", "the tokens", "TokenList"), &[BAD_INPUT, AUTH], &[])
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
                "responses": responses(("200", "one page of events", "Trail"), &[BAD_INPUT, AUTH], &[audit_down])
            }
        },
        "/v1/users/{user_id}/audit/verify": {"get": {
            "summary": "`pinnacle audit verify` for this user's chain: links, checkpoints, sealing, the stream's settings, rolled-back accounts, orders without their event",
            "parameters": [user],
            "responses": responses(("200", "the verdict (`clean` true when nothing is wrong)", "ChainReport"), &[BAD_INPUT, AUTH], &[audit_down])
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

fn schemas() -> Value {
    let account = json!({"type": "object",
    "required": ["id", "label", "broker", "fields_set", "generation", "updated_at",
                 "session_expires_at", "master_key_id", "static_ip", "egress_proxy", "algo_id"],
    "properties": {
        "id": {"type": "string"}, "label": {"type": "string", "pattern": NAME_PATTERN},
        "broker": {"type": "string", "enum": BROKERS},
        "fields_set": {"type": "array", "items": {"type": "string"}},
        "generation": {"type": "integer", "minimum": 1}, "updated_at": date_time(false),
        "session_expires_at": date_time(true),
        "master_key_id": {"type": ["integer", "null"]},
        "static_ip": {"type": ["string", "null"]},
        "egress_proxy": {"type": ["string", "null"]},
        "algo_id": {"type": ["string", "null"]}
    }});
    let token = json!({"type": "object",
    "required": ["id", "scopes", "created_at", "expires_at", "revoked_at"],
    "properties": {
        "id": {"type": "string", "pattern": TOKEN_ID_PATTERN},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "created_at": date_time(false), "expires_at": date_time(true), "revoked_at": date_time(true)
    }});
    let event = json!({"type": "object",
    "required": ["seq", "event_id", "ts_ms", "actor", "token_id", "user_id", "broker_account_id",
                 "fields", "purpose", "request_id", "trace_id", "outcome"],
    "properties": {
        "seq": {"type": "integer", "minimum": 1}, "event_id": {"type": "string"},
        "ts_ms": {"type": "integer"}, "actor": {"type": "string"},
        "token_id": {"type": ["string", "null"]}, "user_id": {"type": "string"},
        "broker_account_id": {"type": "string"},
        "fields": {"type": "array", "items": {"type": "string"}},
        "purpose": {"type": "string"}, "request_id": {"type": "string"},
        "trace_id": {"type": ["string", "null"]},
        "outcome": {"type": "string", "enum": ["authorized", "written", "decrypt_failed", "changed"]}
    }});
    let positive =
        |maximum: i64| json!({"type": ["integer", "null"], "minimum": 1, "maximum": maximum});
    let allow_list = json!({"type": ["array", "null"], "minItems": 1, "maxItems": MAX_LIST,
        "items": {"type": "string", "pattern": LIST_ENTRY_PATTERN}});
    let risk_row = json!({"type": ["object", "null"],
    "required": ["scope", "max_quantity", "max_order_value_paise", "allowed_exchanges", "allowed_symbols",
                 "max_orders_per_second", "kill_switch", "updated_at"],
    "properties": {
        "scope": {"type": "string"},
        "max_quantity": {"type": ["integer", "null"]}, "max_order_value_paise": {"type": ["integer", "null"]},
        "allowed_exchanges": {"type": ["array", "null"], "items": {"type": "string"}},
        "allowed_symbols": {"type": ["array", "null"], "items": {"type": "string"}},
        "max_orders_per_second": {"type": ["integer", "null"]},
        "kill_switch": {"type": "boolean"}, "updated_at": date_time(false)
    }});
    json!({
        "Health": {"type": "object", "required": ["status", "nats"], "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "nats": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["state", "handler", "rebuilds"],
                "properties": {
                    "state": {"type": "string", "enum": ["connected", "disconnected", "pending", "dead"]},
                    "handler": {"type": "string", "enum": ["alive", "dead"]},
                    "rebuilds": {"type": "integer", "minimum": 0}
                }
            }}
        }},
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string", "pattern": "^[A-Z_]+$"}, "message": {"type": "string"}}
        }}},
        "Login": {"type": "object", "additionalProperties": false, "required": ["name", "password"], "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "password": {"type": "string", "writeOnly": true},
            "scopes": scopes_in(), "expires_in_secs": expires_in()
        }},
        "CreateUser": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "password": nullable_string(json!({"minLength": PASSWORD_LEN.start(), "maxLength": PASSWORD_LEN.end(), "writeOnly": true}))
        }},
        "User": {"type": "object", "required": ["id", "name", "is_admin", "created_at", "default_account"], "properties": {
            "id": {"type": "string", "pattern": USER_ID_PATTERN}, "name": {"type": "string", "pattern": NAME_PATTERN},
            "is_admin": {"type": "boolean"}, "created_at": date_time(false),
            "default_account": {"type": ["string", "null"]}
        }},
        "UserList": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
        "DefaultAccount": {"type": "object", "additionalProperties": false, "required": ["label"], "properties": {
            "label": {"type": ["string", "null"], "pattern": NAME_PATTERN}
        }},
        "RiskChange": {"type": "object", "additionalProperties": false, "minProperties": 1,
            "description": "only the fields to change: a field left out keeps its value, null lifts the limit",
            "properties": {
                "max_quantity": positive(MAX_QUANTITY),
                "max_order_value_paise": positive(MAX_VALUE_PAISE),
                "allowed_exchanges": allow_list.clone(),
                "allowed_symbols": allow_list,
                "max_orders_per_second": positive(i64::from(MAX_RATE)),
                "kill_switch": {"type": "boolean"}
            }},
        "RiskView": {"type": "object", "required": ["global", "user", "in_force"], "properties": {
            "global": risk_row.clone(), "user": risk_row,
            "in_force": {"type": "object",
                "required": ["kill_switch", "max_quantity", "max_order_value_paise", "allowed_exchanges",
                             "allowed_symbols", "max_orders_per_second", "default_rate"],
                "properties": {
                    "kill_switch": {"type": "boolean"},
                    "max_quantity": {"type": ["integer", "null"]}, "max_order_value_paise": {"type": ["integer", "null"]},
                    "allowed_exchanges": {"type": ["array", "null"], "items": {"type": "string"}},
                    "allowed_symbols": {"type": ["array", "null"], "items": {"type": "string"}},
                    "max_orders_per_second": {"type": "integer", "minimum": 1},
                    "default_rate": {"type": "boolean"}
                }}
        }},
        "CreateToken": {"type": "object", "additionalProperties": false, "properties": {
            "scopes": scopes_in(), "expires_in_secs": expires_in()
        }},
        "IssuedToken": {"type": "object", "required": ["id", "token", "scopes", "expires_at"], "properties": {
            "id": {"type": "string", "pattern": TOKEN_ID_PATTERN}, "token": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string", "enum": [SCOPE_TRADE, SCOPE_READ]}},
            "expires_at": date_time(true)
        }},
        "Token": token,
        "TokenList": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}},
        "PutAccount": {"type": "object", "additionalProperties": false, "required": ["broker"], "properties": {
            "broker": {"type": "string", "enum": BROKERS},
            "api_key": secret(), "client_code": secret(), "secret": secret(),
            "totp_seed": secret(), "access_token": secret(), "jwt_token": secret(),
            "refresh_token": secret(), "feed_token": secret(),
            "session_expires_at": date_time(true),
            "static_ip": {"description": "IP registered with Angel One for the API key; required for live orders",
                "anyOf": [{"type": "null"}, {"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]},
            "egress_proxy": nullable_string(json!({"pattern": PROXY_PATTERN, "maxLength": MAX_PROXY_LEN,
                "description": "http(s)/socks5 proxy whose egress is static_ip, no credentials"})),
            "algo_id": nullable_string(json!({"pattern": ALGO_ID_PATTERN, "minLength": 1, "maxLength": MAX_ALGO_ID_LEN,
                "description": "exchange-issued algo id; required for live orders"}))
        }},
        "Account": account,
        "AccountList": {"type": "array", "items": {"$ref": "#/components/schemas/Account"}},
        "Deleted": {"type": "object", "required": ["deleted", "account"], "properties": {
            "deleted": {"type": "boolean"}, "account": {"$ref": "#/components/schemas/Account"}
        }},
        "Trail": {"type": "object", "required": ["events"], "properties": {"events": {"type": "array", "items": event}, "undecodable": {"type": "array", "items": {"type": "integer", "minimum": 1}, "description": "stream sequences in the page that hold no readable event; absent when none"}}},
        "ChainReport": chain_report(),
        "Me": {"type": "object", "required": ["kind"], "properties": {
            "kind": {"type": "string", "enum": ["admin", "user"]},
            "user_id": {"type": "string", "pattern": USER_ID_PATTERN}, "name": {"type": "string"},
            "token_id": {"type": "string", "pattern": TOKEN_ID_PATTERN},
            "scopes": {"type": "array", "items": {"type": "string"}}, "expires_at": date_time(true)
        }},
        "Keys": {"type": "object", "required": ["current_key_id", "max_encryptions_per_key", "keys"], "properties": {
            "current_key_id": {"type": "integer", "minimum": 0},
            "max_encryptions_per_key": {"type": "integer"},
            "keys": {"type": "array", "items": {"type": "object",
                "required": ["key_id", "fingerprint", "rows", "encryptions", "retired"], "properties": {
                    "key_id": {"type": "integer"}, "fingerprint": {"type": "string"},
                    "rows": {"type": "integer", "minimum": 0}, "encryptions": {"type": "integer"},
                    "retired": {"type": "boolean"}
                }}}
        }}
    })
}

fn chain_report() -> Value {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    json!({"type": "object",
    "required": ["clean", "events", "checkpoints", "first_bad_seq", "problems", "stream_problems",
                 "orders_checked", "orders_missing_audit", "accounts_checked", "accounts_rolled_back"],
    "properties": {
        "clean": {"type": "boolean"}, "events": {"type": "integer", "minimum": 0},
        "checkpoints": {"type": "integer", "minimum": 0},
        "first_bad_seq": {"type": ["integer", "null"]},
        "problems": {"type": "array", "items": {"type": "object", "required": ["seq", "kind", "detail"],
            "properties": {"seq": {"type": "integer"}, "kind": {"type": "string"}, "detail": {"type": "string"}}}},
        "stream_problems": strings.clone(),
        "orders_checked": {"type": "integer", "minimum": 0}, "orders_missing_audit": strings.clone(),
        "accounts_checked": {"type": "integer", "minimum": 0}, "accounts_rolled_back": strings
    }})
}

/// The document.
pub fn spec() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Pinnacle user API", "version": "1",
                 "description": "Lengths are counted in characters (Unicode scalar values). Every error is `{\"error\": {\"code\", \"message\"}}`."},
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "exactly one `Authorization: Bearer <token>` header: the admin token or a user's API token"}},
            "responses": {"RateLimited": {
                "description": "too many attempts from this source or for this name or token (`RATE_LIMITED`)",
                "headers": {"Retry-After": {"required": true, "description": "seconds to wait",
                    "schema": {"type": "integer", "minimum": 1}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }},
            "schemas": schemas()
        }
    })
}

/// `GET /openapi.json`.
pub async fn document() -> Json<Value> {
    Json(spec())
}
