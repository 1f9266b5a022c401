//! End-to-end tests of the simulator over raw HTTP and WebSockets (no Pinnacle client).

mod feed;
mod helpers;
mod order_ws;
mod rest_auth;
mod rest_faults;
mod rest_orders;
mod time;
