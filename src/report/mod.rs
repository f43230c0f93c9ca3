//! Roll-ups, filters, reconciliation.
