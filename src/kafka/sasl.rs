//! Following a SASL authentication to learn the principal, without keeping secrets.
//!
//! The client's first SASL message is fed through a [`PrincipalExtractor`] as it
//! streams by. It keeps only the bytes that can name the principal:
//!
//! * `PLAIN` (`authzid NUL authcid NUL password`): the authcid; the password
//!   bytes are looked at for the NUL and dropped.
//! * `SCRAM-SHA-256/512` client-first (`n,,n=user,r=nonce`): a bounded prefix
//!   (it holds no secret), of which the unescaped `n=` value is kept.
//! * `OAUTHBEARER` (`n,,\x01auth=Bearer <jwt>\x01\x01`): the JWT's header and
//!   payload only — capture stops at the second `.`, so the signature, without
//!   which the token cannot be replayed, is never held. The `sub` claim is taken
//!   **unverified**: the broker verifies the token, and tally only attributes the
//!   principal after the broker answered success. The claims are read with
//!   [`crate::formats::exact_json`], which keeps numbers as text, so a claim
//!   such as `"exp":1e400` does not hide `sub` (serde_json refused the whole
//!   payload); a repeated `sub` counts by its last value, as RFC 7519 says.
//!
//! After the client's message only the candidate principal name is kept (the
//! capture buffer is zeroed), until the broker's answer decides: success reports
//! `Sink::authenticated`, failure `Sink::authentication_failed`.

use super::{Mechanism, Sink};
use crate::formats::exact_json::{self, Kind};

/// Most bytes of a client SASL message kept while looking for the principal.
pub(crate) const MAX_EXTRACT_BYTES: usize = 2048;
/// Longest principal name kept.
pub(crate) const MAX_PRINCIPAL_BYTES: usize = 255;

/// The SASL mechanism chosen by SaslHandshake, as far as tally follows it.
pub(crate) fn mechanism_from_name(name: &[u8]) -> Option<Mechanism> {
    match name {
        b"PLAIN" => Some(Mechanism::Plain),
        b"SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
        b"SCRAM-SHA-512" => Some(Mechanism::ScramSha512),
        b"OAUTHBEARER" => Some(Mechanism::OAuthBearer),
        _ => None,
    }
}

/// Client messages in a successful exchange (raw tokens after SaslHandshake v0).
fn client_messages(mechanism: Mechanism) -> u8 {
    match mechanism {
        Mechanism::ScramSha256 | Mechanism::ScramSha512 => 2,
        Mechanism::Plain | Mechanism::OAuthBearer => 1,
    }
}

/// Streams a client's first SASL message, keeping only what names the principal.
#[derive(Debug, Default)]
struct PrincipalExtractor {
    kept: Vec<u8>,
    /// PLAIN: NULs seen so far.
    nuls: u8,
    /// OAUTHBEARER: where `auth=` ended in `kept`, and dots seen after it.
    auth_value_at: Option<usize>,
    dots: u8,
    /// More was needed than [`MAX_EXTRACT_BYTES`] allows.
    overflow: bool,
    /// Nothing more to keep.
    full: bool,
}

impl PrincipalExtractor {
    fn reset(&mut self) {
        self.forget();
        self.nuls = 0;
        self.auth_value_at = None;
        self.dots = 0;
        self.overflow = false;
        self.full = false;
    }

    /// Zeroes what was kept (it may hold parts of a credential).
    fn forget(&mut self) {
        self.kept.fill(0);
        self.kept.clear();
    }

    fn feed(&mut self, mechanism: Mechanism, piece: &[u8]) {
        for &byte in piece {
            if self.full {
                return;
            }
            match mechanism {
                Mechanism::Plain => self.feed_plain(byte),
                Mechanism::ScramSha256 | Mechanism::ScramSha512 => self.keep(byte),
                Mechanism::OAuthBearer => self.feed_oauth(byte),
            }
        }
    }

    fn keep(&mut self, byte: u8) {
        if self.kept.len() >= MAX_EXTRACT_BYTES {
            self.overflow = true;
            self.full = true;
        } else {
            self.kept.push(byte);
        }
    }

