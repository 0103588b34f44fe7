//! The harness fails loudly, never silently, when a server cannot run.

use lock_tests::program;

#[test]
#[should_panic(
    expected = "no-such-server is not installed: apt-get install no-such-server (scripts/provision installs everything)"
)]
fn a_missing_server_program_fails_the_test_saying_what_to_install() {
    program("no-such-server", "apt-get install no-such-server");
}
