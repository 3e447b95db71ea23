//! Requests keyless makes on someone's behalf — a workspace writing its datastore
//! secrets, a data preview reading a file — go through the same doors as any
//! client's: a token is issued to the acting identity, and the request runs through
//! the storage or vault router in-process, so authentication, authorization,
//! network rules and the access logs apply exactly as they do from outside.

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, header};
use axum::response::Response;
use tower::ServiceExt as _;

use keyless_core::{Error, Principal};

use crate::login::issue::{Subject, TokenRequest, access_token};
use crate::login::resource::{Resource, STORAGE, VAULT};
use crate::state::SharedState;

/// Which service a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// The storage listener (Blob and DFS).
    Storage,
    /// The key vault listener.
    Vault,
}

/// An identity keyless acts as, with a token for one service (sent to the other
/// service, it is refused there for its audience).
#[derive(Debug, Clone)]
pub(crate) struct Acting {
    token: Option<String>,
    job: Option<String>,
    /// keyless's own service acting as a workspace's identity: the trusted-service
    /// bypass of network rules applies ([`TrustedService`]).
    trusted: bool,
}

/// Marks an in-process request keyless makes as a workspace's identity for its
/// own service (preview, code snapshots, datastore secrets), which network
/// rules let through when they bypass `AzureServices`. A request extension, which
/// no client can send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrustedService;

/// The job an internal request is made for; the storage log records it. It is a
/// request extension, which no client can send.
#[derive(Debug, Clone)]
pub(crate) struct JobTag(pub(crate) String);

impl Acting {
    /// Issues a token to `principal` for `service`, as the token endpoint would to
    /// a managed identity.
    pub(crate) async fn as_principal(
        state: &SharedState,
        principal: Principal,
        service: Service,
    ) -> Result<Self, Error> {
        Self::for_job(state, principal, service, None).await
    }

    /// Like [`Acting::as_principal`], for a job: the token names the job and stops
    /// working when the job ends.
    pub(crate) async fn for_job(
        state: &SharedState,
        principal: Principal,
        service: Service,
        job: Option<&str>,
    ) -> Result<Self, Error> {
        let audience = match service {
            Service::Storage => STORAGE,
            Service::Vault => VAULT,
        };
        // An application's token names the application; a user's names the
        // client acting for the user, as Entra's do: here Azure ML's service.
        let client_id = principal.app_id.map_or_else(
            || crate::identity::ML_SERVICE_APP_ID.to_owned(),
            |a| a.to_string(),
        );
        let subject = Subject::load(state, principal).await?;
        let request = TokenRequest {
            resource: Resource {
                audience: audience.to_owned(),
                scope: format!("{audience}/.default"),
            },
            client_id,
            client_auth: "2",
            job: job.map(str::to_owned),
        };
        let (token, _) = access_token(state, &subject, &request)?;
        Ok(Self {
            token: Some(token),
            job: job.map(str::to_owned),
            trusted: false,
        })
    }

    /// The bearer token, when this identity has one.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Makes the requests count as keyless's own trusted service (see
    /// [`TrustedService`]): only for a workspace's identity acting for keyless.
    pub(crate) fn trusted_service(mut self) -> Self {
        self.trusted = true;
        self
    }

    /// No token (the request signs itself, with a key or a SAS), only the job it is
    /// made for.
    pub(crate) fn job_only(job: &str) -> Self {
        Self {
            token: None,
            job: Some(job.to_owned()),
            trusted: false,
        }
    }

    /// Sends a request with this identity's token; `None` sends it with no
    /// credential at all.
    pub(crate) async fn send(
        acting: Option<&Self>,
        state: &SharedState,
        service: Service,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(Response<()>, bytes::Bytes), Error> {
        let mut request = Request::builder().method(method).uri(path_and_query);
        if let Some(token) = acting.and_then(|a| a.token.as_ref()) {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .map_err(|e| Error::internal(format!("an internal request is malformed: {e}")))?;
        if acting.is_some_and(|a| a.trusted) {
            request.extensions_mut().insert(TrustedService);
        } else if acting.is_some_and(|a| a.job.is_some()) {
            // A job's own data access comes from the compute it runs on; on the
            // local backend that is this machine, on loopback.
            request
                .extensions_mut()
                .insert(crate::http::ClientAddr(std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    0,
                ))));
        }
        if let Some(job) = acting.and_then(|a| a.job.clone()) {
            request.extensions_mut().insert(JobTag(job));
        }
        let id = uuid::Uuid::new_v4().to_string();
        if let Ok(v) = HeaderValue::from_str(&id) {
            request.headers_mut().insert(crate::http::REQUEST_ID, v);
        }
        let response = match service {
            Service::Storage => crate::storage::dispatch(state.clone(), request).await,
            Service::Vault => crate::vault::router(state.clone())
                .oneshot(request)
                .await
                .map_err(|e| Error::internal(format!("an internal request failed: {e}")))?,
        };
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|e| Error::internal(format!("an internal response could not be read: {e}")))?;
        Ok((Response::from_parts(parts, ()), bytes))
    }
}

/// The explanation a refusal carries (`x-keyless-explanation`), else its error code.
pub(crate) fn refusal(response: &Response<()>, body: &[u8]) -> String {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    header("x-keyless-explanation")
        .or_else(|| header("x-ms-error-code"))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect())
}
