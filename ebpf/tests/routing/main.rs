//! The routing builder end to end on miniature fleets: render → plan → documents, east-west
//! Services and diagnostics, checked against hand-computed expectations.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod documents;
mod eastwest;
mod gateways;
mod modes;
mod policies;
mod util;
mod vips;
