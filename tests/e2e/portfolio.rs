//! The paper broker's books: funds, positions and trades from the orders table, and
//! buys refused when the account cannot pay.

use pinnacle_tests::{market, TestStack};
use serde_json::json;

use crate::each_backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funds_positions_and_trades_follow_the_fills_and_insufficient_funds_is_refused() {
    each_backend(|backend| async move {
        // ₹10,000 of paper cash.
        let stack = TestStack::start_with(backend, |s| s.worker.paper_cash = 1_000_000).await;
        let user = stack.trader("books").await;
        stack.wait_for_ticks("SBIN-EQ", 2).await;

        let first = stack.place(&user, &market("buy-1", "SBIN-EQ", 10)).await;
        let fill = first.result.expect("filled").average_price.expect("price");
        let funds = stack.call(&user, "funds", json!({})).await;
        assert_eq!(funds["result"]["cash"], 1_000_000, "{funds}");
        assert_eq!(funds["result"]["used"], fill * 10);
        assert_eq!(funds["result"]["available"], 1_000_000 - fill * 10);

        // Ten more shares cost more than what is left.
        let refused = stack.place(&user, &market("buy-2", "SBIN-EQ", 10)).await;
        let error = refused.error.expect("refused");
        assert_eq!(
            error.code.as_str(),
            "INSUFFICIENT_FUNDS",
            "{}",
            error.message
        );
        let stored = stack
            .call(&user, "get", json!({"client_order_id": "buy-2"}))
            .await;
        assert_eq!(stored["result"]["status"], "REJECTED");

        // A resting buy blocks its value.
        let resting = stack
            .call(
                &user,
                "place",
                json!({"client_order_id": "rest", "exchange": "NSE", "symbol": "SBIN-EQ",
                "side": "BUY", "order_type": "LIMIT", "quantity": 2, "price": 100}),
            )
            .await;
        assert_eq!(resting["result"]["status"], "OPEN", "{resting}");
        let funds = stack.call(&user, "funds", json!({})).await;
        assert_eq!(funds["result"]["blocked"], 200);

        // Selling part of the position books the P&L.
        let mut sell = market("sell-1", "SBIN-EQ", 4);
        sell.side = pinnacle_common::model::Side::Sell;
        let sold = stack.place(&user, &sell).await.result.expect("sold");
        let sell_price = sold.average_price.expect("price");
        let positions = stack.call(&user, "positions", json!({})).await;
        let p = &positions["result"]["positions"][0];
        assert_eq!(p["symbol"], "SBIN-EQ", "{positions}");
        assert_eq!(p["net_quantity"], 6);
        assert_eq!(p["average_price"], fill);
        assert_eq!(p["realized_pnl"], 4 * (sell_price - fill));

        let trades = stack.call(&user, "trades", json!({})).await;
        let sides: Vec<_> = trades["result"]["trades"]
            .as_array()
            .expect("trades")
            .iter()
            .map(|t| {
                (
                    t["side"].as_str().unwrap_or("").to_string(),
                    t["quantity"].as_i64(),
                )
            })
            .collect();
        assert_eq!(
            sides,
            [("BUY".to_string(), Some(10)), ("SELL".to_string(), Some(4))]
        );

        // Portfolio reads use the broker session, so they are audited first.
        let purposes: Vec<String> = pinnacle_tests::audit_events(&stack.client, &user.id)
            .await
            .into_iter()
            .map(|(e, _)| e.purpose)
            .filter(|p| p.starts_with("portfolio."))
            .collect();
        assert_eq!(
            purposes,
            [
                "portfolio.funds",
                "portfolio.funds",
                "portfolio.positions",
                "portfolio.trades"
            ]
        );
    })
    .await;
}
