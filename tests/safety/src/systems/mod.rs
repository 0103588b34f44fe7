//! The backends under test.

pub mod etcd;
pub mod kube;
pub mod memory;
pub mod redis;
