//! The etcd backend for `lock-core`. Its own issue fills it in; the crate exists so
//! the workspace has its final shape.
