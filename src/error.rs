//! The crate's one error type.
//!
//! Every variant carries enough context for a person to act on it: an input error
//! names the file, the line, the column and the reason. Decoding errors of the
//! Kafka wire protocol are not surfaced as `Error`s to a caller that could stop the
//! traffic: the decoder counts them and fails open (see [`crate::kafka`]).

use std::fmt;

/// Where in an input a problem was found. Lines and columns are 1-based; `0`
/// means "not applicable" (e.g. a JSON document as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Location {
    /// The file name as the user gave it.
    pub file: String,
    /// 1-based line number, 0 when the problem is not tied to a line.
    pub line: u64,
    /// The column's header name (CSV) or field path (JSON); empty when unknown.
    pub column: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.column.is_empty() {
            write!(f, " column `{}`", self.column)?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in tally's core.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An input row or document is malformed: a bad number, date, missing field,
    /// unknown value. The row is rejected and reported; other rows go on.
    Input {
        /// Where the problem is.
        at: Location,
        /// What is wrong, in words a user can act on.
        reason: String,
    },
    /// A required column is missing from a CSV header (after alias mapping).
    MissingColumn {
        /// Where the header is.
        at: Location,
        /// The canonical name of the missing column.
        column: String,
        /// The names accepted for it.
        accepted: Vec<String>,
    },
    /// The file's format could not be recognised from its first bytes.
    UnknownFormat {
        /// The file name as the user gave it.
        file: String,
        /// What was seen, and which formats were tried.
        reason: String,
    },
    /// A line or document exceeds the configured maximum and was refused rather
    /// than buffered: memory stays bounded whatever the input.
    TooLarge {
        /// Where the oversized item starts.
        at: Location,
        /// The maximum in bytes.
        limit: u64,
    },
    /// A configuration (rules file, filter configuration, options) is invalid.
    Config {
        /// What is wrong, naming the key.
        reason: String,
    },
    /// A value given for one setting is refused: an option of the page's
    /// options JSON, named by its path there (`filters.min_total`), so that
    /// the page can name its control.
    InvalidValue {
        /// What was being read: the option's path.
        what: String,
        /// Why it is refused, e.g. "`abc` is not a decimal number".
        reason: String,
    },
    /// An arithmetic result does not fit: amounts or counters overflowed.
    Overflow {
        /// Which computation overflowed.
        what: String,
    },
    /// Allocated money does not reconcile with the bill: an internal invariant
    /// broke. Never expected; reported instead of writing wrong numbers.
    Reconciliation {
        /// The totals that disagree.
        reason: String,
    },
}

impl Error {
    /// Shorthand for an [`Error::Input`].
    pub fn input(file: &str, line: u64, column: &str, reason: impl Into<String>) -> Self {
        Error::Input {
            at: Location {
                file: file.to_string(),
                line,
                column: column.to_string(),
            },
            reason: reason.into(),
        }
    }

    /// Shorthand for an [`Error::Config`].
    pub fn config(reason: impl Into<String>) -> Self {
        Error::Config {
            reason: reason.into(),
        }
    }

    /// Shorthand for an [`Error::InvalidValue`].
    pub fn invalid_value(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidValue {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for an [`Error::Overflow`].
    pub fn overflow(what: impl Into<String>) -> Self {
        Error::Overflow { what: what.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input { at, reason } => write!(f, "{at}: {reason}"),
            Error::MissingColumn {
                at,
                column,
                accepted,
            } => write!(
                f,
                "{at}: missing required column `{column}` (accepted names: {})",
                accepted.join(", ")
            ),
            Error::UnknownFormat { file, reason } => {
                write!(f, "{file}: unrecognised format: {reason}")
            }
            Error::TooLarge { at, limit } => {
                write!(f, "{at}: longer than the {limit}-byte limit; refused")
            }
            Error::Config { reason } => write!(f, "invalid configuration: {reason}"),
            Error::InvalidValue { what, reason } => write!(f, "{what}: {reason}"),
            Error::Overflow { what } => write!(f, "arithmetic overflow in {what}"),
            Error::Reconciliation { reason } => write!(f, "does not reconcile: {reason}"),
        }
    }
}

impl std::error::Error for Error {}
