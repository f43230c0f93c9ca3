//! A 100 MB WarpStream entity name or Prometheus label value is refused
//! without holding it, and the rest of the document is read. Alone in its test
//! binary so that the peak-memory measurement sees no other test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::peak_kib;
use tally::session::{Options, Session};

#[test]
fn a_100_mb_json_string_is_refused_without_holding_it() {
    // (name, text before the string, text after it, rows accepted, line refused)
    let cases = [
        (
            "ws.json",
            "{\"date_from\": \"2026-05-01\", \"date_to\": \"2026-06-01\", \"tenants\": [\n\
             {\"workspaces\": [{\"clusters\": [{\"virtual_cluster_id\": \"v\", \"entities\": [\n\
             {\"name\": \"",
            "\", \"total\": 1, \"chargebacks\": []},\n\
             {\"name\": \"ok\", \"total\": 1, \"chargebacks\": [{\"product\": \"Cluster minutes\", \
             \"unit_price\": 1, \"quantity\": 100, \"total\": 1}]}]}]}]}]}\n",
            1,
            3,
        ),
        (
            "prom.json",
            "{\"status\": \"success\", \"data\": {\"resultType\": \"matrix\", \"result\": [\n\
             {\"metric\": {\"__name__\": \"tally_produced_bytes_total\", \"topic\": \"t\", \"principal\": \"",
            "\"}, \"values\": [[1779606000, \"0\"], [1779606300, \"5\"]]},\n\
             {\"metric\": {\"__name__\": \"tally_produced_bytes_total\", \"topic\": \"t\", \"principal\": \"p\"}, \
             \"values\": [[1779606000, \"0\"], [1779606300, \"5\"]]}]}}\n",
            1,
            2,
        ),
    ];
    let chunk = vec![b'x'; 1 << 20];
    for (name, before, after, accepted, line) in cases {
        let mut session = Session::new(Options::default());
        let id = session.begin_file(name, "");
        session.feed(id, before.as_bytes()).unwrap();
        let peak = peak_kib();
        for _ in 0..100 {
            session.feed(id, &chunk).unwrap();
        }
        session.feed(id, after.as_bytes()).unwrap();
        let summary = session.end_file(id).unwrap();
        let grown_mib = peak_kib().saturating_sub(peak) / 1024;
        assert_eq!(
            (summary.rows_accepted, summary.rows_rejected),
            (accepted, 1),
            "{name}"
        );
        assert_eq!(summary.rejections[0].line, line, "{name}");
        assert!(
            summary.rejections[0].reason.contains("limit"),
            "{name}: {:?}",
            summary.rejections[0]
        );
        assert!(
            grown_mib < 48,
            "{name}: peak memory grew by {grown_mib} MiB"
        );
    }
}
