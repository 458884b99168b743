//! `skiffctl`: Skiff's kubectl-like CLI. Its commands arrive with their own issue; until
//! then it says so instead of pretending.

fn main() -> std::process::ExitCode {
    eprintln!("skiffctl: no commands yet; use kubectl with the kubeconfig `skiff server` writes");
    std::process::ExitCode::from(2)
}
