//! skiffctl's errors and how they reach stderr: kubectl's `Error from server (Reason): …`
//! for a server's Status, `error: …` for everything else.

use kube::core::Status;

use crate::manifest::ManifestError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Status the API server answered with; its message is shown as the server wrote it.
    #[error("{}", server_error_line(.0))]
    Server(Box<Status>),
    #[error("{0}")]
    Client(#[source] kube::Error),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    JsonPath(#[from] crate::jsonpath::JsonPathError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
    /// A message kubectl prints as it is, without `error: `.
    #[error("{0}")]
    Verbatim(String),
    /// Errors about single objects, collected while the command went on with the others
    /// and reported together at the end, as kubectl's aggregate.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Many(Vec<Error>),
    /// What there was to say has been said; only the exit code is left to give.
    #[error("")]
    AlreadyReported,
}

impl From<kube::Error> for Error {
    fn from(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) => Error::Server(status),
            other => Error::Client(other),
        }
    }
}

impl Error {
    /// What kubectl would print on stderr for this error (its `CheckErr`), if anything.
    pub fn stderr_line(&self) -> Option<String> {
        match self {
            Error::AlreadyReported => None,
            Error::Many(errors) if errors.is_empty() => None,
            Error::Many(errors) if errors.len() == 1 => errors[0].stderr_line(),
            Error::Many(errors) => Some(
                errors
                    .iter()
                    .filter_map(Error::standard_message)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Error::Server(status) if status.reason == "Invalid" => {
                Some(invalid_message(status).unwrap_or_else(|| self.to_string()))
            }
            Error::Server(_) | Error::Verbatim(_) => Some(self.to_string()),
            other => Some(format!("error: {other}")),
        }
    }

    /// How kubectl prints each error of an aggregate: a server's Status in its standard
    /// form, anything else as it is (without `error: `).
    fn standard_message(&self) -> Option<String> {
        match self {
            Error::AlreadyReported => None,
            Error::Server(_) => Some(self.to_string()),
            Error::Many(_) => self.stderr_line(),
            other => Some(other.to_string()),
        }
    }

    /// Many errors as one (nothing for none, the error itself for one).
    pub fn from_many(mut errors: Vec<Error>) -> Option<Error> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Many(errors)),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Server(status) if status.code == 404)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }
}

/// kubectl's `StandardErrorMessage`: the reason in parentheses when the server gave one.
pub fn server_error_line(status: &Status) -> String {
    if status.reason.is_empty() {
        format!("Error from server: {}", status.message)
    } else {
        format!("Error from server ({}): {}", status.reason, status.message)
    }
}

/// kubectl's message for an Invalid object: `The Kind "name" is invalid: field: message`,
/// one `* field: message` line each when there are several causes.
fn invalid_message(status: &Status) -> Option<String> {
    let details = status.details.as_ref()?;
    if details.causes.is_empty() {
        return None;
    }
    let prefix = format!("The {} {:?} is invalid: ", details.kind, details.name);
    let causes: Vec<String> = details
        .causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    Some(match causes.as_slice() {
        [one] => format!("{prefix}{one}"),
        many => format!(
            "{prefix}\n{}",
            many.iter()
                .map(|c| format!("* {c}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    })
}

/// The server's Status with kubectl's `error when <verb> "<source>": ` before its message
/// (`cmdutil.AddSourceToErr`), other errors unchanged.
pub fn with_source(err: Error, verb: &str, source: &str) -> Error {
    match err {
        Error::Server(mut status) => {
            status.message = format!("error when {verb} \"{source}\": {}", status.message);
            Error::Server(status)
        }
        other => other,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
