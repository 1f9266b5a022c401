//! Funds (getRMS), positions and holdings, derived from the client's filled orders.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::reply::{Ctx, Reply};
use crate::market::{rupees, rupees_str};
use crate::orders::record::instrument_type;
use crate::orders::SimOrder;
use crate::state::lock;

/// Net fills of one (exchange, token, product).
#[derive(Debug, Default)]
struct Net {
    symbol: String,
    lot: i64,
    buy_qty: i64,
    sell_qty: i64,
    buy_value: i128,
    sell_value: i128,
}

fn nets(
    orders: &[SimOrder],
    filter: impl Fn(&SimOrder) -> bool,
) -> BTreeMap<(String, String, String), Net> {
    let mut map: BTreeMap<(String, String, String), Net> = BTreeMap::new();
    for o in orders.iter().filter(|o| o.filled > 0 && filter(o)) {
        let n = map
            .entry((o.exchange.clone(), o.token.clone(), o.producttype.clone()))
            .or_default();
        n.symbol.clone_from(&o.symbol);
        n.lot = o.lot_size;
        let value = o.average_price_paise as i128 * o.filled as i128;
        if o.side == "BUY" {
            n.buy_qty += o.filled;
            n.buy_value += value;
        } else {
            n.sell_qty += o.filled;
            n.sell_value += value;
        }
    }
    map
}

fn avg(value: i128, qty: i64) -> i64 {
    if qty == 0 {
        0
    } else {
        (value / qty as i128) as i64
    }
}

/// GET getRMS: every value a string.
pub fn rms(ctx: &Ctx<'_>) -> Reply {
    let cash = ctx.account.as_ref().map_or(0, |a| a.available_cash_paise);
    let s = |p: i64| rupees_str(p, "NSE");
    Reply::Ok(json!({
        "net": s(cash), "availablecash": s(cash), "availableintradaypayin": s(0),
        "availablelimitmargin": s(0), "collateral": s(0), "m2munrealized": s(0), "m2mrealized": s(0),
        "utiliseddebits": s(0), "utilisedspan": s(0), "utilisedoptionpremium": s(0),
        "utilisedholdingsales": s(0), "utilisedexposure": s(0), "utilisedturnover": s(0), "utilisedpayout": s(0),
    }))
}

/// GET getPosition: every value a string; `null` when flat all day.
pub fn positions(ctx: &Ctx<'_>) -> Reply {
    let orders = lock(&ctx.shared.book).orders(ctx.client_code());
    let rows: Vec<Value> = nets(&orders, |_| true)
        .into_iter()
        .map(|((exchange, token, product), n)| {
            let s = |p: i64| rupees_str(p, &exchange);
            let net_qty = n.buy_qty - n.sell_qty;
            let net_value = (n.sell_value - n.buy_value) as i64;
            json!({
                "exchange": exchange, "symboltoken": token, "producttype": product,
                "tradingsymbol": n.symbol, "symbolname": n.symbol.split('-').next().unwrap_or_default(),
                "instrumenttype": instrument_type(&exchange, &n.symbol, ""),
                "priceden": "1.00", "pricenum": "1.00", "genden": "1.00", "gennum": "1.00",
                "precision": if exchange == "CDS" { "4" } else { "2" }, "multiplier": "-1",
                "boardlotsize": "1", "buyqty": n.buy_qty.to_string(), "sellqty": n.sell_qty.to_string(),
                "buyamount": s(n.buy_value as i64), "sellamount": s(n.sell_value as i64),
                "symbolgroup": "EQ", "strikeprice": "-1", "optiontype": "", "expirydate": "",
                "lotsize": n.lot.to_string(), "cfbuyqty": "0", "cfsellqty": "0", "cfbuyamount": s(0),
                "cfsellamount": s(0), "buyavgprice": s(avg(n.buy_value, n.buy_qty)),
                "sellavgprice": s(avg(n.sell_value, n.sell_qty)),
                "avgnetprice": s(avg((n.buy_value - n.sell_value).abs(), net_qty.abs())),
                "netvalue": s(net_value), "netqty": net_qty.to_string(),
                "totalbuyvalue": s(n.buy_value as i64), "totalsellvalue": s(n.sell_value as i64),
                "cfbuyavgprice": s(0), "cfsellavgprice": s(0),
                "totalbuyavgprice": s(avg(n.buy_value, n.buy_qty)),
                "totalsellavgprice": s(avg(n.sell_value, n.sell_qty)),
                "netprice": s(avg((n.buy_value - n.sell_value).abs(), net_qty.abs())),
            })
        })
        .collect();
    Reply::Ok(if rows.is_empty() {
        Value::Null
    } else {
        Value::Array(rows)
    })
}

/// POST convertPosition: accepted, nothing to convert in the simulator.
pub fn convert(_ctx: &Ctx<'_>) -> Reply {
    Reply::Ok(Value::Null)
}

/// Long DELIVERY positions as holdings, with numeric values.
fn holding_rows(ctx: &Ctx<'_>) -> Vec<Value> {
    let orders = lock(&ctx.shared.book).orders(ctx.client_code());
    let market = lock(&ctx.shared.market);
    nets(&orders, |o| o.producttype == "DELIVERY")
        .into_iter()
        .filter(|(_, n)| n.buy_qty > n.sell_qty)
        .map(|((exchange, token, _), n)| {
            let qty = n.buy_qty - n.sell_qty;
            let avg_price = avg(n.buy_value, n.buy_qty);
            let (ltp, close) = market.get(&exchange, &token).map_or((avg_price, avg_price), |q| (q.ltp, q.close));
            let pnl = (ltp - avg_price) * qty;
            let pct = if avg_price == 0 { 0.0 } else { (ltp - avg_price) as f64 * 100.0 / avg_price as f64 };
            json!({
                "tradingsymbol": n.symbol, "exchange": exchange, "isin": "", "t1quantity": qty,
                "realisedquantity": 0, "quantity": qty, "authorisedquantity": 0, "product": "DELIVERY",
                "collateralquantity": null, "collateraltype": null, "haircut": 0.0,
                "averageprice": rupees(avg_price), "ltp": rupees(ltp), "symboltoken": token,
                "close": rupees(close), "profitandloss": rupees(pnl), "pnlpercentage": (pct * 100.0).round() / 100.0,
            })
        })
        .collect()
}

/// GET getHolding.
pub fn holdings(ctx: &Ctx<'_>) -> Reply {
    Reply::Ok(Value::Array(holding_rows(ctx)))
}

/// GET getAllHolding: holdings plus totals.
pub fn all_holdings(ctx: &Ctx<'_>) -> Reply {
    let rows = holding_rows(ctx);
    let sum = |k: &str| rows.iter().filter_map(|r| r.get(k)?.as_f64()).sum::<f64>();
    let value: f64 = rows
        .iter()
        .filter_map(|r| Some(r.get("ltp")?.as_f64()? * r.get("quantity")?.as_f64()?))
        .sum();
    let invested: f64 = rows
        .iter()
        .filter_map(|r| Some(r.get("averageprice")?.as_f64()? * r.get("quantity")?.as_f64()?))
        .sum();
    let pnl = sum("profitandloss");
    let pct = if invested == 0.0 {
        0.0
    } else {
        pnl * 100.0 / invested
    };
    Reply::Ok(json!({
        "holdings": rows,
        "totalholding": {
            "totalholdingvalue": value, "totalinvvalue": invested,
            "totalprofitandloss": pnl, "totalpnlpercentage": (pct * 100.0).round() / 100.0,
        }
    }))
}
