//! The front of every request: authentication, then authorization. Both allow everything
//! for now; TLS client certificates, tokens and RBAC replace these implementations later
//! without touching the handlers.

use axum::http::HeaderMap;

use crate::error::ApiError;
use crate::request::Verb;

/// Who made a request.
#[derive(Debug, Clone)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

pub trait Authenticator: Send + Sync {
    fn authenticate(&self, headers: &HeaderMap) -> Result<UserInfo, ApiError>;
}

/// What an authorizer decides on.
#[derive(Debug)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    pub verb: Verb,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

pub trait Authorizer: Send + Sync {
    fn authorize(&self, attrs: &Attributes<'_>) -> Result<(), ApiError>;
}

/// Everyone is the cluster admin (until authentication lands).
pub struct AnonymousAdmin;

impl Authenticator for AnonymousAdmin {
    fn authenticate(&self, _headers: &HeaderMap) -> Result<UserInfo, ApiError> {
        Ok(UserInfo {
            name: "system:admin".to_string(),
            groups: vec![
                "system:masters".to_string(),
                "system:authenticated".to_string(),
            ],
        })
    }
}

pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _attrs: &Attributes<'_>) -> Result<(), ApiError> {
        Ok(())
    }
}
