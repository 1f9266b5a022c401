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

/// Order `i` of a run over `users` users: user `i % users`, whose `k`-th order is a BUY
/// when `k` is even and the matching SELL when it is odd.
pub fn order_for(i: usize, users: usize, client_order_id: String) -> OrderRequest {
    let k = i / users.max(1);
    let (symbol, _) = SYMBOLS[(k / 2) % SYMBOLS.len()];
    OrderRequest {
        client_order_id,
        exchange: "NSE".into(),
        symbol: symbol.into(),
        side: if k % 2 == 0 { Side::Buy } else { Side::Sell },
        order_type: OrderType::Market,
        quantity: QUANTITY,
        price: None,
        trigger_price: None,
        product: Default::default(),
        account: None,
    }
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

    #[test]
    fn each_user_alternates_buy_and_sell_on_one_symbol() {
        let users = 4;
        let of_user_1: Vec<_> = (0..16)
            .filter(|i| i % users == 1)
            .map(|i| order_for(i, users, format!("c{i}")))
            .collect();
        assert_eq!(of_user_1[0].side, Side::Buy);
        assert_eq!(of_user_1[1].side, Side::Sell);
        assert_eq!(of_user_1[0].symbol, of_user_1[1].symbol);
        assert_eq!(of_user_1[2].side, Side::Buy);
        assert_ne!(of_user_1[2].symbol, of_user_1[0].symbol);
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
