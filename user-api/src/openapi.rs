//! The OpenAPI 3.1 document, served at `GET /openapi.json` (no authentication needed).
//!
//! Written by hand next to the routes in `app`; the `openapi_fuzz` end-to-end test drives
//! every operation listed here with bad input and fails on any 5xx, and on any route the
//! router serves that the document does not list.

use axum::Json;
use serde_json::{json, Value};

fn error_responses() -> Value {
    json!({
        "400": {"$ref": "#/components/responses/Error"},
        "401": {"$ref": "#/components/responses/Error"},
        "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"},
        "429": {"$ref": "#/components/responses/Error"}
    })
}

fn op(summary: &str, params: &[&str], body: Option<&str>, ok: (&str, &str)) -> Value {
    let mut responses = error_responses();
    responses[ok.0] = json!({
        "description": summary,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", ok.1)}}}
    });
    let mut operation = json!({
        "summary": summary,
        "parameters": params.iter().map(|p| json!({
            "name": p, "in": "path", "required": true, "schema": {"type": "string"}
        })).collect::<Vec<_>>(),
        "responses": responses,
    });
    if let Some(schema) = body {
        operation["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
        });
    }
    operation
}

fn secret() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 1024, "writeOnly": true})
}

/// The document.
pub fn spec() -> Value {
    let u = ["user_id"];
    let ul = ["user_id", "label"];
    let ut = ["user_id", "token_id"];
    let mut trail = op("a user's audit trail", &u, None, ("200", "Trail"));
    if let Some(params) = trail["parameters"].as_array_mut() {
        params.push(
            json!({"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}}),
        );
        params.push(json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}));
    }
    let mut login = op("password login", &[], Some("Login"), ("201", "IssuedToken"));
    login["security"] = json!([]);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Pinnacle user API", "version": "1"},
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"summary": "liveness: every NATS connection handler of this process runs", "security": [], "responses": {
                "200": {"description": "alive", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                "503": {"description": "a NATS connection handler is dead and not yet rebuilt", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}
            }}},
            "/readyz": {"get": {"summary": "readiness: every NATS connection of this process is connected", "security": [], "responses": {
                "200": {"description": "ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                "503": {"description": "a NATS connection is down, reconnecting or being rebuilt", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}
            }}},
            "/v1/login": {"post": login},
            "/v1/users": {"post": op("create a user (admin)", &[], Some("CreateUser"), ("201", "User"))},
            "/v1/users/{user_id}/tokens": {
                "post": op("issue an API token", &u, Some("CreateToken"), ("201", "IssuedToken")),
                "get": op("list API tokens", &u, None, ("200", "TokenList"))
            },
            "/v1/users/{user_id}/tokens/{token_id}": {
                "delete": op("revoke an API token", &ut, None, ("200", "Token"))
            },
            "/v1/users/{user_id}/broker-accounts": {
                "get": op("list broker accounts", &u, None, ("200", "AccountList"))
            },
            "/v1/users/{user_id}/broker-accounts/{label}": {
                "put": op("create or replace an account's credentials", &ul, Some("PutAccount"), ("200", "Account")),
                "get": op("credential status", &ul, None, ("200", "Account")),
                "delete": op("delete an account", &ul, None, ("200", "Deleted"))
            },
            "/v1/users/{user_id}/audit": {"get": trail}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {
                "description": "an error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }},
            "schemas": {
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
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}
                }}},
                "Login": {"type": "object", "additionalProperties": false, "required": ["name", "password"], "properties": {
                    "name": {"type": "string"}, "password": {"type": "string", "writeOnly": true},
                    "scopes": {"type": "array", "items": {"enum": ["trade", "read"]}},
                    "expires_in_secs": {"type": "integer", "minimum": 60, "maximum": 31_622_400}
                }},
                "CreateUser": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
                    "password": {"type": "string", "minLength": 12, "maxLength": 256, "writeOnly": true}
                }},
                "User": {"type": "object", "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"},
                    "is_admin": {"type": "boolean"}, "created_at": {"type": "string", "format": "date-time"}
                }},
                "CreateToken": {"type": "object", "additionalProperties": false, "properties": {
                    "scopes": {"type": "array", "items": {"enum": ["trade", "read"]}},
                    "expires_in_secs": {"type": "integer", "minimum": 60, "maximum": 31_622_400}
                }},
                "IssuedToken": {"type": "object", "properties": {
                    "id": {"type": "string"}, "token": {"type": "string"},
                    "scopes": {"type": "array", "items": {"type": "string"}},
                    "expires_at": {"type": ["string", "null"], "format": "date-time"}
                }},
                "Token": {"type": "object", "properties": {
                    "id": {"type": "string"}, "scopes": {"type": "array", "items": {"type": "string"}},
                    "created_at": {"type": "string"}, "expires_at": {"type": ["string", "null"]},
                    "revoked_at": {"type": ["string", "null"]}
                }},
                "TokenList": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}},
                "PutAccount": {"type": "object", "additionalProperties": false, "required": ["broker"], "properties": {
                    "broker": {"enum": ["paper", "angel_one"]},
                    "api_key": secret(), "client_code": secret(), "secret": secret(),
                    "totp_seed": secret(), "access_token": secret(), "jwt_token": secret(),
                    "refresh_token": secret(), "feed_token": secret(),
                    "session_expires_at": {"type": "string", "format": "date-time"},
                    "static_ip": {"type": "string", "description": "IP registered with Angel One for the API key; required for live orders"},
                    "egress_proxy": {"type": "string", "description": "http(s)/socks5 proxy whose egress is static_ip, no credentials"},
                    "algo_id": {"type": "string", "maxLength": 32, "description": "exchange-issued algo id; required for live orders"}
                }},
                "Account": {"type": "object", "properties": {
                    "id": {"type": "string"}, "label": {"type": "string"}, "broker": {"type": "string"},
                    "fields_set": {"type": "array", "items": {"type": "string"}},
                    "generation": {"type": "integer"}, "updated_at": {"type": "string"},
                    "session_expires_at": {"type": ["string", "null"]},
                    "master_key_id": {"type": ["integer", "null"]},
                    "static_ip": {"type": ["string", "null"]},
                    "egress_proxy": {"type": ["string", "null"]},
                    "algo_id": {"type": ["string", "null"]}
                }},
                "AccountList": {"type": "array", "items": {"$ref": "#/components/schemas/Account"}},
                "Deleted": {"type": "object", "properties": {
                    "deleted": {"type": "boolean"}, "account": {"$ref": "#/components/schemas/Account"}
                }},
                "Trail": {"type": "object", "properties": {"events": {"type": "array", "items": {"type": "object"}}}}
            }
        }
    })
}

/// `GET /openapi.json`.
pub async fn document() -> Json<Value> {
    Json(spec())
}
