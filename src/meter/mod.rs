//! Principal × topic × bucket counters fed by the Kafka decoder.