    fn feed_plain(&mut self, byte: u8) {
        if byte == 0 {
            self.nuls += 1;
            // The password follows the second NUL: never look at it.
            self.full = self.nuls >= 2;
        } else if self.nuls == 1 {
            self.keep(byte);
        }
    }

    fn feed_oauth(&mut self, byte: u8) {
        self.keep(byte);
        match self.auth_value_at {
            None if self.kept.ends_with(b"auth=") => self.auth_value_at = Some(self.kept.len()),
            Some(_) if byte == b'.' => {
                self.dots += 1;
                // header.payload is all tally reads; the signature is not kept.
                self.full = self.dots >= 2;
            }
            _ => {}
        }
    }

    /// The principal named by the message, if any.
    fn principal(&self, mechanism: Mechanism) -> Option<String> {
        if self.overflow {
            return None;
        }
        let name = match mechanism {
            Mechanism::Plain if self.nuls >= 2 => Some(self.kept.clone()),
            Mechanism::Plain => None,
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => scram_user(&self.kept),
            Mechanism::OAuthBearer => oauth_subject(&self.kept),
        }?;
        if name.is_empty() || name.len() > MAX_PRINCIPAL_BYTES {
            return None;
        }
        String::from_utf8(name).ok()
    }
}

/// The unescaped `n=` user of a SCRAM client-first message.
fn scram_user(message: &[u8]) -> Option<Vec<u8>> {
    // gs2-header: cbind-flag "," [authzid] "," then client-first-bare.
    let mut parts = message.splitn(3, |&b| b == b',');
    let _cbind_flag = parts.next()?;
    let _authzid = parts.next()?;
    let bare = parts.next()?;
    let user = bare
        .split(|&b| b == b',')
        .find_map(|attribute| attribute.strip_prefix(b"n="))?;
    unescape_saslname(user)
}

/// RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is invalid.
fn unescape_saslname(name: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len());
    let mut rest = name;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'=' {
            let (replacement, tail) = match tail {
                [b'2', b'C', tail @ ..] => (b',', tail),
                [b'3', b'D', tail @ ..] => (b'=', tail),
                _ => return None,
            };
            out.push(replacement);
            rest = tail;
        } else {
            out.push(byte);
            rest = tail;
        }
    }
    Some(out)
}

