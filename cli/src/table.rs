//! Results as tables for people (the trader's and the operator's verbs; `--json` prints
//! the same values as JSON instead).

use serde_json::{Map, Value};

/// How a result is laid out as a table.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// One order record, field per line.
    Order,
    /// Any map, field per line.
    Fields,
    /// Funds: amounts in rupees.
    Money,
    /// A list under `key`, these columns.
    List(&'static str, &'static [&'static str]),
}

/// One value as a table cell: `-` for null, a list of strings joined by commas.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let items: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            items.join(",")
        }
        other => other.to_string(),
    }
}

/// The fields of orders, positions, trades, ticks, candles and instruments that hold an
/// amount of money in paise: a table shows them in rupees (with `--json` they stay paise,
/// as on the wire).
const PAISE_FIELDS: &[&str] = &[
    "price",
    "trigger_price",
    "average_price",
    "realized_pnl",
    "ltp",
    "bid",
    "ask",
    "open",
    "high",
    "low",
    "close",
    "avg_price",
    "upper_circuit",
    "lower_circuit",
    "tick_size",
];

/// `value` as a table shows it under `field`: an amount of money in rupees.
fn field_cell(field: &str, value: &Value) -> String {
    match value.as_i64() {
        Some(paise) if PAISE_FIELDS.contains(&field) => rupees_text(paise),
        _ => cell(value),
    }
}

/// Paise as `₹1234.50` (`-₹0.05` below zero).
fn rupees_text(paise: i64) -> String {
    let sign = if paise < 0 { "-" } else { "" };
    let abs = paise.unsigned_abs();
    format!("{sign}₹{}.{:02}", abs / 100, abs % 100)
}

/// A result as text for people.
pub fn render(result: &Value, shape: Shape) -> String {
    let empty = Map::new();
    let fields = result.as_object().unwrap_or(&empty);
    match shape {
        Shape::Order | Shape::Fields => {
            let width = fields.keys().map(String::len).max().unwrap_or(0);
            fields
                .iter()
                .map(|(k, v)| format!("{k:width$}  {}\n", field_cell(k, v)))
                .collect()
        }
        Shape::Money => fields
            .iter()
            .map(|(k, v)| match v.as_i64() {
                Some(paise) => format!("{k:10} {}\n", rupees_text(paise)),
                None => format!("{k:10} {}\n", cell(v)),
            })
            .collect(),
        Shape::List(key, columns) => {
            let rows: Vec<Vec<String>> = result[key]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|row| columns.iter().map(|c| field_cell(c, &row[*c])).collect())
                        .collect()
                })
                .unwrap_or_default();
            if rows.is_empty() {
                return format!("(no {key})\n");
            }
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    rows.iter()
                        .map(|r| r[i].chars().count())
                        .chain([c.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<String>| {
                let mut out: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:w$}"))
                    .collect();
                if let Some(last) = out.last_mut() {
                    *last = last.trim_end().to_string();
                }
                out.join("  ") + "\n"
            };
            let mut out = line(columns.iter().map(|c| c.to_uppercase()).collect());
            for row in rows {
                out.push_str(&line(row));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_are_tables_and_funds_are_rupees() {
        let result = json!({"orders": [
            {"order_id": "a", "status": "FILLED", "quantity": 10},
            {"order_id": "bb", "status": "OPEN", "quantity": 5},
        ]});
        let text = render(
            &result,
            Shape::List("orders", &["order_id", "status", "quantity"]),
        );
        assert_eq!(
            text,
            "ORDER_ID  STATUS  QUANTITY\na         FILLED  10\nbb        OPEN    5\n"
        );
        assert_eq!(
            render(&json!({"orders": []}), Shape::List("orders", &["x"])),
            "(no orders)\n"
        );
        let funds = render(&json!({"cash": 100_000_050, "used": -5}), Shape::Money);
        assert!(funds.contains("₹1000000.50"), "{funds}");
        assert!(funds.contains("-₹0.05"), "{funds}");
        let order = render(
            &json!({"price": 70_050, "quantity": 3, "trigger_price": null}),
            Shape::Order,
        );
        assert!(order.contains("₹700.50"), "{order}");
        assert!(order.contains("quantity       3"), "{order}");
        let candles = render(
            &json!({"candles": [{"open": 5, "volume": 5}]}),
            Shape::List("candles", &["open", "volume"]),
        );
        assert_eq!(candles, "OPEN   VOLUME\n₹0.05  5\n");
        let scopes = render(
            &json!({"tokens": [{"id": "t1", "scopes": ["trade", "read"]}]}),
            Shape::List("tokens", &["id", "scopes"]),
        );
        assert_eq!(scopes, "ID  SCOPES\nt1  trade,read\n");
    }
}
