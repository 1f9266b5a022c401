//! The books' arithmetic, free of any database: how a fill moves a position, how an order's
//! units split between closing and opening, what an order reserves, and tick sizes.

use pinnacle_common::model::{OrderRequest, OrderType, Side};

/// Added to the reference price of a resting `STOPLOSS_MARKET` buy (which has no limit):
/// 1 %, in basis points. It fills at the first price through its trigger; a gap beyond
/// this takes the account's available cash below what was reserved, by the gap.
pub const STOP_MARKET_BUFFER_BPS: i64 = 100;

/// The tick size, paise, of an instrument the instrument master does not list (the
/// simulator's, and NSE/BSE equity's).
pub const DEFAULT_TICK_SIZE: i64 = 5;

/// One position, as fills change it. Quantities in units, values and prices in paise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Book {
    /// Bought minus sold; negative is short.
    pub net_quantity: i64,
    /// What the open units cost (a short's: what they were sold for); 0 when flat.
    pub open_cost: i64,
    /// Units bought.
    pub buy_quantity: i64,
    /// Units sold.
    pub sell_quantity: i64,
    /// Value bought.
    pub buy_value: i64,
    /// Value sold.
    pub sell_value: i64,
    /// P&L booked by closing fills.
    pub realized_pnl: i64,
}

impl Book {
    /// Applies a fill of `quantity` units worth `value` paise, at average cost:
    /// - opening or adding, the open cost grows by the value;
    /// - reducing, the closed units take their share of the open cost,
    ///   `open_cost × closed / |net|` (all of it when the position closes), and the P&L
    ///   booked is their value less that share (the reverse for a short);
    /// - a flip closes the whole position and opens the rest at its share of the value.
    ///
    /// Each closing fill rounds once, and a position that closes gives back its whole
    /// cost, so a round trip's P&L is exactly what was sold less what was bought
    /// (`sell_value − buy_value − realized_pnl = −sign(net) × open_cost` always).
    pub fn fill(&mut self, side: Side, quantity: i64, value: i64) {
        if quantity <= 0 {
            return;
        }
        let signed = match side {
            Side::Buy => {
                self.buy_quantity += quantity;
                self.buy_value = self.buy_value.saturating_add(value);
                quantity
            }
            Side::Sell => {
                self.sell_quantity += quantity;
                self.sell_value = self.sell_value.saturating_add(value);
                -quantity
            }
        };
        let net = self.net_quantity;
        let total = net + signed;
        if net == 0 || net.signum() == signed.signum() {
            self.open_cost = self.open_cost.saturating_add(value);
        } else {
            let closed = quantity.min(net.abs());
            let removed = share(self.open_cost, closed, net.abs());
            let closed_value = share(value, closed, quantity);
            let pnl = (i128::from(closed_value) - i128::from(removed)) * i128::from(net.signum());
            self.realized_pnl = self.realized_pnl.saturating_add(clamp(pnl));
            self.open_cost = if total == 0 {
                0
            } else if total.signum() == net.signum() {
                self.open_cost - removed
            } else {
                value - closed_value
            };
        }
        self.net_quantity = total;
    }

    /// Average price of the open position, rounded down (`None` when flat).
    pub fn average_price(&self) -> Option<i64> {
        (self.net_quantity != 0).then(|| self.open_cost / self.net_quantity.abs())
    }

    /// The value of the open short: what its units were sold for (0 unless short).
    pub fn short_value(&self) -> i64 {
        if self.net_quantity < 0 {
            self.open_cost
        } else {
            0
        }
    }
}

/// `value × part / whole`, rounded down, for `0 ≤ part ≤ whole`: `value` itself when
/// `part == whole`.
pub(super) fn share(value: i64, part: i64, whole: i64) -> i64 {
    clamp(i128::from(value) * i128::from(part) / i128::from(whole.max(1)))
}

fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// Splits an order's `quantity` into units that close the opposite position (held on it:
/// a sell against a long, a buy against a short, less what other open orders already
/// hold) and units that open or add (which need cash). Returns `(held, opening)`.
pub fn split(side: Side, quantity: i64, net: i64, buy_held: i64, sell_held: i64) -> (i64, i64) {
    let closable = match side {
        Side::Buy => (-net - buy_held).max(0),
        Side::Sell => (net - sell_held).max(0),
    };
    let held = quantity.min(closable).max(0);
    (held, quantity - held)
}

