//! The orders `pinnacle bench orders` sends and how it reads their replies: the symbols
//! and the cash sizing, order `i` of a run, placing one, and an error reply as one line.

use pinnacle_common::codec::{self, Encoding};
use pinnacle_common::config::WorkerSettings;
use pinnacle_common::model::{OrderReply, OrderRequest, OrderStatus, OrderType, Side};
use pinnacle_common::subjects::headers;
use serde::Deserialize;

use crate::bench::users::BenchUser;

/// The simulated NSE equities orders go to, with their starting prices in rupees.
pub const SYMBOLS: [(&str, &str); 3] = [
    ("SBIN-EQ", "820.50"),
    ("INFY-EQ", "1530.25"),
    ("TCS-EQ", "3410"),
];

/// Cash is sized as if every order were a BUY at this price (paise): ₹10,000, about three
/// times the dearest starting price above. The run checks the live prices against it.
pub const PRICE_CEILING: i64 = 10_000 * 100;

/// Shares per order.
pub const QUANTITY: i64 = 1;

/// Cash every paper account needs so that no order fails for funds: as if each of the
/// most orders one user receives in a run were a BUY at [`PRICE_CEILING`].
pub fn paper_cash_for(requests: usize, runs: &[(usize, usize)]) -> i64 {
    let per_user = runs
        .iter()
        .map(|&(_, users)| requests.div_ceil(users.max(1)))
        .max()
        .unwrap_or(0);
    (per_user as i64)
        .saturating_mul(QUANTITY)
        .saturating_mul(PRICE_CEILING)
        .max(WorkerSettings::default().paper_cash)
}

/// Order `i` of a run of `clients` clients over `users` users, and the index of the user
/// it belongs to.
///
/// Client `c` sends orders `c`, `c + clients`, `c + 2·clients`, … one after another (see
/// [`crate::bench::measure`]). Its `m`-th order is the BUY (`m` even) or the SELL (`m` odd)
/// of its pair `m / 2`, so a SELL always follows its own BUY's answer from the same client,
/// on the same user and symbol: the DELIVERY sell finds the unit in the holdings however
/// many clients share a user (each sell started has its buy filled, so sells never outrun
/// buys). Pairs go round the users in turn, and a user's pairs cycle over [`SYMBOLS`].
pub fn order_for(
    i: usize,
    clients: usize,
    users: usize,
    client_order_id: String,
) -> (usize, OrderRequest) {
    let (clients, users) = (clients.max(1), users.max(1));
    let (client, m) = (i % clients, i / clients);
    let pair = client + clients * (m / 2);
    let (symbol, _) = SYMBOLS[(pair / users) % SYMBOLS.len()];
    let order = OrderRequest {
        client_order_id,
        exchange: "NSE".into(),
        symbol: symbol.into(),
        side: if m % 2 == 0 { Side::Buy } else { Side::Sell },
        order_type: OrderType::Market,
        quantity: QUANTITY,
        price: None,
        trigger_price: None,
        product: Default::default(),
        account: None,
    };
    (pair % users, order)
}

/// A reply's envelope (`Reply<T>` on the wire), with the error read without assuming its
/// code is one this build knows.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    error: Option<ErrorReply>,
}

/// An error reply's body.
#[derive(Debug, Deserialize)]
struct ErrorReply {
    code: String,
    message: String,
}

/// A readable reason for a failed reply: `CODE: message`, whatever the encoding; the raw
/// text (lossy) only when the body cannot be decoded at all.
pub fn describe_error(message: &async_nats::Message) -> String {
    let code = codec::header(message.headers.as_ref(), headers::ERROR_CODE).unwrap_or("ERROR");
    let encoding = Encoding::from_headers(message.headers.as_ref());
    match encoding.decode::<Envelope<serde::de::IgnoredAny>>(&message.payload) {
        Ok(Envelope {
            error: Some(body), ..
        }) => format!("{}: {}", body.code, body.message),
        _ => format!(
            "{code}: undecodable reply ({} bytes): {}",
            message.payload.len(),
            String::from_utf8_lossy(&message.payload)
        ),
    }
}

/// Places one order and checks the reply; `Err` says why it failed.
pub(super) async fn place(
    client: &async_nats::Client,
    user: &BenchUser,
    order: &OrderRequest,
) -> Result<(), String> {
    let payload = Encoding::MsgPack
        .encode(order)
        .map_err(|e| format!("ENCODE: {e}"))?;
    let reply = client
        .request_with_headers(user.place_subject.clone(), user.headers.clone(), payload)
        .await
        .map_err(|e| format!("NO_REPLY: {e}"))?;
    if codec::header(reply.headers.as_ref(), headers::ERROR_CODE).is_some() {
        return Err(describe_error(&reply));
    }
    let envelope: Envelope<OrderReply> = Encoding::from_headers(reply.headers.as_ref())
        .decode(&reply.payload)
        .map_err(|_| describe_error(&reply))?;
    let placed = match envelope {
        Envelope {
            ok: true,
            result: Some(placed),
            ..
        } => placed,
        _ => return Err(describe_error(&reply)),
    };
    match placed.status {
        OrderStatus::Rejected | OrderStatus::Cancelled | OrderStatus::Unknown => Err(format!(
            "{}: {}",
            placed.status,
            placed.reject_reason.unwrap_or_default()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each client sends, in its order: (user, side, symbol).
    fn sent_by(
        client: usize,
        clients: usize,
        users: usize,
        total: usize,
    ) -> Vec<(usize, Side, String)> {
        (client..total)
            .step_by(clients)
            .map(|i| {
                let (user, order) = order_for(i, clients, users, format!("c{i}"));
                (user, order.side, order.symbol)
            })
            .collect()
    }

    #[test]
    fn each_sell_follows_its_own_buy_from_the_same_client() {
        for (clients, users) in [(1, 1), (4, 4), (64, 1), (8, 3), (2, 5)] {
            let mut per_user = vec![0usize; users];
            for client in 0..clients {
                let sent = sent_by(client, clients, users, 200);
                for pair in sent.chunks(2) {
                    let (user, side, symbol) = &pair[0];
                    assert_eq!(
                        *side,
                        Side::Buy,
                        "{clients}/{users}: a pair opens with a BUY"
                    );
                    per_user[*user] += 1;
                    if let [_, (sell_user, sell_side, sell_symbol)] = pair {
                        assert_eq!(*sell_side, Side::Sell);
                        assert_eq!((sell_user, sell_symbol), (user, symbol));
                    }
                }
            }
            assert!(
                per_user.iter().all(|n| *n > 0),
                "{clients}/{users}: {per_user:?}"
            );
        }
    }

    #[test]
    fn one_client_per_user_keeps_its_user_and_cycles_the_symbols() {
        let sent = sent_by(1, 4, 4, 64);
        assert!(sent.iter().all(|(user, _, _)| *user == 1));
        assert_ne!(
            sent[0].2, sent[2].2,
            "the next pair moves to the next symbol"
        );
    }

    #[test]
    fn cash_covers_every_order_as_a_buy_at_the_ceiling() {
        // 2,000 orders on one user: ₹2 crore at ₹10,000 a share.
        assert_eq!(
            paper_cash_for(2_000, &[(1, 1), (64, 64)]),
            2_000 * PRICE_CEILING
        );
        // Never below the worker's default.
        assert_eq!(
            paper_cash_for(10, &[(64, 64)]),
            WorkerSettings::default().paper_cash
        );
    }
}
