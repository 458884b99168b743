//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's CRI log as the kubelet
//! serves it — the CRI prefix stripped, pieces of long lines joined, optionally each line
//! prefixed with its timestamp, and with `follow` streamed until the container exits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use skiff_runtime::container::{Runtime, RuntimeError};
use skiff_runtime::logs::{self, LogFollower, LogLine, ReadOptions, Stream};
use tokio::sync::mpsc;

use super::{HttpError, ServerContext, find_containers};
use crate::naming;

/// How often a followed log is looked at for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// The query of a log request, as strings: parsed (and refused) as the kubelet does.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LogQuery {
    follow: Option<String>,
    previous: Option<String>,
    timestamps: Option<String>,
    tail_lines: Option<String>,
    since_seconds: Option<String>,
    since_time: Option<String>,
    limit_bytes: Option<String>,
    stream: Option<String>,
}

/// What a log request asks for.
#[derive(Debug, Clone, PartialEq)]
struct LogRequest {
    follow: bool,
    previous: bool,
    timestamps: bool,
    tail: Option<usize>,
    since: Option<DateTime<Utc>>,
    limit_bytes: Option<u64>,
    /// `None`: both streams.
    stream: Option<Stream>,
}

/// Go's `strconv.ParseBool`, which the kubelet's query decoding uses; an empty value is false.
fn parse_bool(name: &str, value: Option<&str>) -> Result<bool, HttpError> {
    match value {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(HttpError::bad_request(format!(
            "invalid value {other:?} for {name}: must be a boolean"
        ))),
    }
}

fn parse_int(name: &str, value: Option<&str>) -> Result<Option<i64>, HttpError> {
    match value {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            HttpError::bad_request(format!(
                "invalid value {v:?} for {name}: must be an integer"
            ))
        }),
    }
}

impl LogQuery {
    fn parse(&self, now: DateTime<Utc>) -> Result<LogRequest, HttpError> {
        let tail = match parse_int("tailLines", self.tail_lines.as_deref())? {
            Some(n) if n < 0 => {
                return Err(HttpError::bad_request(
                    "tailLines: Invalid value: must be greater than or equal to 0",
                ));
            }
            n => n.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        };
        let since_seconds = parse_int("sinceSeconds", self.since_seconds.as_deref())?;
        let since_time = match self.since_time.as_deref() {
            None | Some("") => None,
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|e| {
                        HttpError::bad_request(format!("invalid value {t:?} for sinceTime: {e}"))
                    })?
                    .with_timezone(&Utc),
            ),
        };
        let since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err(HttpError::bad_request(
                    "at most one of `sinceTime` or `sinceSeconds` may be specified",
                ));
            }
            (Some(s), None) if s < 1 => {
                return Err(HttpError::bad_request(
                    "sinceSeconds: Invalid value: must be greater than 0",
                ));
            }
            (Some(s), None) => Some(now - chrono::Duration::seconds(s)),
            (None, t) => t,
        };
        let limit_bytes = match parse_int("limitBytes", self.limit_bytes.as_deref())? {
            Some(n) if n < 1 => {
                return Err(HttpError::bad_request(
                    "limitBytes: Invalid value: must be greater than 0",
                ));
            }
            n => n.map(|n| n as u64),
        };
        let stream = match self.stream.as_deref() {
            None | Some("") | Some("All") => None,
            Some("Stdout") => Some(Stream::Stdout),
            Some("Stderr") => Some(Stream::Stderr),
            Some(other) => {
                return Err(HttpError::bad_request(format!(
                    "stream: Unsupported value: {other:?}: supported values: \"All\", \"Stderr\", \"Stdout\""
                )));
            }
        };
        let follow = parse_bool("follow", self.follow.as_deref())?;
        let previous = parse_bool("previous", self.previous.as_deref())?;
        if follow && previous {
            // The kubelet follows a terminated container's log to its end, i.e. just reads it.
            tracing::debug!("follow of a previous container's log reads it to its end");
        }
        Ok(LogRequest {
            follow,
            previous,
            timestamps: parse_bool("timestamps", self.timestamps.as_deref())?,
            tail,
            since,
            limit_bytes,
            stream,
        })
    }
}