/// The price each opening unit of `order` reserves, paise:
/// - an order the paper broker fills at once: its fill price;
/// - `LIMIT` and `STOPLOSS_LIMIT`: the limit price;
/// - a resting `STOPLOSS_MARKET` buy: the higher of its trigger and the last price, plus
///   [`STOP_MARKET_BUFFER_BPS`], rounded up to the tick; a sell: its trigger;
/// - `MARKET` (which the paper broker always fills at once): the last price.
pub fn reference_price(order: &OrderRequest, ltp: i64, fill: Option<i64>, tick: i64) -> i64 {
    if let Some(fill) = fill {
        return fill;
    }
    match (order.order_type, order.side) {
        (OrderType::Limit | OrderType::StoplossLimit, _) => order.price.unwrap_or(ltp),
        (OrderType::StoplossMarket, Side::Buy) => {
            let base = order.trigger_price.unwrap_or(ltp).max(ltp);
            round_up(with_buffer(base), tick)
        }
        (OrderType::StoplossMarket, Side::Sell) => order.trigger_price.unwrap_or(ltp),
        (OrderType::Market, _) => ltp,
    }
}

/// `price` plus [`STOP_MARKET_BUFFER_BPS`], rounded up.
fn with_buffer(price: i64) -> i64 {
    let scaled = i128::from(price) * i128::from(10_000 + STOP_MARKET_BUFFER_BPS);
    clamp((scaled + 9_999) / 10_000)
}

fn round_up(price: i64, tick: i64) -> i64 {
    let tick = tick.max(1);
    let rest = price.rem_euclid(tick);
    if rest == 0 {
        price
    } else {
        price.saturating_add(tick - rest)
    }
}

/// Whether `price` is a multiple of `tick`.
pub fn on_tick(price: i64, tick: i64) -> bool {
    tick <= 1 || price % tick == 0
}

