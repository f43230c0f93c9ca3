//! Readers and writers of every supported file format.
