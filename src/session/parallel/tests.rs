//! A file read in parts gives exactly the serial result: report, team totals,
//! file summaries and rejections with their lines, for random CSV files with
//! quoted line breaks, CRLF, lone CR, blank lines, a BOM, bad and oversized rows.

use super::*;
use crate::report::Report;
use crate::session::Options;
use proptest::prelude::*;
use std::io::Cursor;

const CROSSWALK: &str = "owner_id,team\nsa-1,red\nsa-2,blue\n";

/// Everything a session shows: the file summaries, the report and its lines.
type Outcome = (Vec<FileSummary>, Result<(String, Vec<CostLine>), Error>);

fn outcome(session: &Session) -> Outcome {
    let report = session.allocate().map(|r: Report| (r.to_json(), r.lines));
    (session.files(), report)
}

/// A session that has read a crosswalk, ready for the file under test.
fn session(options: &Options) -> Session {
    let mut session = Session::new(options.clone());
    session
        .read("crosswalk.csv", "", CROSSWALK.as_bytes(), 7)
        .unwrap();
    session
}

/// The outcome of reading `bytes` serially, and in up to `parts` parts.
fn both(bytes: &[u8], options: &Options, parts: usize, chunk: usize) -> [Outcome; 2] {
    let mut serial = session(options);
    let _ = serial.read("big.csv", "org", bytes, chunk);
    let mut parallel = session(options);
    let split = Split {
        threads: parts,
        min_part_bytes: 1,
        chunk_bytes: chunk,
    };
    let _ = parallel.read_file("big.csv", "org", || Ok(Cursor::new(bytes)), split);
    [outcome(&serial), outcome(&parallel)]
}

/// Whether the parts of `bytes` cut in `parts` are merged (rather than part 0
/// going on serially, or a serial read from the start).
fn goes_parallel(bytes: &[u8], parts: usize) -> bool {
    let mut session = session(&Options::default());
    let file = File {
        name: "big.csv",
        org_id: "",
        len: bytes.len() as u64,
        chunk_bytes: 5,
    };
    session
        .read_parts(&file, &|| Ok(Cursor::new(bytes)), parts)
        .is_some_and(|(_, merged)| merged > 1)
}

const EXPORT_HEADER: &str =
    "timestamp,owner_id,environment_id,resource_id,product,line_type,unit,chargeback_cost,reason";

fn export_row(i: u32) -> String {
    format!(
        "2026-04-{:02}T00:00:00Z,sa-{},env-1,lkc-{},kafka,KafkaNetworkRead,GB,{}.{:02},ok\n",
        1 + i % 28,
        i % 3,
        i % 2,
        i % 50,
        i % 100
    )
}

#[test]
fn a_clean_file_is_read_in_parts_and_equals_the_serial_read() {
    let mut text = format!("{EXPORT_HEADER}\n");
    (0..200).for_each(|i| text.push_str(&export_row(i)));
    for parts in [2, 3, 7] {
        assert!(goes_parallel(text.as_bytes(), parts), "{parts} parts");
        let [serial, parallel] = both(text.as_bytes(), &Options::default(), parts, 64);
        assert_eq!(serial, parallel);
    }
}

#[test]
fn a_cut_inside_a_quoted_line_break_falls_back_to_the_serial_read() {
    // The middle of the file, where a 2-part cut goes, is a quoted field of line breaks.
    let mut text = format!("{EXPORT_HEADER}\n");
    (0..10).for_each(|i| text.push_str(&export_row(i)));
    text.push_str("2026-04-01T00:00:00Z,sa-9,env-1,lkc-1,kafka,KafkaNetworkRead,GB,1.00,\"");
    text.push_str(&"x\n".repeat(600));
    text.push_str("\"\n");
    (0..10).for_each(|i| text.push_str(&export_row(i)));
    assert!(!goes_parallel(text.as_bytes(), 2));
    let [serial, parallel] = both(text.as_bytes(), &Options::default(), 2, 64);
    assert_eq!(serial, parallel);
}