/// Refuses a limit or trigger price that is not a multiple of the instrument's tick size.
pub fn check_ticks(order: &OrderRequest, tick: i64) -> Result<(), String> {
    for (name, price) in [
        ("price", order.price),
        ("trigger_price", order.trigger_price),
    ] {
        let Some(price) = price else { continue };
        let relevant = match name {
            "price" => order.order_type.has_limit(),
            _ => order.order_type.is_stop(),
        };
        if relevant && !on_tick(price, tick) {
            return Err(format!(
                "{name} {price} is not a multiple of {}:{}'s tick size of {tick} paise",
                order.exchange, order.symbol
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(fills: &[(Side, i64, i64)]) -> Book {
        let mut book = Book::default();
        for (side, quantity, price) in fills {
            book.fill(*side, *quantity, quantity * price);
        }
        book
    }

    #[test]
    fn averages_up_books_pnl_on_reduction_and_flips() {
        let p = fold(&[(Side::Buy, 10, 100), (Side::Buy, 10, 200)]);
        assert_eq!((p.net_quantity, p.average_price()), (20, Some(150)));
        let p = fold(&[
            (Side::Buy, 10, 100),
            (Side::Buy, 10, 200),
            (Side::Sell, 5, 250),
        ]);
        assert_eq!(
            (p.net_quantity, p.average_price(), p.realized_pnl),
            (15, Some(150), 500)
        );
        let p = fold(&[(Side::Buy, 10, 100), (Side::Sell, 15, 120)]);
        assert_eq!(
            (p.net_quantity, p.average_price(), p.realized_pnl),
            (-5, Some(120), 200)
        );
        assert_eq!(p.short_value(), 600);
        let p = fold(&[(Side::Sell, 4, 300), (Side::Buy, 4, 280)]);
        assert_eq!(
            (
                p.net_quantity,
                p.average_price(),
                p.realized_pnl,
                p.short_value()
            ),
            (0, None, 80, 0)
        );
        assert_eq!(
            (p.buy_quantity, p.sell_quantity, p.buy_value, p.sell_value),
            (4, 4, 1_120, 1_200)
        );
    }

    #[test]
    fn many_uneven_fills_keep_the_average_and_the_round_trips_pnl_exact() {
        // 36 buys of 1 to 3 units at prices that do not divide evenly, then the position
        // sold off in uneven parts, through a flip and back.
        let mut book = Book::default();
        let (mut units, mut cost) = (0, 0);
        for n in 0..36_i64 {
            let (quantity, price) = (1 + n % 3, 79_950 + (n * 37) % 71);
            book.fill(Side::Buy, quantity, quantity * price);
            units += quantity;
            cost += quantity * price;
            assert_eq!(book.average_price(), Some(cost / units), "after buy {n}");
        }
        for (quantity, price) in [(7, 80_013), (11, 79_991), (13, 80_007)] {
            book.fill(Side::Sell, quantity, quantity * price);
        }
        let left = book.net_quantity;
        book.fill(Side::Sell, left + 5, (left + 5) * 80_021);
        assert_eq!(
            (book.net_quantity, book.average_price()),
            (-5, Some(80_021))
        );
        book.fill(Side::Buy, 5, 5 * 80_001);
        assert_eq!((book.net_quantity, book.open_cost), (0, 0));
        assert_eq!(
            book.realized_pnl,
            book.sell_value - book.buy_value,
            "flat: the P&L is what was sold less what was bought, to the paisa"
        );
    }

    #[test]
    fn orders_close_the_opposite_position_first_and_open_with_the_rest() {
        // Long 10, 4 of them already held for another sell: 6 close, 3 would go short.
        assert_eq!(split(Side::Sell, 9, 10, 0, 4), (6, 3));
        // A buy against a long opens entirely.
        assert_eq!(split(Side::Buy, 5, 10, 0, 0), (0, 5));
        // A buy covers a short of 8, 2 held by another buy.
        assert_eq!(split(Side::Buy, 10, -8, 2, 0), (6, 4));
        // Flat: everything opens.
        assert_eq!(split(Side::Sell, 3, 0, 0, 0), (0, 3));
    }

    fn order(
        order_type: OrderType,
        side: Side,
        price: Option<i64>,
        trigger: Option<i64>,
    ) -> OrderRequest {
        OrderRequest {
            client_order_id: "c".into(),
            exchange: "NSE".into(),
            symbol: "SBIN-EQ".into(),
            side,
            order_type,
            quantity: 1,
            price,
            trigger_price: trigger,
            product: Default::default(),
            account: None,
        }
    }

    #[test]
    fn reference_prices_cover_every_order_type() {
        let limit = order(OrderType::Limit, Side::Buy, Some(900), None);
        assert_eq!(reference_price(&limit, 1_000, None, 5), 900);
        assert_eq!(
            reference_price(&limit, 1_000, Some(880), 5),
            880,
            "a fill costs its price"
        );
        // A buy stop: the trigger (above the market) plus 1 % (1,015.05), up to the tick.
        let stop = order(OrderType::StoplossMarket, Side::Buy, None, Some(1_005));
        assert_eq!(reference_price(&stop, 1_000, None, 5), 1_020);
        // ... or the market, when the market is already above the trigger.
        assert_eq!(reference_price(&stop, 2_000, None, 5), 2_020);
        let huge = order(
            OrderType::StoplossMarket,
            Side::Buy,
            None,
            Some(1_000_000_000_000_000),
        );
        assert!(reference_price(&huge, 1_000, None, 5) > 1_000_000_000_000_000);
        let sell_stop = order(OrderType::StoplossMarket, Side::Sell, None, Some(950));
        assert_eq!(reference_price(&sell_stop, 1_000, None, 5), 950);
    }

    #[test]
    fn limit_and_trigger_prices_must_be_on_the_tick() {
        let on = order(OrderType::StoplossLimit, Side::Buy, Some(1_000), Some(995));
        assert!(check_ticks(&on, 5).is_ok());
        let off = order(OrderType::Limit, Side::Buy, Some(1_001), None);
        assert!(check_ticks(&off, 5)
            .expect_err("off the tick")
            .contains("tick size of 5"));
        let off_trigger = order(OrderType::StoplossMarket, Side::Sell, None, Some(951));
        assert!(check_ticks(&off_trigger, 5).is_err());
        // A market order's (ignored) price is not checked; a tick of 1 accepts anything.
        assert!(check_ticks(&order(OrderType::Market, Side::Buy, Some(3), None), 5).is_ok());
        assert!(check_ticks(&off, 1).is_ok());
    }
}
