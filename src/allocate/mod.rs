//! Allocation rules and the engine that applies them (owned by the allocation work).
