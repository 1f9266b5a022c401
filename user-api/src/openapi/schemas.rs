//! The document's `components.schemas`: every request and response body, from the same
//! constants the handlers check.
//!
//! [`schemas`] stays one long function on purpose: it is the table of every body shape;
//! splitting it would scatter one table.

use pinnacle_common::auth::{SCOPE_READ, SCOPE_TRADE};
use serde_json::{json, Value};

use crate::accounts::{BROKERS, MAX_ALGO_ID_LEN, MAX_PROXY_LEN, MAX_SECRET_LEN};
use crate::api_tokens::MAX_EXPIRES_IN_SECS;
use crate::error::{NAME_PATTERN, TOKEN_ID_PATTERN, USER_ID_PATTERN};
use crate::login::PASSWORD_LEN;
use crate::risk::{LIST_ENTRY_PATTERN, MAX_LIST, MAX_QUANTITY, MAX_RATE, MAX_VALUE_PAISE};

/// `egress_proxy`: a scheme, then visible ASCII without `@` (no credentials).
const PROXY_PATTERN: &str = "^(http|https|socks5|socks5h)://[!-?A-~]+$";
/// `algo_id`: letters, digits, `-`, `_`.
const ALGO_ID_PATTERN: &str = "^[A-Za-z0-9_-]+$";

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

/// Every body shape, by name.
pub(super) fn schemas() -> Value {
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
                "type": "object", "required": ["state", "handler", "rebuilds", "connections"],
                "properties": {
                    "state": {"type": "string", "enum": ["connected", "disconnected", "pending", "dead"]},
                    "handler": {"type": "string", "enum": ["alive", "dead"]},
                    "rebuilds": {"type": "integer", "minimum": 0},
                    "connections": {"type": "object", "additionalProperties": {
                        "type": "object", "required": ["state", "reconnects"],
                        "properties": {
                            "state": {"type": "string", "enum": ["connected", "disconnected", "pending"]},
                            "reconnects": {"type": "integer", "minimum": 0}
                        }
                    }}
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