/// The unverified `sub` claim of the bearer token in an OAUTHBEARER initial
/// response (kept up to the token's second dot).
fn oauth_subject(message: &[u8]) -> Option<Vec<u8>> {
    let start = find(message, b"auth=")? + b"auth=".len();
    let value = message.get(start..)?;
    let value = value.split(|&b| b == 0x01).next()?;
    let scheme_len = b"Bearer ".len();
    let (scheme, token) = (value.get(..scheme_len)?, value.get(scheme_len..)?);
    if !scheme.eq_ignore_ascii_case(b"Bearer ") {
        return None;
    }
    let payload = token.split(|&b| b == b'.').nth(1)?;
    let json = base64url_decode(payload)?;
    let claims = std::str::from_utf8(&json).ok()?;
    match exact_json::last_member(claims, "", "sub").ok()??.kind {
        Kind::String(sub) => Some(sub.into_bytes()),
        _ => None,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Base64url without padding (padding tolerated), as JWTs use.
fn base64url_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &c in text.iter().filter(|&&c| c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// Raw SASL tokens (after SaslHandshake v0) still expected in each direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawTokens {
    pub(crate) requests: u8,
    pub(crate) responses: u8,
    /// Responses to expect once the handshake response accepts the mechanism.
    after_handshake: u8,
}

/// SASL state of one connection.
#[derive(Debug, Default)]
pub(crate) struct Sasl {
    mechanism: Option<Mechanism>,
    extractor: PrincipalExtractor,
    candidate: Option<String>,
    /// Client messages seen since the handshake.
    client_messages: u8,
    /// Successful broker answers since the handshake.
    answers: u8,
    /// The outcome was reported: later answers of the same exchange are ignored.
    settled: bool,
    /// The exchange uses raw tokens (SaslHandshake v0).
    raw_exchange: bool,
    pub(crate) raw: RawTokens,
    /// The broker's current answer: its length and first two bytes.
    answer_len: u32,
    answer_prefix: [u8; 2],
}

impl Sasl {
    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.extractor.kept.capacity() + self.candidate.as_ref().map_or(0, String::capacity)
    }

    /// A SaslHandshake request chose `mechanism` (raw name). Fails for a v0
    /// handshake with a mechanism whose raw token exchange tally cannot follow.
    pub(crate) fn on_handshake_request(
        &mut self,
        version: i16,
        name: Option<&[u8]>,
    ) -> Result<(), &'static str> {
        self.mechanism = name.and_then(mechanism_from_name);
        self.extractor.reset();
        self.candidate = None;
        self.client_messages = 0;
        self.answers = 0;
        self.settled = false;
        self.raw_exchange = version == 0;
        if version == 0 {
            let mechanism = self
                .mechanism
                .ok_or("SaslHandshake v0 with a mechanism tally cannot follow")?;
            let tokens = client_messages(mechanism);
            self.raw = RawTokens {
                requests: tokens,
                responses: 0,
                after_handshake: tokens,
            };
        }
        Ok(())
    }

    /// The broker answered the handshake.
    pub(crate) fn on_handshake_response(&mut self, error_code: i16) {
        if error_code == 0 {
            self.raw.responses = self.raw.after_handshake;
        } else {
            self.raw = RawTokens::default();
        }
        self.raw.after_handshake = 0;
    }

    /// A client SASL message starts.
    pub(crate) fn client_message_start(&mut self) {
        self.extractor.reset();
    }

    /// A piece of a client SASL message.
    pub(crate) fn client_message_piece(&mut self, piece: &[u8]) {
        if let (Some(mechanism), 0) = (self.mechanism, self.client_messages) {
            self.extractor.feed(mechanism, piece);
        }
    }

    /// A client SASL message ended: keep only the candidate principal.
    pub(crate) fn client_message_end(&mut self) {
        if let (Some(mechanism), 0) = (self.mechanism, self.client_messages) {
            self.candidate = self.extractor.principal(mechanism);
        }
        self.extractor.forget();
        self.client_messages = self.client_messages.saturating_add(1);
    }

    /// A broker SASL message starts.
    pub(crate) fn answer_start(&mut self) {
        self.answer_len = 0;
        self.answer_prefix = [0; 2];
    }

    /// A piece of a broker SASL message (only its first two bytes are kept).
    pub(crate) fn answer_piece(&mut self, piece: &[u8]) {
        for &byte in piece {
            if let Some(slot) = self.answer_prefix.get_mut(self.answer_len as usize) {
                *slot = byte;
            }
            self.answer_len = self.answer_len.saturating_add(1);
        }
    }

    /// The broker answered a client SASL message with `error_code` (0 for raw
    /// tokens, whose failures are in the message or a closed connection).
    pub(crate) fn on_answer(&mut self, error_code: i16, sink: &mut impl Sink) {
        let Some(mechanism) = self.mechanism else {
            return;
        };
        if self.settled {
            return;
        }
        match self.verdict(mechanism, error_code) {
            Some(true) => {
                if let Some(principal) = self.candidate.take() {
                    sink.authenticated(mechanism, &principal);
                }
                self.settled = true;
            }
            Some(false) => {
                self.candidate = None;
                sink.authentication_failed(mechanism);
                self.settled = true;
                // OAUTHBEARER: the client acknowledges the error with one more
                // (raw) message before the broker closes the connection.
                if mechanism == Mechanism::OAuthBearer && self.raw_exchange {
                    self.raw.requests = self.raw.requests.saturating_add(1);
                }
            }
            None => {}
        }
    }

    /// Success, failure, or not yet decided (more rounds to come).
    fn verdict(&mut self, mechanism: Mechanism, error_code: i16) -> Option<bool> {
        if error_code != 0 {
            return Some(false);
        }
        self.answers = self.answers.saturating_add(1);
        match mechanism {
            Mechanism::Plain => Some(true),
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                if self.answer_prefix == *b"e=" {
                    Some(false)
                } else if self.answers >= 2 {
                    Some(true)
                } else {
                    None
                }
            }
            // An OAUTHBEARER error is a non-empty server message (a JSON status).
            Mechanism::OAuthBearer => Some(self.answer_len == 0),
        }
    }
}
