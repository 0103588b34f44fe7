//! The workspace README's and the guides' examples, compiled as doctests so that they
//! stay true (here, since this crate depends on every backend and is not published).

/// The README's examples.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The deployment guide's example.
#[cfg(doctest)]
#[doc = include_str!("../../docs/deploy.md")]
struct DeployGuideDoctests;
