//! Fault injection: the next N matching REST requests misbehave in a chosen way.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One injected misbehaviour. `route` is the last path segment (`placeOrder`,
/// `getOrderBook`, `loginByPassword`, `details`, `quote`, …) or `*` for every REST route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Fault {
    /// Process the request, then hold the reply for `delay` (the client times out).
    SlowReply {
        route: String,
        #[serde(with = "millis")]
        delay: Duration,
        times: u32,
    },
    /// Do not process; hold the request for `delay`, then answer an empty HTTP 504: a
    /// request that never reached the broker (the client times out first).
    Unanswered {
        route: String,
        #[serde(with = "millis")]
        delay: Duration,
        times: u32,
    },
    /// Process the request, then answer `status` with an empty body.
    EmptyBody {
        route: String,
        status: u16,
        times: u32,
    },
    /// Do not process; answer the plain-text HTTP 403 of a rate-limit breach.
    RateLimited { route: String, times: u32 },
    /// Do not process; answer a `status:false` envelope with this code and message.
    BusinessError {
        route: String,
        code: String,
        message: String,
        times: u32,
    },
}

impl Fault {
    fn route(&self) -> &str {
        match self {
            Fault::SlowReply { route, .. }
            | Fault::Unanswered { route, .. }
            | Fault::EmptyBody { route, .. }
            | Fault::RateLimited { route, .. }
            | Fault::BusinessError { route, .. } => route,
        }
    }

    fn times_mut(&mut self) -> &mut u32 {
        match self {
            Fault::SlowReply { times, .. }
            | Fault::Unanswered { times, .. }
            | Fault::EmptyBody { times, .. }
            | Fault::RateLimited { times, .. }
            | Fault::BusinessError { times, .. } => times,
        }
    }
}

/// Pending faults in injection order.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    pending: Vec<Fault>,
}

impl FaultBook {
    pub fn inject(&mut self, mut fault: Fault) {
        if *fault.times_mut() > 0 {
            self.pending.push(fault);
        }
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Consumes one use of the first fault matching `route`, if any.
    pub fn take(&mut self, route: &str) -> Option<Fault> {
        let idx = self
            .pending
            .iter()
            .position(|f| f.route() == "*" || f.route() == route)?;
        let fault = self.pending[idx].clone();
        let t = self.pending[idx].times_mut();
        *t -= 1;
        if *t == 0 {
            self.pending.remove(idx);
        }
        Some(fault)
    }
}

/// `Duration` as integer milliseconds in JSON (`"delay": 1500`).
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
