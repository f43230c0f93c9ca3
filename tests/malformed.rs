//! Every reader fed malformed input gives a clear error and never panics; every
//! input row is either accepted or rejected, and both are counted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{run_bytes, USAGE_HEADER};
use rust_decimal::Decimal;
use tally::session::{Options, Session};
use tally::Error;

const BILL_HEADER: &str =
    "start_date,end_date,product,line_type,resource_id,environment_id,amount\n";

fn one_file(name: &str, bytes: &[u8]) -> Result<tally::session::FileSummary, Error> {
    let mut session = Session::new(Options::default());
    let id = session.begin_file(name, "");
    session.feed(id, bytes)?;
    session.end_file(id)
}

#[test]
fn missing_column_names_the_accepted_aliases() {
    let err = one_file(
        "export.csv",
        b"timestamp,environment_id,resource_id,product,line_type,chargeback_cost\n",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::MissingColumn { .. }), "{err:?}");
    assert!(
        text.contains("owner_id") && text.contains("principal") && text.contains("entity_id"),
        "{text}"
    );
}

#[test]
fn unknown_formats_and_empty_files_are_refused_clearly() {
    let err = one_file("x.csv", b"a,b,c\n1,2,3\n").unwrap_err();
    assert!(matches!(err, Error::UnknownFormat { .. }), "{err}");
    assert!(err.to_string().contains("chargeback_cost"), "{err}");
    let err = one_file("x.json", b"{\"hello\": 1}").unwrap_err();
    assert!(matches!(err, Error::UnknownFormat { .. }), "{err}");
    let err = one_file("empty.csv", b"").unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let err = one_file("header-only-bom.csv", b"\xEF\xBB\xBF").unwrap_err();
    assert!(
        matches!(err, Error::UnknownFormat { .. } | Error::Input { .. }),
        "{err}"
    );
}

#[test]
fn bad_numbers_dates_and_fields_are_rejected_with_file_line_column() {
    let bill = format!(
        "{BILL_HEADER}2026-04-01,2026-05-01,kafka,KafkaStorage,lkc-1,env-1,12.50\n\
         2026-04-01,2026-05-01,kafka,KafkaStorage,lkc-1,env-1,twelve\n\
         2026-13-01,2026-05-01,kafka,KafkaStorage,lkc-1,env-1,1\n\
         2026-04-01,2026-03-01,kafka,KafkaStorage,lkc-1,env-1,1\n\
         2026-04-01,2026-05-01,,KafkaStorage,lkc-1,env-1,1\n"
    );
    let summary = one_file("bill.csv", bill.as_bytes()).unwrap();
    assert_eq!(
        (
            summary.rows_read,
            summary.rows_accepted,
            summary.rows_rejected
        ),
        (5, 1, 4)
    );
    let got: Vec<(u64, &str)> = summary
        .rejections
        .iter()
        .map(|r| (r.line, r.column.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (3, "amount"),
            (4, "start_date"),
            (5, "end_date"),
            (6, "product")
        ]
    );
    assert!(summary.rejections[0].reason.contains("twelve"));
    assert_eq!(summary.rejections[0].file, "bill.csv");
}

#[test]
fn bom_crlf_and_quoted_commas_are_read() {
    let usage = "\u{feff}version,bucket_start,bucket_end,cluster,principal,principal_source,topic,metric,value\r\n\
                 1,2026-04-02T00:00:00Z,2026-04-02T00:05:00Z,lkc-1,\"CN=orders,O=acme\",mtls,t,produced_bytes,10\r\n\
                 1,2026-04-02T00:00:00Z,2026-04-02T00:05:00Z,lkc-1,\"say \"\"hi\"\"\",mtls,t,produced_bytes,30\r\n";
    let bill =
        format!("{BILL_HEADER}2026-04-01,2026-05-01,kafka,KafkaNetworkWrite,lkc-1,env-1,4.00\r\n");
    let (report, files) = run_bytes(
        Options::default(),
        &[
            ("usage.csv", usage.as_bytes().to_vec()),
            ("bill.csv", bill.into_bytes()),
        ],
        5,
    );
    assert!(files.iter().all(|f| f.rows_rejected == 0), "{files:?}");
    let got: Vec<(String, String)> = report
        .rows
        .iter()
        .map(|r| (r.owner_id.to_string(), r.chargeback_cost.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("CN=orders,O=acme".into(), "1.00".into()),
            ("say \"hi\"".into(), "3.00".into())
        ]
    );
    assert!(report.confluent_csv().contains("\"CN=orders,O=acme\""));
}

