//! Cross-backend integration tests and the harness that starts real servers on
//! loopback. The harness lands with its own issue; this crate holds the place.