#[test]
fn sums_beyond_the_exact_range_fall_back_to_the_serial_read() {
    let big = "9".repeat(27);
    let mut text = format!("{EXPORT_HEADER}\n");
    for i in 0..40 {
        text.push_str(&format!(
            "2026-04-01T00:00:00Z,sa-1,env-1,lkc-1,kafka,KafkaNetworkRead,GB,{}{big}.5,ok\n",
            if i % 2 == 0 { "" } else { "-" }
        ));
    }
    assert!(!goes_parallel(text.as_bytes(), 2));
    let [serial, parallel] = both(text.as_bytes(), &Options::default(), 2, 64);
    assert_eq!(serial, parallel);
}

#[test]
fn cost_lines_sharing_a_line_after_a_lone_cr_keep_one_order() {
    // A lone `\r` ends a record without starting a line: two slots then share
    // their source, and the tie must not be broken by the hash map's order.
    let text =
        "start_date,end_date,product,line_type,resource_id,environment_id,unit,quantity,amount\n\
        2026-04-01T00:00:00Z,2026-04-29T00:00:00Z,kafka,a,lkc-2,env-1,GB,0.00,0.00\n\
        2026-04-01T00:00:00Z,2026-04-29T00:00:00Z,kafka,b,lkc-0,env-1,GB,0.00,0.00\n\
        2026-04-01T00:00:00Z,2026-04-29T00:00:00Z,kafka,aa,lkc-2,env-1,GB,0.00,0.00\n\
        2026-04-18T19:00:00Z,2026-04-29T00:00:00Z,kafka,c,lkc-1,env-1,GB,,0.00\r\
        2026-04-20T18:00:00Z,2026-04-29T00:00:00Z,kafka,b,lkc-2,env-1,GB,0.00,0.00";
    assert!(goes_parallel(text.as_bytes(), 2));
    let [serial, parallel] = both(text.as_bytes(), &Options::default(), 2, 1);
    assert_eq!(serial, parallel);
}

#[test]
fn a_header_refused_late_gives_the_serial_summary() {
    // Records over the limit are rejected, so the header is whichever record
    // fits first — in part 0, or only after part 0's range — and is refused.
    let long = "2026-04-01T00:00:00Z,2026-04-29T00:00:00Z,kafka,a,lkc-0,env-1,GB,0.00,0.00\n";
    let costs =
        "start_date,end_date,product,line_type,resource_id,environment_id,unit,quantity,amount\n";
    let export = format!(
        "{EXPORT_HEADER}\n{}",
        "2026-04-01T00:00:00Z,sa-0,a,lkc-0,kafka,KafkaNetworkRead,GB,0.00,a\n".repeat(2)
    );
    let options = Options {
        max_record_bytes: 70,
        ..Options::default()
    };
    for text in [
        export,
        format!(
            "{costs}{}soon,2026-04-29T00:00:00Z,kafka,a,lkc-0,GB,0,0\n{long}",
            long.repeat(3)
        ),
    ] {
        let [serial, parallel] = both(text.as_bytes(), &options, 2, 1);
        assert!(serial.0[1].error.is_some(), "{:?}", serial.0);
        assert_eq!(serial, parallel);
    }
}

/// A handle that cannot seek, like a pipe's.
struct Pipe<'a>(&'a [u8]);

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Seek for Pipe<'_> {
    fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
        Err(ErrorKind::Unsupported.into())
    }
}

#[test]
fn a_file_that_cannot_seek_is_read_serially() {
    let mut text = format!("{EXPORT_HEADER}\n");
    (0..50).for_each(|i| text.push_str(&export_row(i)));
    let mut serial = session(&Options::default());
    let want = serial.read("big.csv", "org", text.as_bytes(), 64);
    let mut piped = session(&Options::default());
    let split = Split {
        threads: 2,
        min_part_bytes: 1,
        chunk_bytes: 64,
    };
    let got = piped.read_file("big.csv", "org", || Ok(Pipe(text.as_bytes())), split);
    assert!(want.is_ok());
    assert_eq!(got, want);
    assert_eq!(outcome(&piped), outcome(&serial));
}

/// A line break: mostly `\n`, some `\r\n`, rarely a lone `\r`.
fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![6 => Just("\n"), 3 => Just("\r\n"), 1 => Just("\r")]
}

