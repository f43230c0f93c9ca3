//! The per-team summary CSV: what each team caused, what it was handed.
//!
//! ```text
//! org_id,team,cost_center,direct,shared,unallocated,total,owners
//! ```
//!
//! `direct` is what the team's entities caused (usage- or owner-driven methods),
//! `shared` the shared costs it received (even splits, weighted mixes, Support
//! allocated last), `unallocated` its part of the unallocated rows (all of it for
//! the shared cost center, or a pro-rata share), `total` their sum.

use crate::report::TeamSummary;
use crate::usage::push_csv_field;

/// The header line.
pub const HEADER: &str = "org_id,team,cost_center,direct,shared,unallocated,total,owners";

/// Writes the summary (header included).
pub fn write(teams: &[TeamSummary]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(256 + teams.len() * 64);
    out.push_str(HEADER);
    out.push('\n');
    for team in teams {
        for field in [&team.org_id, &team.team, &team.cost_center] {
            push_csv_field(&mut out, field);
            out.push(',');
        }
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            team.direct, team.shared, team.unallocated, team.total, team.owners
        );
    }
    out
}
