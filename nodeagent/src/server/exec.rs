//! `GET|POST /exec/{namespace}/{pod}/{container}?command=…`: a process in a running container,
//! its standard streams carried over a WebSocket as the kubelet's stream protocols do.
//!
//! Every binary message starts with a channel byte: 0 stdin (from the client), 1 stdout,
//! 2 stderr, 3 the error channel (one `Status` as JSON when the process has ended), 4 terminal
//! resizes (`{"Width":…,"Height":…}` from the client). `v5.channel.k8s.io` adds a close signal,
//! `[255, channel]`, with which the client half-closes its stdin.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code,
    rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use skiff_runtime::container::{ContainerStatus, ExecOptions, Runtime};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{HttpError, ServerContext, find_containers};

/// The remote command protocol with the stdin close signal (Kubernetes 1.29+).
pub const STREAM_PROTOCOL_V5: &str = "v5.channel.k8s.io";
/// The remote command protocol with the JSON error channel and resizes.
pub const STREAM_PROTOCOL_V4: &str = "v4.channel.k8s.io";

const CHANNEL_STDIN: u8 = 0;
const CHANNEL_STDOUT: u8 = 1;
const CHANNEL_STDERR: u8 = 2;
const CHANNEL_ERROR: u8 = 3;
const CHANNEL_RESIZE: u8 = 4;
/// v5: `[255, channel]` closes that channel (only stdin is the client's to close).
const CHANNEL_CLOSE: u8 = 255;

/// What to run and which streams to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExecRequest {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn parse_bool(name: &str, value: &str) -> Result<bool, HttpError> {
    match value {
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        other => Err(HttpError::bad_request(format!(
            "invalid value {other:?} for {name}: must be a boolean"
        ))),
    }
}