#[test]
fn confluent_costs_json_streams_items_and_rejects_bad_ones() {
    let json = br#"{"data":[
        {"id":"a","amount":2.5,"product":"KAFKA","line_type":"KafkaStorage","start_date":"2026-04-01","end_date":"2026-05-01","resource":{"id":"lkc-1","environment":{"id":"env-1"}}},
        {"id":"b","amount":"oops","product":"KAFKA","line_type":"KafkaStorage","start_date":"2026-04-01","end_date":"2026-05-01","resource":{"id":"lkc-1"}},
        {"id":"c","amount":1,"product":"SUPPORT","line_type":"Support","start_date":"2026-04-01","end_date":"2026-05-01"}
    ],"metadata":{"next":null}}"#;
    for chunk in [1, 7, 4096] {
        let (report, files) =
            run_bytes(Options::default(), &[("costs.json", json.to_vec())], chunk);
        let f = &files[0];
        assert_eq!(f.format, "confluent_costs_json");
        assert_eq!(
            (f.rows_read, f.rows_accepted, f.rows_rejected),
            (3, 2, 1),
            "chunk {chunk}"
        );
        assert_eq!(f.rejections[0].column, "data[1].amount");
        assert_eq!(report.reconciliation.bill_total.to_string(), "3.50");
    }
    let err = one_file("cut.json", br#"{"data":[{"amount":1,"product":"K""#).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// A Billing API item with `amount` and `quantity` written as given.
fn costs_item(amount: &str, quantity: &str) -> String {
    format!(
        r#"{{"data":[{{"id":"a","amount":{amount},"quantity":{quantity},"product":"KAFKA","line_type":"KafkaStorage","start_date":"2026-04-01","end_date":"2026-05-01","resource":{{"id":"lkc-1"}}}}]}}"#
    )
}

/// The Billing API reader parsed items with serde_json, which reads a number
/// with a fraction as an `f64` and an integer past `u64` likewise: digits past
/// the 17th were changed (1234567890.123456789 was allocated as
/// 1234567890.123456700; a 21-digit quantity was written `1.2345678901234568e20`
/// and read back as 123456789012345680000). Every digit is kept now. The
/// second and last cases (a short fraction, numbers in strings) were right
/// before too: they check that nothing else changed.
#[test]
fn confluent_costs_json_numbers_keep_every_digit() {
    // (amount, quantity, as written; the FOCUS PricingQuantity: the one
    // line's whole quantity at 6 places). The line's amount and quantity are
    // the written ones exactly, and so is the amount allocated at precision 9.
    let cases = [
        ("1234567890.123456789", "2", "2"),
        ("0.000000001", "1", "1"),
        ("10", "12345678901234.567891", "12345678901234.567891"),
        ("10", "123456789012345678901", "123456789012345678901"),
        ("10", "1.2345678901234567891e3", "1234.56789"),
        ("\"10\"", "\"98765432109876543.21\"", "98765432109876543.21"),
    ];
    for (amount, quantity, written_quantity) in cases {
        let options = Options {
            precision: 9,
            ..Options::default()
        };
        let json = costs_item(amount, quantity);
        let (report, files) = run_bytes(options, &[("costs.json", json.into_bytes())], 4096);
        assert_eq!(files[0].rows_accepted, 1, "{amount} {quantity}: {files:?}");
        let exact = |text: &str| {
            let text = text.trim_matches('"');
            tally::formats::exact_json::decimal_from_number(text).unwrap()
        };
        assert_eq!(report.lines[0].amount, exact(amount), "{amount}");
        assert_eq!(report.lines[0].quantity, exact(quantity), "{quantity}");
        let allocated: Vec<Decimal> = report.rows.iter().map(|r| r.chargeback_cost).collect();
        assert_eq!(allocated, [exact(amount)], "{amount}");
        let focus = common::records(&report.focus_csv().unwrap());
        let col = |name: &str| focus[0].iter().position(|c| c == name).unwrap();
        assert_eq!(
            focus[1][col("PricingQuantity")],
            written_quantity,
            "{quantity}"
        );
    }
}

/// A rejection as (line, column, reason).
type Rejection = (u64, &'static str, &'static str);

/// A field of the wrong JSON type (`true`, an object, an array where a
/// string or number belongs) was read as an empty field: `"id": true` was
/// accepted with no id, `"resource": {"id": {…}}` with no resource. It is
/// refused now, naming the field and its line; an error in a field of an
/// item over several lines names the field's line, not the item's first.
#[test]
fn confluent_costs_json_refuses_fields_of_the_wrong_type_at_their_line() {
    const TWELVE: &str = "not a number: `twelve` (digits with an optional leading `-`, one `.` between digits and an optional exponent, such as `-1234.50` or `1.5E-3`; no currency sign, digit separator or `+`)";
    const REST: &str = r#""product":"KAFKA","line_type":"KafkaStorage","start_date":"2026-04-01","end_date":"2026-05-01""#;
    // (item, its rejection as (line, column, reason), None if accepted);
    // line 1 is `{"data":[`, the first item is on line 2
    let cases: [(String, Option<Rejection>); 11] = [
        (
            format!(r#"{{"id":"a","amount":1,{REST},"resource":{{"id":"lkc-1"}}}}"#),
            None,
        ),
        (
            format!(r#"{{"id":null,"amount":1,{REST},"resource":null}}"#),
            None,
        ),
        (
            format!(r#"{{"id":true,"amount":1,{REST}}}"#),
            Some((
                4,
                "data[2].id",
                "expected a string or a number, found a boolean",
            )),
        ),
        (
            format!(r#"{{"amount":1,{REST},"resource":{{"id":{{"x":1}}}}}}"#),
            Some((
                5,
                "data[3].resource.id",
                "expected a string or a number, found an object",
            )),
        ),
        (
            format!(r#"{{"amount":1,{REST},"resource":"lkc-1"}}"#),
            Some((6, "data[4].resource", "expected an object, found a string")),
        ),
        (
            format!(r#"{{"amount":[1],{REST}}}"#),
            Some((
                7,
                "data[5].amount",
                "expected a string or a number, found an array",
            )),
        ),
        (
            format!(r#"{{"amount":1,{REST},"resource":{{"environment":{{"id":false}}}}}}"#),
            Some((
                8,
                "data[6].resource.environment.id",
                "expected a string or a number, found a boolean",
            )),
        ),
        (
            "7".to_string(),
            Some((9, "data[7]", "expected an object, found a number")),
        ),
        // Items over several lines: the error's own line.
        (
            format!("{{\"id\":\"m\",\n\"amount\":\"twelve\",\n{REST}}}"),
            Some((11, "data[8].amount", TWELVE)),
        ),
        (
            format!("{{\"id\":\"m\",\n{REST},\n\"unit\":\n{{\"a\":1}}}}"),
            Some((
                16,
                "data[9].unit",
                "expected a string or a number, found an object",
            )),
        ),
        (
            format!("{{\"id\":\"m\",\n\"amount\":1.,\n{REST}}}"),
            Some((18, "data[10]", "invalid JSON number: no digit after `.`")),
        ),
    ];
    let mut json = String::from("{\"data\":[\n");
    let mut want = Vec::new();
    for (i, (item, rejection)) in cases.iter().enumerate() {
        json.push_str(item);
        json.push_str(if i + 1 < cases.len() { ",\n" } else { "\n" });
        want.extend(*rejection);
    }
    json.push_str("]}");
    for chunk in [1, 4096] {
        let (_, files) = run_bytes(
            Options::default(),
            &[("costs.json", json.clone().into_bytes())],
            chunk,
        );
        let f = &files[0];
        assert_eq!((f.rows_read, f.rows_accepted), (11, 2), "chunk {chunk}");
        assert_eq!(rejections_of(f), want, "chunk {chunk}");
        assert_eq!(f.rejections[0].file, "costs.json");
    }
}

#[test]
fn every_row_is_accepted_or_rejected_and_counted() {
    let usage = format!(
        "{USAGE_HEADER}1,2026-04-02T00:00:00Z,2026-04-02T00:05:00Z,lkc-1,sa-a,mtls,t,produced_bytes,10\n\
         2,2026-04-02T00:00:00Z,2026-04-02T00:05:00Z,lkc-1,sa-a,mtls,t,produced_bytes,10\n\
         1,2026-04-02T00:00:00Z,2026-04-02T00:05:00Z,lkc-1,sa-a,mtls,t,produced_bytes,-3\n\
         1,2026-04-02T00:00:00Z,2026-04-02T00:05:00Z,,sa-a,mtls,t,produced_bytes,3\n\
         1,2026-04-02T00:00:00Z\n"
    );
    let (report, files) = run_bytes(Options::default(), &[("u.csv", usage.into_bytes())], 3);
    let f = &files[0];
    assert_eq!((f.rows_read, f.rows_accepted, f.rows_rejected), (5, 1, 4));
    assert!(
        f.rejections[0].reason.contains("newer"),
        "{:?}",
        f.rejections[0]
    );
    assert_eq!(report.reconciliation.rows_rejected, 4);
    assert_eq!(report.reconciliation.rows_accepted, 1);
    assert!(report
        .reconciliation
        .explanations
        .iter()
        .any(|e| e.contains("rejected")));
}

/// The rejections of a file as (line, column, reason).
fn rejections_of(summary: &tally::session::FileSummary) -> Vec<(u64, &str, &str)> {
    summary
        .rejections
        .iter()
        .map(|r| (r.line, r.column.as_str(), r.reason.as_str()))
        .collect()
}

#[test]
fn a_row_with_more_or_fewer_fields_than_its_header_is_rejected() {
    const COSTS_HEADER: &str = "id,start_date,end_date,product,line_type,resource_id,environment_id,quantity,unit,price,original_amount,amount,owner_of_record\n";
    const LINE: &str = "2026-04-01,2026-05-01,KAFKA,KafkaNetworkWrite,lkc-1,env-1,1,GB,1";
    const TOO_MANY: &str = "14 fields, but the header has 13: a comma inside an unquoted value (such as `1,250.00`) shifts the columns after it; refused";
    // (row after the header, amount accepted, why it is rejected)
    let cases: [(String, &str, Option<&str>); 6] = [
        (format!("l1,{LINE},1250.00,1250.00,"), "1250.00", None),
        // A comma inside a quoted field is no field of its own.
        (format!("\"l,1\",{LINE},1,1250.00,"), "1250.00", None),
        // The unquoted thousands separator was read as amount 250.00.
        (format!("l1,{LINE},1,250.00,1250.00,"), "0", Some(TOO_MANY)),
        (format!("l1,{LINE},1,250.00,1250.00,\r"), "0", Some(TOO_MANY)),
        // Trailing optional columns left out: refused all the same.
        (
            format!("l1,{LINE},1250.00,1250.00"),
            "0",
            Some("12 fields, but the header has 13: the row ends before `owner_of_record`, and a field lost anywhere in it shifts the columns after it; refused"),
        ),
        (
            format!("l1,{LINE},1250.00"),
            "0",
            Some("11 fields, but the header has 13: the row ends before `amount`, and a field lost anywhere in it shifts the columns after it; refused"),
        ),
    ];
    for (row, amount, rejection) in &cases {
        let bytes = format!("{COSTS_HEADER}{row}\n");
        // A byte at a time (the byte-wise path) and whole (the fast path).
        for chunk in [1, bytes.len()] {
            let (_, files) = run_bytes(
                Options::default(),
                &[("costs.csv", bytes.as_bytes().to_vec())],
                chunk,
            );
            let summary = &files[0];
            // No column is named: which field was added or lost is unknown.
            let want: Vec<(u64, &str, &str)> =
                rejection.iter().map(|reason| (2, "", *reason)).collect();
            assert_eq!(rejections_of(summary), want, "{row} in chunks of {chunk}");
            assert_eq!(
                (summary.rows_read, summary.amount_total.to_string()),
                (1, amount.to_string()),
                "{row} in chunks of {chunk}"
            );
        }
    }
}

#[test]
fn a_column_found_twice_in_a_header_refuses_the_file() {
    let usage_row =
        "1,2026-04-02T10:00:00Z,2026-04-02T10:05:00Z,lkc-1,sa-a,x,t1,produced_bytes,1,5\n";
    let cases = [
        (
            "usage.csv",
            format!("{},value\n{usage_row}", USAGE_HEADER.trim_end()),
            "usage.csv:1 column `value`: the header names `value` twice (fields 9 and 10); refused rather than reading one of them",
        ),
        (
            "costs.csv",
            format!(
                "{},amount\n2026-04-01,2026-05-01,kafka,KafkaStorage,lkc-1,env-1,9.00,1000.00\n",
                BILL_HEADER.trim_end()
            ),
            "costs.csv:1 column `amount`: the header names `amount` twice (fields 7 and 8); refused rather than reading one of them",
        ),
        (
            "crosswalk.csv",
            "owner_id,team, Principal\nsa-a,alpha,sa-b\n".to_string(),
            "crosswalk.csv:1 column `owner_id`: the header has both `owner_id` (field 1) and `Principal` (field 3), two names of the column owner_id; refused rather than reading one of them",
        ),
    ];
    for (name, text, want) in &cases {
        let error = one_file(name, text.as_bytes()).unwrap_err();
        assert_eq!(error.to_string(), *want);
    }
    // A column tally does not read may appear twice.
    let text = "owner_id,team,note,note\nsa-a,alpha,x,y\n";
    let summary = one_file("notes.csv", text.as_bytes()).unwrap();
    assert_eq!((summary.rows_accepted, summary.rows_rejected), (1, 0));
}

#[test]
fn a_row_whose_sum_overflows_is_rejected_by_its_line() {
    let big = "50000000000000000000000000000"; // 5e28: two of them pass Decimal::MAX
    let export = format!(
        "timestamp,owner_id,environment_id,resource_id,product,line_type,chargeback_cost\n\
         2026-04-01T00:00:00Z,sa-1,env-1,lkc-1,kafka,KafkaBase,1.00\n\
         2026-04-01T00:00:00Z,sa-1,env-1,lkc-1,kafka,KafkaBase,{big}\n\
         2026-04-01T00:00:00Z,sa-1,env-1,lkc-1,kafka,KafkaBase,{big}\n"
    );
    let summary = one_file("export.csv", export.as_bytes()).unwrap();
    assert_eq!((summary.rows_accepted, summary.rows_rejected), (2, 1));
    assert_eq!(
        rejections_of(&summary),
        [(
            4,
            "",
            "its amounts added to the rows before it of the same line and bucket \
             is past the largest decimal (about 7.9e28)"
        )]
    );
}

#[test]
fn a_header_over_the_limit_refuses_the_file() {
    let options = Options {
        max_record_bytes: 200,
        ..Options::default()
    };
    let long = BILL_HEADER.replace("amount", &format!("amount,{}", "x".repeat(300)));
    let bill = format!(
        "{long}{}",
        "2026-04-01,2026-05-01,kafka,KafkaBase,lkc-1,env-1,1.00\n"
    );
    let mut session = Session::new(options);
    let id = session.begin_file("bill.csv", "");
    let error = session
        .feed(id, bill.as_bytes())
        .and_then(|()| session.end_file(id).map(drop))
        .unwrap_err();
    // It was: "bill.csv:2: missing required column `amount`", the first row
    // taken for the header.
    assert_eq!(
        error.to_string(),
        "bill.csv:1: longer than the 200-byte limit; refused"
    );
}
