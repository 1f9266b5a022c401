//! An Angel One stack: the SmartAPI simulator, the services pointed at it, and helpers to
//! give a user an `angel_one` account that is a simulator account.

use pinnacle_smartapi_sim::{SimAccount, SimConfig, Simulator};
use serde_json::{json, Value};

use crate::{Backend, TestStack, TestUser};

/// The simulator and the whole system wired to it.
#[derive(Debug)]
pub struct AngelStack {
    /// SmartAPI, simulated.
    pub sim: Simulator,
    /// Publisher, worker and user API; the worker's SmartAPI URLs point at `sim`.
    pub stack: TestStack,
}

/// The simulator's SBIN-EQ token.
pub const SBIN_TOKEN: &str = "3045";

impl AngelStack {
    /// Starts the simulator (adjusted by `sim_adjust`) and a stack pointed at it (adjusted
    /// by `adjust`).
    pub async fn start_with(
        backend: Backend,
        sim_adjust: impl FnOnce(&mut SimConfig),
        adjust: impl FnOnce(&mut pinnacle_cli::stack::StackSettings),
    ) -> Self {
        // Markets that never close, so these tests pass at any hour; tests of the
        // calendar turn it on and set the clock.
        let mut config = SimConfig {
            enforce_market_hours: false,
            ..SimConfig::default()
        };
        sim_adjust(&mut config);
        let sim = Simulator::start(config).await.expect("simulator starts");
        let rest = sim.rest_url();
        let order_ws = sim.order_ws_url();
        let stack = TestStack::start_with(backend, |s| {
            s.worker.smartapi_url = rest;
            s.worker.smartapi_order_ws_url = order_ws;
            adjust(s);
        })
        .await;
        Self { sim, stack }
    }

    /// Starts with default settings.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}, |_| {}).await
    }

    /// A simulator account numbered `n`, registered at the simulator, trading from
    /// 127.0.0.1. Its secrets are recognisable (`SECRET…`) for log scans.
    pub fn sim_account(&self, n: u32) -> SimAccount {
        let account = SimAccount {
            client_code: format!("A{n:05}"),
            pin: format!("{:04}", 1000 + n),
            // base32 of "SECRET-seed-<n>" padded: any base32 works.
            totp_seed: data_encoding_seed(n),
            api_key: format!("SECRETKEY{n}"),
            static_ip: Some("127.0.0.1".parse().expect("ip")),
            name: format!("Sim trader {n}"),
            available_cash_paise: 100_000_000,
        };
        self.sim.add_account(account.clone());
        account
    }

    /// A user whose `angel` account is simulator account `n`, with the regulatory settings
    /// a live account needs; `extra` overrides or removes (`null`) body fields.
    pub async fn angel_trader(&self, name: &str, n: u32, extra: Value) -> (TestUser, SimAccount) {
        let user = self.stack.create_user(name).await;
        let account = self.sim_account(n);
        let status = self.put_angel_account(&user, &account, extra).await;
        assert_eq!(status, 200);
        (user, account)
    }

    /// Stores `account` as `user`'s `angel` account; returns the HTTP status.
    pub async fn put_angel_account(
        &self,
        user: &TestUser,
        account: &SimAccount,
        extra: Value,
    ) -> u16 {
        let mut body = json!({
            "broker": "angel_one",
            "api_key": account.api_key,
            "client_code": account.client_code,
            "secret": account.pin,
            "totp_seed": account.totp_seed,
            "static_ip": "127.0.0.1",
            "algo_id": "SIMALGO1",
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                if value.is_null() {
                    body.remove(key);
                } else {
                    body.insert(key.clone(), value.clone());
                }
            }
        }
        let (status, reply) = self
            .stack
            .api_put(
                &format!("/v1/users/{}/broker-accounts/angel", user.id),
                &user.token,
                &body,
            )
            .await;
        assert!(status == 200 || status >= 400, "put angel account: {reply}");
        status
    }

    /// A LIMIT order on NSE SBIN-EQ.
    pub fn limit(client_order_id: &str, side: &str, quantity: i64, price: i64) -> Value {
        json!({"client_order_id": client_order_id, "exchange": "NSE", "symbol": "SBIN-EQ",
               "side": side, "order_type": "LIMIT", "quantity": quantity, "price": price})
    }

    /// A buy price that fills at once, and one that rests, from the simulator's last price.
    pub fn prices(&self) -> (i64, i64) {
        let ltp = self
            .sim
            .ltp("NSE", SBIN_TOKEN)
            .expect("simulator knows SBIN-EQ");
        (ltp + ltp / 10, ltp / 2)
    }
}

/// A distinct base32 TOTP seed per account.
fn data_encoding_seed(n: u32) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut x = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..32)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 32) as usize] as char
        })
        .collect()
}
