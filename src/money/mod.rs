//! Exact apportionment of money.