/// The log file chosen for a request, and the runtime container that writes (wrote) it.
struct LogSource {
    path: PathBuf,
    container_id: String,
}

pub(super) async fn container_logs(
    State(ctx): State<Arc<ServerContext>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Result<Response, HttpError> {
    let request = query.parse(Utc::now())?;
    let source = find_log(&ctx, &namespace, &pod, &container, request.previous).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let runtime = Arc::clone(&ctx.runtime);
    let follow = request.follow && !request.previous;
    tokio::task::spawn_blocking(move || {
        let path = source.path.clone();
        if let Err(e) = stream_log(&runtime, source, &request, follow, &tx) {
            tracing::warn!(path = %path.display(), error = %e, "reading a container log failed");
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// The pod UID behind `namespace/pod`: its newest runtime container's, else the newest log
/// directory's (its containers may be gone while their logs remain).
async fn pod_uid(
    ctx: &ServerContext,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<Option<String>, HttpError> {
    let containers = find_containers(&ctx.runtime, namespace, pod, container).await?;
    if let Some(newest) = containers.first() {
        return Ok(Some(newest.pod_uid.clone()));
    }
    let prefix = format!("{namespace}_{pod}_");
    let entries = match std::fs::read_dir(&ctx.log_root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(HttpError::internal(format!(
                "reading {}: {e}",
                ctx.log_root.display()
            )));
        }
    };
    let newest = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let uid = name.strip_prefix(&prefix)?.to_string();
            // Names and namespaces have no '_', so the rest is the UID only if it has none.
            if uid.contains('_') {
                return None;
            }
            let modified = entry.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, uid))
        })
        .max();
    Ok(newest.map(|(_, uid)| uid))
}

/// The attempts that have a log file in `dir` (`<attempt>.log`), ascending.
fn attempts_in(dir: &Path) -> Vec<u32> {
    let mut attempts: Vec<u32> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.strip_suffix(".log")?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    attempts.sort_unstable();
    attempts
}

async fn find_log(
    ctx: &ServerContext,
    namespace: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<LogSource, HttpError> {
    let uid = pod_uid(ctx, namespace, pod, container)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("pod {pod:?} does not exist")))?;
    let dir = naming::pod_log_dir(&ctx.log_root, namespace, pod, &uid).join(container);
    let attempts = attempts_in(&dir);
    let chosen = if previous {
        attempts.iter().rev().nth(1).copied().ok_or_else(|| {
            HttpError::bad_request(format!(
                "previous terminated container {container:?} in pod {pod:?} not found"
            ))
        })?
    } else {
        attempts.last().copied().ok_or_else(|| {
            HttpError::bad_request(format!(
                "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
            ))
        })?
    };
    Ok(LogSource {
        path: naming::container_log_path(&ctx.log_root, namespace, pod, &uid, container, chosen),
        container_id: naming::container_id(&uid, container, chosen),
    })
}

/// Writes lines as the kubelet does: `[<RFC3339Nano, fixed 9 digits> ]<content>\n` (no newline
/// after a line whose end was never written), until `limit_bytes` is used up.
struct LineWriter<'a> {
    request: &'a LogRequest,
    remaining: Option<u64>,
    tx: &'a mpsc::Sender<Bytes>,
}

/// Why writing stopped early.
enum Stop {
    /// The byte limit is reached.
    Limit,
    /// The client is gone.
    Gone,
}

impl LineWriter<'_> {
    fn write(&mut self, lines: &[LogLine]) -> Result<(), Stop> {
        let mut out = Vec::new();
        let mut stop = None;
        for line in lines {
            if self.request.stream.is_some_and(|s| s != line.stream) {
                continue;
            }
            if self.request.since.is_some_and(|since| line.time < since) {
                continue;
            }
            let start = out.len();
            if self.request.timestamps {
                out.extend_from_slice(
                    line.time
                        .format("%Y-%m-%dT%H:%M:%S%.9fZ ")
                        .to_string()
                        .as_bytes(),
                );
            }
            out.extend_from_slice(line.content.as_bytes());
            if !line.partial {
                out.push(b'\n');
            }
            if let Some(remaining) = self.remaining.as_mut() {
                let len = (out.len() - start) as u64;
                if len >= *remaining {
                    out.truncate(start + *remaining as usize);
                    *remaining = 0;
                    stop = Some(Stop::Limit);
                    break;
                }
                *remaining -= len;
            }
        }
        if !out.is_empty() && self.tx.blocking_send(Bytes::from(out)).is_err() {
            return Err(Stop::Gone);
        }
        stop.map_or(Ok(()), Err)
    }
}

