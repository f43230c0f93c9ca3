//! SASL: the principal is attributed only after the broker's success.

use super::encode;
use super::{assert_clean, req, resp, run, Conversation, Event};
use crate::kafka::Mechanism;

fn authenticate(version: i16, mechanism: &str, rounds: &[(&[u8], i16, &[u8])]) -> Conversation {
    let mut conversation = vec![
        req(encode::sasl_handshake_request(1, 1, mechanism)),
        resp(encode::sasl_handshake_response(1, 0)),
    ];
    for (index, (client, error_code, server)) in rounds.iter().enumerate() {
        let correlation_id = 2 + index as i32;
        conversation.push(req(encode::sasl_authenticate_request(
            version,
            correlation_id,
            client,
        )));
        conversation.push(resp(encode::sasl_authenticate_response(
            version,
            correlation_id,
            *error_code,
            server,
        )));
    }
    conversation
}

fn auth_events(conversation: &Conversation) -> Vec<Event> {
    let sink = run(conversation);
    assert_clean(conversation, &sink);
    sink.auth()
}

const SCRAM_FIRST: &[u8] = b"n,,n=svc=2Cbilling=3Dprod,r=fyko+d2lbbFgONRv9qkxdawL";
const SERVER_FIRST: &[u8] = b"r=fyko,s=QSXCR+Q6sek8bf92,i=4096";
const SCRAM_FINAL: &[u8] =
    b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";

/// A JWT whose payload is {"sub":"team-payments","iss":"idp"}.
fn oauth_initial_response() -> Vec<u8> {
    let header = "eyJhbGciOiJSUzI1NiJ9";
    let payload = "eyJzdWIiOiJ0ZWFtLXBheW1lbnRzIiwiaXNzIjoiaWRwIn0";
    format!("n,,\x01host=broker.example\x01auth=Bearer {header}.{payload}.c2lnbmF0dXJl\x01\x01")
        .into_bytes()
}

#[test]
fn plain_success_and_failure_every_version() {
    for version in 0..=2 {
        let ok = authenticate(version, "PLAIN", &[(b"\0alice\0secret", 0, b"")]);
        assert_eq!(
            auth_events(&ok),
            vec![Event::Authenticated(Mechanism::Plain, "alice".into())]
        );
        let bad = authenticate(version, "PLAIN", &[(b"admin\0alice\0wrong", 58, b"")]);
        assert_eq!(
            auth_events(&bad),
            vec![Event::AuthenticationFailed(Mechanism::Plain)]
        );
    }
}

#[test]
fn scram_needs_both_rounds() {
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let expected = if mechanism.ends_with("256") {
            Mechanism::ScramSha256
        } else {
            Mechanism::ScramSha512
        };
        let scram = |version, final_error, final_answer: &'static [u8]| {
            authenticate(
                version,
                mechanism,
                &[
                    (SCRAM_FIRST, 0, SERVER_FIRST),
                    (SCRAM_FINAL, final_error, final_answer),
                ],
            )
        };
        let ok = scram(2, 0, b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
        assert_eq!(
            auth_events(&ok),
            vec![Event::Authenticated(expected, "svc,billing=prod".into())]
        );
        // Only the first round answered: nothing is attributed yet.
        assert_eq!(auth_events(&ok[..4].to_vec()), vec![]);
        let bad = scram(1, 58, b"");
        assert_eq!(
            auth_events(&bad),
            vec![Event::AuthenticationFailed(expected)]
        );
    }
}

#[test]
fn oauthbearer_subject_is_taken_after_success() {
    let token = oauth_initial_response();
    let ok = authenticate(2, "OAUTHBEARER", &[(&token, 0, b"")]);
    assert_eq!(
        auth_events(&ok),
        vec![Event::Authenticated(
            Mechanism::OAuthBearer,
            "team-payments".into()
        )]
    );
    // An invalid token: the broker answers with a JSON error, then fails.
    let bad = authenticate(
        2,
        "OAUTHBEARER",
        &[
            (&token, 0, b"{\"status\":\"invalid_token\"}"),
            (b"\x01", 58, b""),
        ],
    );
    assert_eq!(
        auth_events(&bad),
        vec![Event::AuthenticationFailed(Mechanism::OAuthBearer)]
    );
}

#[test]
fn handshake_v0_raw_plain_tokens() {
    let conversation = vec![
        req(encode::sasl_handshake_request(0, 1, "PLAIN")),
        resp(encode::sasl_handshake_response(1, 0)),
        req(encode::frame(b"\0bob\0hunter2")),
        resp(encode::frame(b"")),
        req(encode::api_versions_request(2)),
        resp(encode::api_versions_response(2)),
    ];
    let sink = run(&conversation);
    assert_clean(&conversation, &sink);
    assert_eq!(
        sink.auth(),
        vec![Event::Authenticated(Mechanism::Plain, "bob".into())]
    );
    let keys: Vec<_> = sink.frames().iter().map(|f| f.1).collect();
    assert_eq!(
        keys,
        vec![Some(17), Some(17), None, None, Some(18), Some(18)]
    );
}

