//! The `tfmprov` binary as the process-level tests run it: one command at a
//! time, or a server kept running until dropped. Shared by the test files
//! that `mod cli;` it; each uses part of it.
#![allow(dead_code)]

use std::io::BufRead;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const EXE: &str = env!("CARGO_BIN_EXE_tfmprov");

/// `tfmprov ARGS`, with no token from the environment (each test names its
/// credential).
pub fn tfmprov(args: &[&str]) -> Output {
    Command::new(EXE)
        .args(args)
        .env("TFMPROV_LOG", "warn")
        .env_remove("TFMPROV_TOKEN")
        .env_remove("TFMPROV_TOKEN_FILE")
        .output()
        .expect("run tfmprov")
}

/// Stdout and stderr, for messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs and expects success; its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = tfmprov(args);
    assert!(out.status.success(), "tfmprov {args:?} failed: {}", text(&out));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs and expects failure with `want` in its output.
pub fn fails(args: &[&str], want: &str) {
    let o = tfmprov(args);
    assert!(!o.status.success(), "tfmprov {args:?} succeeded: {}", text(&o));
    assert!(text(&o).contains(want), "tfmprov {args:?}: wanted {want:?} in {}", text(&o));
}

/// A server process, killed on drop.
pub struct Server {
    child: Child,
    /// Its first line on stdout (the "... ready ..." line).
    pub ready: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tfmprov ARGS` and waits (20 s at most) for its first stdout line.
pub fn start(args: &[&str]) -> Server {
    let mut child = Command::new(EXE)
        .args(args)
        .env("TFMPROV_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("tfmprov");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("tfmprov {args:?} did not start"));
    Server { child, ready }
}

/// The `scheme://ADDR` word of a ready line.
pub fn url_in(line: &str, scheme: &str) -> String {
    line.split_whitespace().find(|w| w.starts_with(scheme)).unwrap_or_else(|| panic!("no {scheme} in {line:?}")).to_owned()
}