/// Whether the attempt that writes the log is over: its monitor recorded the exit (after
/// writing the last of its output) or the container is gone.
fn attempt_over(runtime: &Runtime, container_id: &str) -> bool {
    match runtime.state(container_id) {
        Ok(state) => state.exit.is_some(),
        Err(RuntimeError::NotFound(_)) => true,
        Err(e) => {
            tracing::warn!(container = container_id, error = %e, "container state unreadable");
            true
        }
    }
}

fn stream_log(
    runtime: &Runtime,
    source: LogSource,
    request: &LogRequest,
    follow: bool,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), logs::LogError> {
    let mut writer = LineWriter {
        request,
        remaining: request.limit_bytes,
        tx,
    };
    let only_time = ReadOptions {
        since: request.since,
        ..Default::default()
    };
    if !follow {
        let mut lines = logs::read_log(
            &source.path,
            &ReadOptions {
                include_rotated: true,
                ..only_time
            },
        )?;
        retain_stream_and_tail(&mut lines, request);
        let _ = writer.write(&lines);
        return Ok(());
    }
    // The follower is opened first, so a line written while the rotated files are read is
    // in the live file it reads next, and none falls between the two.
    let mut follower = LogFollower::open(&source.path, true)?;
    let mut lines = Vec::new();
    let files = logs::log_files(&source.path, true);
    for rotated in &files[..files.len().saturating_sub(1)] {
        match logs::read_log(rotated, &only_time) {
            Ok(more) => lines.extend(more),
            Err(e) => tracing::debug!(error = %e, "rotated log vanished while read"),
        }
    }
    lines.extend(follower.poll()?);
    retain_stream_and_tail(&mut lines, request);
    if writer.write(&lines).is_err() {
        return Ok(());
    }
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        // Looked at before the last read, so that read sees everything the attempt wrote.
        let over = attempt_over(runtime, &source.container_id);
        let lines = follower.poll()?;
        if writer.write(&lines).is_err() || over {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// Applies the stream filter and `since`, then `tailLines`, so the tail counts only lines
/// that are shown.
fn retain_stream_and_tail(lines: &mut Vec<LogLine>, request: &LogRequest) {
    lines.retain(|l| {
        request.stream.is_none_or(|s| s == l.stream)
            && request.since.is_none_or(|since| l.time >= since)
    });
    if let Some(tail) = request.tail {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> LogQuery {
        let encoded = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let uri: axum::http::Uri = format!("/?{encoded}").parse().unwrap_or_default();
        Query::<LogQuery>::try_from_uri(&uri)
            .map(|q| q.0)
            .unwrap_or_default()
    }

    #[test]
    fn queries_parse_as_the_kubelet_reads_them() {
        let now = Utc::now();
        let r = query(&[
            ("follow", "true"),
            ("tailLines", "3"),
            ("sinceSeconds", "10"),
            ("timestamps", "1"),
            ("limitBytes", "100"),
        ])
        .parse(now)
        .map_err(|e| e.message)
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.follow && r.timestamps && !r.previous);
        assert_eq!(r.tail, Some(3));
        assert_eq!(r.since, Some(now - chrono::Duration::seconds(10)));
        assert_eq!(r.limit_bytes, Some(100));
        for bad in [
            vec![("tailLines", "-1")],
            vec![("tailLines", "x")],
            vec![("sinceSeconds", "0")],
            vec![("sinceSeconds", "5"), ("sinceTime", "2024-01-01T00:00:00Z")],
            vec![("limitBytes", "0")],
            vec![("follow", "yes")],
            vec![("stream", "Both")],
        ] {
            let err = query(&bad).parse(now).err();
            assert!(
                err.is_some_and(|e| e.status == axum::http::StatusCode::BAD_REQUEST),
                "{bad:?} is refused"
            );
        }
    }
}