/// A field as written: plain, or quoted with a doubled quote or a line break.
fn text_field() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c]{1,3}".prop_map(String::from),
        1 => "[a-c]{0,2}".prop_map(|s| format!("\"{s},\"\"q\"\"\"")),
        1 => ("[a-c]{0,2}", eol()).prop_map(|(s, e)| format!("\"{s}{e}{s}\"")),
    ]
}

/// An amount: mostly valid, sometimes not a number or empty.
fn amount() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (0u32..5000, 0u32..100).prop_map(|(a, c)| format!("{a}.{c:02}")),
        1 => Just("x".to_string()),
        1 => Just(String::new()),
    ]
}

/// A day, sometimes not a date.
fn day() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => (1u32..29, 0u32..24).prop_map(|(d, h)| format!("2026-04-{d:02}T{h:02}:00:00Z")),
        1 => Just("soon".to_string()),
    ]
}

fn export_line() -> impl Strategy<Value = String> {
    (
        day(),
        0u32..4,
        text_field(),
        0u32..3,
        amount(),
        text_field(),
    )
        .prop_map(|(day, owner, env, cluster, amount, reason)| {
            let owner = if owner == 3 {
                String::new()
            } else {
                format!("sa-{owner}")
            };
            format!("{day},{owner},{env},lkc-{cluster},kafka,KafkaNetworkRead,GB,{amount},{reason}")
        })
}

fn usage_line() -> impl Strategy<Value = String> {
    (
        day(),
        0u32..3,
        0u32..3,
        text_field(),
        prop::bool::ANY,
        amount(),
        0u32..20,
    )
        .prop_map(
            |(start, cluster, principal, topic, retention, value, span)| {
                let metric = if retention {
                    "retention_bytes"
                } else {
                    "produced_bytes"
                };
                // Most samples lie inside a day; some span two (split by time).
                let end = if span == 0 {
                    "2026-04-28T12:00:00Z"
                } else {
                    ""
                };
                format!(
                    "1,{start},{end},lkc-{cluster},sa-{principal},sasl,{topic},{metric},{value}"
                )
            },
        )
}

fn costs_line() -> impl Strategy<Value = String> {
    (day(), text_field(), 0u32..3, amount(), amount()).prop_map(
        |(start, line_type, cluster, quantity, amount)| {
            format!("{start},2026-04-29T00:00:00Z,kafka,{line_type},lkc-{cluster},env-1,GB,{quantity},{amount}")
        },
    )
}

/// A CSV file of one of the three formats read in parts.
fn csv_file() -> impl Strategy<Value = String> {
    let body = |header: &'static str, line: BoxedStrategy<String>| {
        (
            prop::bool::ANY,
            prop::collection::vec((line, eol(), prop::bool::weighted(0.1)), 0..40),
            prop::bool::ANY,
        )
            .prop_map(move |(bom, rows, last_eol)| {
                let mut text = String::new();
                if bom {
                    text.push('\u{feff}');
                }
                text.push_str(header);
                text.push('\n');
                let count = rows.len();
                for (i, (row, eol, blank)) in rows.into_iter().enumerate() {
                    if blank {
                        text.push_str(eol);
                    }
                    text.push_str(&row);
                    if i + 1 < count || last_eol {
                        text.push_str(eol);
                    }
                }
                text
            })
    };
    prop_oneof![
        body(EXPORT_HEADER, export_line().boxed()),
        body(
            "version,bucket_start,bucket_end,cluster,principal,principal_source,topic,metric,value",
            usage_line().boxed()
        ),
        body(
            "start_date,end_date,product,line_type,resource_id,environment_id,unit,quantity,amount",
            costs_line().boxed()
        ),
    ]
}

proptest! {
    #[test]
    fn any_file_read_in_parts_equals_the_serial_read(
        text in csv_file(),
        parts in 2usize..7,
        chunk in 1usize..50,
        few_rejections in prop::bool::ANY,
        short_records in prop::bool::ANY,
    ) {
        let options = Options {
            granularity: crate::time::Granularity::Daily,
            max_rejections: if few_rejections { 2 } else { 100 },
            max_record_bytes: if short_records { 70 } else { Options::default().max_record_bytes },
            ..Options::default()
        };
        let [serial, parallel] = both(text.as_bytes(), &options, parts, chunk);
        prop_assert_eq!(serial, parallel);
    }
}
