//! A 100 MB line is refused without exhausting memory. Alone in its test binary
//! so that the peak-memory measurement sees no other test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{peak_kib, USAGE_HEADER};
use tally::session::{Options, Session};

#[test]
fn a_100_mb_line_is_refused_without_buffering_it() {
    let mut session = Session::new(Options::default());
    let id = session.begin_file("huge.csv", "");
    session.feed(id, USAGE_HEADER.as_bytes()).unwrap();
    session
        .feed(id, b"1,2026-04-02T00:00:00Z,2026-04-02T00:05:00Z,lkc-1,")
        .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let before = peak_kib();
    for _ in 0..100 {
        session.feed(id, &chunk).unwrap();
    }
    session.feed(id, b",mtls,t,produced_bytes,1\n1,2026-04-02T00:00:00Z,2026-04-02T00:05:00Z,lkc-1,sa-ok,mtls,t,produced_bytes,5\n").unwrap();
    let summary = session.end_file(id).unwrap();
    let grown_mib = (peak_kib().saturating_sub(before)) / 1024;
    assert_eq!(
        (
            summary.rows_read,
            summary.rows_accepted,
            summary.rows_rejected
        ),
        (2, 1, 1)
    );
    assert_eq!(summary.rejections[0].line, 2);
    assert!(
        summary.rejections[0].reason.contains("limit"),
        "{:?}",
        summary.rejections[0]
    );
    assert!(grown_mib < 48, "peak memory grew by {grown_mib} MiB");
}
