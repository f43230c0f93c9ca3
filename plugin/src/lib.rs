//! tally's proxy-wasm network filter: a thin adapter over the `tally` core.
//!
//! Per connection: a [`tally::kafka::ConnectionDecoder`] reads both byte streams
//! and feeds a [`tally::meter::ConnectionMeter`]; the mTLS principal comes from
//! Envoy's connection properties. Per worker VM: a [`tally::meter::Meter`]
//! absorbs connections (at most once a second each, when they ask, and when they
//! close), increments labelled Envoy counters ([`names`]), and every
//! `flush_interval_seconds` drains usage rows into a bounded retry buffer
//! ([`flush`]) posted with `dispatch_http_call`.
//!
//! Fail open, always: every callback returns `Action::Continue`, nothing here
//! closes, pauses or alters a connection; a host call that fails is ignored.
//! Configuration: [`config`]; a bad one makes `on_configure` return false.

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod config;
pub mod flush;
pub mod names;

#[cfg(target_arch = "wasm32")]
mod host;