#[test]
fn handshake_v0_raw_scram_tokens() {
    let exchange = |server_final: &[u8]| {
        vec![
            req(encode::sasl_handshake_request(0, 1, "SCRAM-SHA-256")),
            resp(encode::sasl_handshake_response(1, 0)),
            req(encode::frame(SCRAM_FIRST)),
            resp(encode::frame(SERVER_FIRST)),
            req(encode::frame(SCRAM_FINAL)),
            resp(encode::frame(server_final)),
        ]
    };
    assert_eq!(
        auth_events(&exchange(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")),
        vec![Event::Authenticated(
            Mechanism::ScramSha256,
            "svc,billing=prod".into()
        )]
    );
    assert_eq!(
        auth_events(&exchange(b"e=invalid-proof")),
        vec![Event::AuthenticationFailed(Mechanism::ScramSha256)]
    );
}

#[test]
fn handshake_refused_keeps_kafka_framing() {
    let conversation = vec![
        req(encode::sasl_handshake_request(0, 1, "PLAIN")),
        resp(encode::sasl_handshake_response(1, 33)),
        req(encode::api_versions_request(2)),
        resp(encode::api_versions_response(2)),
    ];
    let sink = run(&conversation);
    assert_clean(&conversation, &sink);
    assert_eq!(sink.auth(), vec![]);
}

#[test]
fn handshake_v0_with_an_unfollowable_mechanism_fails_open() {
    let conversation = vec![req(encode::sasl_handshake_request(0, 1, "GSSAPI"))];
    let sink = run(&conversation);
    assert_eq!(sink.errors().len(), 1);
}

#[test]
fn malformed_sasl_messages_name_no_one() {
    for (mechanism, message) in [
        ("PLAIN", &b"alice-without-separators"[..]),
        ("SCRAM-SHA-256", b"n,,n=bad=escape,r=x"),
        ("OAUTHBEARER", b"n,,\x01auth=Bearer not-a-jwt\x01\x01"),
    ] {
        let conversation = authenticate(2, mechanism, &[(message, 0, b"")]);
        let sink = run(&conversation);
        assert_clean(&conversation, &sink);
        assert!(
            !sink
                .auth()
                .iter()
                .any(|e| matches!(e, Event::Authenticated(..))),
            "{mechanism}"
        );
    }
}

/// Base64url without padding, as a JWT's parts are written.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The principal taken from a bearer token whose JWT payload is `payload`:
/// any JSON object whose `sub` is a string, whatever its other members hold
/// (numbers past f64's range included); the last `sub` of a repeated claim,
/// as RFC 7519 reads one (and serde_json did). No principal otherwise: the
/// connection falls to the next principal source.
#[test]
fn oauthbearer_subject_from_any_json_object() {
    let digits_400 = "9".repeat(400);
    let cases: [(String, Option<&str>); 19] = [
        (r#"{"sub":"team-a","exp":1e400}"#.into(), Some("team-a")),
        (r#"{"exp":-1e400,"sub":"team-a"}"#.into(), Some("team-a")),
        (
            r#"{"iat":1E+400,"nbf":1e-400,"sub":"team-a"}"#.into(),
            Some("team-a"),
        ),
        (
            format!(r#"{{"sub":"team-a","n":{digits_400}}}"#),
            Some("team-a"),
        ),
        (
            format!(r#"{{"n":-{digits_400}.5e3,"sub":"team-a"}}"#),
            Some("team-a"),
        ),
        (
            r#"{"a":{"sub":"inner","b":[1,{"sub":"deeper"},[1e400]]},"sub":"outer"}"#.into(),
            Some("outer"),
        ),
        (
            r#"{"sub":"a\u00e9\"b\\c\/d"}"#.into(),
            Some("a\u{e9}\"b\\c/d"),
        ),
        (r#"{"sub":"\ud83d\ude00"}"#.into(), Some("\u{1f600}")),
        (" {\n\t\"sub\" : \"spaced\" }\r\n".into(), Some("spaced")),
        (r#"{"sub":"first","sub":"last"}"#.into(), Some("last")),
        (r#"{"sub":"first","sub":7}"#.into(), None),
        (r#"{"sub":7}"#.into(), None),
        (r#"{"sub":null}"#.into(), None),
        (r#"{"sub":""}"#.into(), None),
        (r#"{"iss":"idp"}"#.into(), None),
        (r#"["sub","team-a"]"#.into(), None),
        (r#""team-a""#.into(), None),
        (r#"{"sub":"team-a",}"#.into(), None),
        (r#"{"sub":"team-a"} x"#.into(), None),
    ];
    for (payload, want) in &cases {
        let token = format!(
            "n,,\x01auth=Bearer eyJhbGciOiJSUzI1NiJ9.{}.c2ln\x01\x01",
            base64url(payload.as_bytes())
        );
        let ok = authenticate(2, "OAUTHBEARER", &[(token.as_bytes(), 0, b"")]);
        let expected: Vec<Event> = want
            .iter()
            .map(|p| Event::Authenticated(Mechanism::OAuthBearer, p.to_string()))
            .collect();
        assert_eq!(auth_events(&ok), expected, "{payload}");
    }
}
