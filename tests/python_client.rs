//! The official Python `kubernetes` client against `skiff server` (tests/python/client.py),
//! from the virtualenv scripts/install-test-deps.sh makes.

mod support;

use std::path::Path;
use std::process::Command;

use support::{Backend, Server};

#[test]
fn python_client_works() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/python/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/install-test-deps.sh",
        python.display()
    );
    let server = Server::start(Backend::Embedded);
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client.py"))
        .arg(&server.kubeconfig)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
