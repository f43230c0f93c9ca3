//! The usage flush's bounded retry buffer (host-agnostic, tested natively).
//!
//! Every tick the worker's meter is drained into the buffer; one POST at a time
//! carries up to [`MAX_ROWS_PER_POST`] rows from its front. A 2xx answer removes
//! them; anything else (non-2xx, timeout, reset, a dispatch refused by Envoy)
//! puts them back in front for the next tick. The buffer holds at most
//! `capacity` rows (in flight included): when more arrive, the **oldest**
//! waiting rows are dropped and counted — never silently.
//!
//! Across Envoy's worker threads: each worker has its own VM, meter and buffer,
//! and posts only the rows it counted. Rows are additive (a reader sums rows
//! with the same key), so no row is lost or counted twice without any
//! cross-thread coordination.

use std::collections::VecDeque;
use tally::usage::{write_usage_csv, UsageRow};

/// Most rows in one POST body.
pub const MAX_ROWS_PER_POST: usize = 5000;

/// Counters of the flush, exported as Envoy stats.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    /// Rows accepted by the sink (2xx).
    pub rows_posted: u64,
    /// Rows dropped because the buffer was full.
    pub rows_dropped: u64,
    /// POSTs that failed (non-2xx, no response, or refused dispatch).
    pub failures: u64,
}

/// The retry buffer.
#[derive(Debug, Default)]
pub struct Outbox {
    capacity: usize,
    waiting: VecDeque<UsageRow>,
    in_flight: Option<(u32, Vec<UsageRow>)>,
    stats: FlushStats,
}

impl Outbox {
    /// A buffer for at most `capacity` rows.
    pub fn new(capacity: usize) -> Self {
        Outbox {
            capacity,
            ..Outbox::default()
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> FlushStats {
        self.stats
    }

    /// Rows waiting (not in flight).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Whether a POST is outstanding.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Adds freshly drained rows; drops the oldest waiting rows past capacity.
    /// Returns how many were dropped now.
    pub fn push(&mut self, rows: Vec<UsageRow>) -> u64 {
        self.waiting.extend(rows);
        self.trim()
    }

    fn trim(&mut self) -> u64 {
        let in_flight = self.in_flight.as_ref().map_or(0, |(_, r)| r.len());
        let room = self.capacity.saturating_sub(in_flight);
        let mut dropped = 0u64;
        while self.waiting.len() > room {
            self.waiting.pop_front();
            dropped = dropped.saturating_add(1);
        }
        self.stats.rows_dropped = self.stats.rows_dropped.saturating_add(dropped);
        dropped
    }

    /// The next body to POST, if idle and something is waiting. The caller
    /// dispatches it and then calls [`Outbox::sent`] or [`Outbox::refused`].
    pub fn next_body(&mut self) -> Option<(String, Vec<UsageRow>)> {
        if self.in_flight.is_some() || self.waiting.is_empty() {
            return None;
        }
        let n = self.waiting.len().min(MAX_ROWS_PER_POST);
        let rows: Vec<UsageRow> = self.waiting.drain(..n).collect();
        Some((write_usage_csv(&rows), rows))
    }

    /// The POST carrying `rows` was dispatched with `token`.
    pub fn sent(&mut self, token: u32, rows: Vec<UsageRow>) {
        self.in_flight = Some((token, rows));
    }

    /// Envoy refused to dispatch: the rows wait again (counted as a failure).
    pub fn refused(&mut self, rows: Vec<UsageRow>) {
        self.stats.failures = self.stats.failures.saturating_add(1);
        self.put_back(rows);
    }

    fn put_back(&mut self, rows: Vec<UsageRow>) {
        for row in rows.into_iter().rev() {
            self.waiting.push_front(row);
        }
        self.trim();
    }

    /// The answer to POST `token`: `status` is the HTTP status, `None` when
    /// there was no response. Returns whether `token` was ours.
    pub fn answered(&mut self, token: u32, status: Option<u16>) -> bool {
        let Some((t, _)) = &self.in_flight else {
            return false;
        };
        if *t != token {
            return false;
        }
        let Some((_, rows)) = self.in_flight.take() else {
            return false;
        };
        match status {
            Some(200..=299) => {
                self.stats.rows_posted = self.stats.rows_posted.saturating_add(rows.len() as u64);
            }
            _ => {
                self.stats.failures = self.stats.failures.saturating_add(1);
                self.put_back(rows);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally::time::Timestamp;
    use tally::usage::Metric;

    fn row(v: u64) -> UsageRow {
        UsageRow {
            bucket_start: Timestamp(0),
            bucket_end: Timestamp(300),
            cluster: "c".into(),
            principal: "p".into(),
            principal_source: "client_id".into(),
            topic: String::new(),
            metric: Metric::Requests,
            value: v,
        }
    }

    #[test]
    fn success_failure_retry_and_bounded_drop() {
        let mut o = Outbox::new(3);
        assert_eq!(o.push(vec![row(1), row(2)]), 0);
        let (body, rows) = o.next_body().unwrap();
        assert!(body.starts_with("version,"));
        assert_eq!(body.lines().count(), 3);
        o.sent(7, rows);
        assert!(o.next_body().is_none(), "one POST at a time");
        // Two more arrive while 2 are in flight: room for 1, the oldest waiting is dropped.
        assert_eq!(o.push(vec![row(3), row(4)]), 1);
        assert!(!o.answered(8, Some(200)), "not our token");
        // The POST fails: its rows come back in front; capacity 3 drops one more (oldest).
        assert!(o.answered(7, Some(503)));
        assert_eq!(o.stats().failures, 1);
        assert_eq!(o.waiting(), 3);
        assert_eq!(o.stats().rows_dropped, 1);
        let (_, rows) = o.next_body().unwrap();
        assert_eq!(
            rows.iter().map(|r| r.value).collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
        o.sent(9, rows);
        assert!(o.answered(9, None), "no response is a failure too");
        let (_, rows) = o.next_body().unwrap();
        o.sent(10, rows);
        assert!(o.answered(10, Some(204)));
        assert_eq!(
            o.stats(),
            FlushStats {
                rows_posted: 3,
                rows_dropped: 1,
                failures: 2
            }
        );
        assert!(o.next_body().is_none());
        // Every row is either posted once or counted as dropped: 4 = 3 + 1.
    }

    #[test]
    fn refused_dispatch_keeps_rows() {
        let mut o = Outbox::new(10);
        o.push(vec![row(1)]);
        let (_, rows) = o.next_body().unwrap();
        o.refused(rows);
        assert_eq!(o.waiting(), 1);
        assert_eq!(o.stats().failures, 1);
    }

    #[test]
    fn large_backlogs_go_in_several_posts() {
        let mut o = Outbox::new(usize::MAX);
        o.push((0..(MAX_ROWS_PER_POST as u64 + 5)).map(row).collect());
        let (_, a) = o.next_body().unwrap();
        assert_eq!(a.len(), MAX_ROWS_PER_POST);
        o.sent(1, a);
        o.answered(1, Some(200));
        let (_, b) = o.next_body().unwrap();
        assert_eq!(b.len(), 5);
    }
}
