//! Building the bench's helper binaries with cargo from inside `cargo run`.

use std::process::Command;

/// A `cargo` command without the `CARGO_*` variables the running cargo set for this
/// program (its package's name, version, manifest directory, ...): inherited, they
/// change build scripts' inputs, and every dependency above them would be built again.
pub fn cargo() -> Command {
    let mut command = Command::new(env!("CARGO"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_") && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR" {
            command.env_remove(name.as_ref());
        }
    }
    command
}
