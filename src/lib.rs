//! # tally — Kafka chargeback from one core
//!
//! tally meters Kafka usage per principal where the traffic already flows (inside
//! Envoy, as a proxy-wasm network filter) and turns bills plus usage into exact,
//! reconciled chargeback reports (in the browser, or on the command line). This
//! crate is the host-agnostic core that both WebAssembly builds share; it does no
//! I/O, makes no host calls and never panics on input.
//!
//! ## Design
//!
//! The metering half is a pipeline of push-style stages:
//!
//! ```text
//!  bytes (any chunking) ─► kafka::ConnectionDecoder ─► kafka::Sink ─► meter::Meter ─► usage::UsageRow
//! ```
//!
//! * [`kafka`] decodes the Kafka wire protocol as it streams by: only the bytes a
//!   header needs are buffered, record payloads are skipped by count, and any
//!   malformed input switches that connection to raw byte counting (fail open).
//! * [`meter`] turns decoder events into per (bucket, principal, topic) counters
//!   with a bounded number of series, and drains them as usage rows.
//! * [`usage`] is the usage CSV contract shared by the plugin (writer) and the
//!   allocation side (reader).
//!
//! The allocation half reads exports, allocates, rolls up and writes:
//!
//! ```text
//!  chunks of files ─► formats (readers) ─► model ─► allocate (rules) ─► report ─► formats (writers)
//! ```
//!
//! * [`model`] holds the records every reader produces and the allocator consumes.
//! * [`money`] is exact apportionment of `Decimal` amounts (largest remainder).
//! * [`time`] is UTC timestamps and calendar buckets (hour, day, ISO week, month).
//! * [`session`] is the one entry point the command line and the browser share, so
//!   both give identical results for the same inputs.
//!
//! Host capabilities the core needs (the clock, a place for counters) are small
//! traits implemented by the adapters in `plugin/` and `web/`.

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod allocate;
pub mod error;
pub mod formats;
pub mod kafka;
pub mod labels;
mod memory;
pub mod meter;
pub mod model;
pub mod money;
pub mod report;
pub mod session;
mod threads;
pub mod time;
pub mod usage;

pub use error::Error;
