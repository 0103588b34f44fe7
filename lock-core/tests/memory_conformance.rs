//! The conformance suite on the in-memory backend, on paused time.

lock_core::conformance_tests!(
    #[tokio::test(start_paused = true)]
    backend = lock_core::MemoryBackend::new()
);