impl ExecRequest {
    fn parse(pairs: &[(String, String)]) -> Result<ExecRequest, HttpError> {
        let mut request = ExecRequest {
            command: Vec::new(),
            stdin: false,
            stdout: false,
            stderr: false,
            tty: false,
        };
        for (key, value) in pairs {
            match key.as_str() {
                "command" => request.command.push(value.clone()),
                "stdin" => request.stdin = parse_bool(key, value)?,
                "stdout" => request.stdout = parse_bool(key, value)?,
                "stderr" => request.stderr = parse_bool(key, value)?,
                "tty" => request.tty = parse_bool(key, value)?,
                _ => {}
            }
        }
        if request.command.is_empty() {
            return Err(HttpError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
        if !(request.stdin || request.stdout || request.stderr) {
            return Err(HttpError::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        // A terminal has one output: the kubelet drops stderr too.
        if request.tty {
            request.stderr = false;
        }
        Ok(request)
    }
}

pub(super) async fn exec(
    State(ctx): State<Arc<ServerContext>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, HttpError> {
    let request = ExecRequest::parse(&pairs)?;
    let running = find_containers(&ctx.runtime, &namespace, &pod, &container)
        .await?
        .into_iter()
        .find(|c| c.state.status == ContainerStatus::Running)
        .ok_or_else(|| HttpError::not_found(format!("container not found ({container:?})")))?;
    let refused = || {
        HttpError::bad_request(format!(
            "exec needs a WebSocket upgrade offering {STREAM_PROTOCOL_V5} or {STREAM_PROTOCOL_V4}"
        ))
    };
    let upgrade = upgrade
        .map_err(|_| refused())?
        .protocols([STREAM_PROTOCOL_V5, STREAM_PROTOCOL_V4]);
    let v5 = match upgrade.selected_protocol().map(|p| p.as_bytes()) {
        Some(p) if p == STREAM_PROTOCOL_V5.as_bytes() => true,
        Some(_) => false,
        None => return Err(refused()),
    };
    let runtime = Arc::clone(&ctx.runtime);
    let id = running.state.id().to_string();
    Ok(upgrade.on_upgrade(move |socket| async move {
        tracing::debug!(container = %id, command = ?request.command, v5, "exec session");
        Session {
            runtime,
            container_id: id,
            request,
            v5,
        }
        .run(socket)
        .await;
    }))
}

/// The `Status` written to the error channel when the process has ended, as the kubelet's.
fn exit_status(command: &[String], code: i32) -> serde_json::Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn internal_error(message: &str) -> serde_json::Value {
    let message = format!("error executing command in container: {message}");
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// The terminal size a resize message carries.
#[derive(Debug, Deserialize)]
struct TerminalSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// A pseudo-terminal master, non-blocking, driven by the reactor.
struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

impl PtyMaster {
    fn new(fd: OwnedFd) -> std::io::Result<PtyMaster> {
        // SAFETY: fcntl on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        if flags < 0
            // SAFETY: as above.
            || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the descriptor, so it stays open while registered.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(PtyMaster { fd })
    }

    /// Reads output; `Ok(0)` once every slave side is closed (the kernel's EIO).
    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let result = guard.try_io(|fd| {
                // SAFETY: reading into a buffer we own from a descriptor we own.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            let result = guard.try_io(|fd| {
                // SAFETY: writing from a buffer we own to a descriptor we own.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    fn resize(&self, size: &TerminalSize) -> std::io::Result<()> {
        let winsize = libc::winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize we own.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TIOCSWINSZ, &winsize) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Where the client's stdin goes.
enum Input {
    Pipe(tokio::process::ChildStdin),
    Terminal(Arc<PtyMaster>),
}

struct Session {
    runtime: Arc<Runtime>,
    container_id: String,
    request: ExecRequest,
    v5: bool,
}

impl Session {
    async fn run(self, socket: WebSocket) {
        let (mut sink, source) = socket.split();
        let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
        let writer = tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            // A close frame without a code reads as an error to kubectl (1005 "no status").
            let normal = CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            };
            let _ = sink.send(Message::Close(Some(normal))).await;
            let _ = sink.close().await;
        });
        let status = match self.execute(source, &out_tx).await {
            Ok(Some(code)) => exit_status(&self.request.command, code),
            Ok(None) => {
                tracing::debug!(container = %self.container_id, "exec client went away");
                drop(out_tx);
                let _ = writer.await;
                return;
            }
            Err(message) => {
                tracing::warn!(container = %self.container_id, %message, "exec failed");
                internal_error(&message)
            }
        };
        let _ = out_tx
            .send(frame(CHANNEL_ERROR, status.to_string().as_bytes()))
            .await;
        drop(out_tx);
        let _ = writer.await;
    }

    /// Runs the process with its streams attached; its exit code, or `None` when the client
    /// went away first (the process is then hung up on and reaped).
    async fn execute(
        &self,
        mut source: futures::stream::SplitStream<WebSocket>,
        out_tx: &mpsc::Sender<Message>,
    ) -> Result<Option<i32>, String> {
        let runtime = Arc::clone(&self.runtime);
        let id = self.container_id.clone();
        let options = ExecOptions {
            args: self.request.command.clone(),
            tty: self.request.tty,
            ..Default::default()
        };
        let command = tokio::task::spawn_blocking(move || runtime.exec(&id, options))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mut command = tokio::process::Command::from(command);
        let null_or_piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };

        let mut terminal = None;
        if self.request.tty {
            let pty = nix::pty::openpty(None, None).map_err(|e| format!("openpty: {e}"))?;
            let slave = |fd: &OwnedFd| {
                fd.try_clone()
                    .map(Stdio::from)
                    .map_err(|e| format!("duplicating the terminal: {e}"))
            };
            command
                .stdin(slave(&pty.slave)?)
                .stdout(slave(&pty.slave)?)
                .stderr(Stdio::from(pty.slave));
            terminal = Some(Arc::new(
                PtyMaster::new(pty.master).map_err(|e| format!("terminal: {e}"))?,
            ));
        } else {
            command
                .stdin(null_or_piped(self.request.stdin))
                .stdout(null_or_piped(self.request.stdout))
                .stderr(null_or_piped(self.request.stderr));
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting the exec helper: {e}"))?;
        // The terminal's slave side must be open only in the process, so its exit reads as EOF.
        drop(command);

        let mut pumps = Vec::new();
        let input = match &terminal {
            Some(master) => {
                pumps.push(tokio::spawn(pump_terminal(
                    Arc::clone(master),
                    out_tx.clone(),
                )));
                self.request
                    .stdin
                    .then(|| Input::Terminal(Arc::clone(master)))
            }
            None => {
                if let Some(stdout) = child.stdout.take() {
                    pumps.push(tokio::spawn(pump(stdout, CHANNEL_STDOUT, out_tx.clone())));
                }
                if let Some(stderr) = child.stderr.take() {
                    pumps.push(tokio::spawn(pump(stderr, CHANNEL_STDERR, out_tx.clone())));
                }
                child.stdin.take().map(Input::Pipe)
            }
        };
        let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
        let stdin_writer = input.map(|input| tokio::spawn(write_stdin(input, stdin_rx)));
        let mut stdin_tx = stdin_writer.is_some().then_some(stdin_tx);

        let pid = child.id();
        let finished = async {
            let status = child.wait().await;
            for pump in pumps {
                let _ = pump.await;
            }
            status
        };
        tokio::pin!(finished);
        loop {
            tokio::select! {
                status = &mut finished => {
                    let status = status.map_err(|e| format!("waiting for the process: {e}"))?;
                    // The helper exits with the process's code (128 + signal when killed).
                    return Ok(Some(status.code().unwrap_or(128)));
                }
                message = source.next() => match message {
                    Some(Ok(Message::Binary(data))) => {
                        self.input(&data, &mut stdin_tx, terminal.as_deref()).await;
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        drop(stdin_tx);
        if let Some(pid) = pid {
            // The helper passes SIGHUP on to the process, as a terminal hang-up would.
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        }
        let _ = finished.await;
        Ok(None)
    }

    /// One message from the client.
    async fn input(
        &self,
        data: &Bytes,
        stdin_tx: &mut Option<mpsc::Sender<Bytes>>,
        terminal: Option<&PtyMaster>,
    ) {
        let Some(&channel) = data.first() else {
            return;
        };
        match channel {
            CHANNEL_STDIN => {
                if let Some(tx) = stdin_tx.as_ref()
                    && data.len() > 1
                    && tx.send(data.slice(1..)).await.is_err()
                {
                    *stdin_tx = None;
                }
            }
            CHANNEL_RESIZE => {
                let Some(master) = terminal else { return };
                match serde_json::from_slice::<TerminalSize>(&data[1..]) {
                    Ok(size) => {
                        if let Err(e) = master.resize(&size) {
                            tracing::debug!(error = %e, "resizing the terminal failed");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "bad resize message"),
                }
            }
            CHANNEL_CLOSE if self.v5 && data.get(1) == Some(&CHANNEL_STDIN) => {
                *stdin_tx = None;
            }
            _ => {}
        }
    }
}

/// Copies one output of the process to its channel until end of file.
async fn pump(mut output: impl AsyncRead + Unpin, channel: u8, out_tx: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match output.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out_tx.send(frame(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn pump_terminal(master: Arc<PtyMaster>, out_tx: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match master.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out_tx.send(frame(CHANNEL_STDOUT, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Writes the client's stdin until it is closed; then the process reads end of file (on a
/// terminal: the EOF character, as a user's Ctrl-D).
async fn write_stdin(input: Input, mut rx: mpsc::Receiver<Bytes>) {
    match input {
        Input::Pipe(mut stdin) => {
            while let Some(data) = rx.recv().await {
                if stdin.write_all(&data).await.is_err() {
                    return;
                }
            }
        }
        Input::Terminal(master) => {
            while let Some(data) = rx.recv().await {
                if master.write_all(&data).await.is_err() {
                    return;
                }
            }
            let _ = master.write_all(&[0x04]).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn requests_need_a_command_and_a_stream() {
        let ok = ExecRequest::parse(&pairs(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo hi"),
            ("stdout", "true"),
            ("stderr", "1"),
            ("tty", "true"),
        ]))
        .map_err(|e| e.message);
        assert_eq!(
            ok,
            Ok(ExecRequest {
                command: vec!["sh".into(), "-c".into(), "echo hi".into()],
                stdin: false,
                stdout: true,
                stderr: false,
                tty: true,
            })
        );
        let no_command = ExecRequest::parse(&pairs(&[("stdout", "true")])).map_err(|e| e.message);
        assert_eq!(
            no_command,
            Err("you must specify at least one command for the container".to_string())
        );
        let no_stream = ExecRequest::parse(&pairs(&[("command", "ls")])).map_err(|e| e.message);
        assert_eq!(
            no_stream,
            Err("you must specify at least 1 of stdin, stdout, stderr".to_string())
        );
    }

    #[test]
    fn exit_codes_read_as_the_kubelet_writes_them() {
        let command = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        assert_eq!(
            exit_status(&command, 0).to_string(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            exit_status(&command, 3).to_string(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
    }
}
