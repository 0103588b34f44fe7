//! The backends under test.

pub mod etcd;
pub mod etcd_cluster;
pub mod kube;
pub mod kube_ha;
pub mod memory;
pub mod redis;
pub mod redis_sentinel;
