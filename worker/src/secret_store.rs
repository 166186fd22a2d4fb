//! Fetching connections and `secret()` values from AWS SSM Parameter Store (a
//! `SecureString` decrypted) and Secrets Manager (`SecretString`), cached for a TTL.
//!
//! Every value fetched is added to the process's [`SecretSet`] the moment it arrives,
//! before it is parsed, rendered or logged, so nothing shows it afterwards. Errors name
//! what was looked up and where, never the value.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightshift_core::connection::{Connection, ConnectionError};
use nightshift_core::mask::SecretSet;
use nightshift_core::secret::Secret;
use nightshift_core::secret_store::{
    connection_from_value, parse_reference, AwsLocation, AwsStore, BackendError, ConnectionsBackend,
};
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How long a fetched value is used before it is fetched again, unless set.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Why a value could not be had. `what` is what needed it (`connection "warehouse"`,
/// `secret("ssm:/x")`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{what}: {at} does not exist{hint}")]
    NotFound {
        what: String,
        at: AwsLocation,
        /// Where a connection's name was mapped from (` (connections_backend …)`).
        hint: String,
    },
    #[error("{what}: access denied reading {at}: {message}")]
    AccessDenied {
        what: String,
        at: AwsLocation,
        message: String,
    },
    #[error("{what}: cannot read {at}: {message}")]
    Failed {
        what: String,
        at: AwsLocation,
        message: String,
    },
    #[error("{what}: {message}")]
    NoClient { what: String, message: String },
    #[error(transparent)]
    Reference(#[from] BackendError),
    #[error(transparent)]
    Invalid(#[from] ConnectionError),
}

impl FetchError {
    /// Whether trying again later may help (AWS did not answer; a missing parameter or a
    /// malformed value stays so until a person fixes it).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            FetchError::Failed { .. } | FetchError::NoClient { .. }
        )
    }
}

/// The AWS clients, made on first use.
struct Clients {
    ssm: aws_sdk_ssm::Client,
    secrets_manager: aws_sdk_secretsmanager::Client,
}

/// Where connections and `secret()` values come from besides the environment and the
/// connections file. Cheap to share (`Arc`).
pub struct SecretStore {
    backend: Option<ConnectionsBackend>,
    ttl: Duration,
    env: BTreeMap<String, String>,
    masker: SecretSet,
    clients: OnceCell<Clients>,
    cache: Mutex<HashMap<AwsLocation, (Instant, Secret)>>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("backend", &self.backend)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SecretStore {
    /// A store looking connections up in `backend` (if any) and `secret()` values in
    /// either service, with the AWS settings of `env`; every value it fetches is added
    /// to `masker`.
    pub fn new(
        backend: Option<ConnectionsBackend>,
        ttl: Duration,
        env: BTreeMap<String, String>,
        masker: SecretSet,
    ) -> Arc<SecretStore> {
        Arc::new(SecretStore {
            backend,
            ttl,
            env,
            masker,
            clients: OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn backend(&self) -> Option<&ConnectionsBackend> {
        self.backend.as_ref()
    }

    /// Connection `name` from the backend: `Ok(None)` without a backend. Its secrets are
    /// masked from here on.
    pub async fn connection(&self, name: &str) -> Result<Option<Connection>, FetchError> {
        let Some(backend) = &self.backend else {
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        let at = backend.location(&name);
        let what = format!("connection {name:?}");
        let value = self.fetch(&what, &at).await?;
        let connection = connection_from_value(&name, &at, value.expose())?;
        self.masker.add(connection.secrets());
        Ok(Some(connection))
    }

    /// The values of `references` (`ssm:/…`, `secretsmanager:…`), by reference.
    pub async fn resolve(
        &self,
        references: &[String],
    ) -> Result<BTreeMap<String, Secret>, FetchError> {
        let mut out = BTreeMap::new();
        for reference in references {
            let at = parse_reference(reference)?;
            let value = self.fetch(&format!("secret({reference:?})"), &at).await?;
            out.insert(reference.clone(), value);
        }
        Ok(out)
    }

    /// The value at `at`, from the cache while it is younger than the TTL.
    async fn fetch(&self, what: &str, at: &AwsLocation) -> Result<Secret, FetchError> {
        if let Some(value) = self.cached(at) {
            return Ok(value);
        }
        let clients = self
            .clients
            .get_or_try_init(|| async {
                let config = crate::aws_env::sdk_config(&self.env).await?;
                Ok::<_, String>(Clients {
                    ssm: aws_sdk_ssm::Client::new(&config),
                    secrets_manager: aws_sdk_secretsmanager::Client::new(&config),
                })
            })
            .await
            .map_err(|message| FetchError::NoClient {
                what: what.to_owned(),
                message,
            })?;
        let value = match at.store {
            AwsStore::Ssm => self.read_ssm(clients, what, at).await?,
            AwsStore::SecretsManager => self.read_secrets_manager(clients, what, at).await?,
        };
        // Masked from now on, before anything parses, renders or logs it.
        self.masker.add([value.clone()]);
        let value = Secret::new(value);
        self.lock()
            .insert(at.clone(), (Instant::now(), value.clone()));
        Ok(value)
    }

    fn cached(&self, at: &AwsLocation) -> Option<Secret> {
        let cache = self.lock();
        let (fetched, value) = cache.get(at)?;
        (fetched.elapsed() < self.ttl).then(|| value.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AwsLocation, (Instant, Secret)>> {
        // Only fetched values are kept; a poisoned map is still good.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn read_ssm(
        &self,
        clients: &Clients,
        what: &str,
        at: &AwsLocation,
    ) -> Result<String, FetchError> {
        use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata};
        let answer = clients
            .ssm
            .get_parameter()
            .name(&at.name)
            .with_decryption(true)
            .send()
            .await;
        match answer {
            Ok(out) => out
                .parameter()
                .and_then(|p| p.value())
                .map(str::to_owned)
                .ok_or_else(|| self.failed(what, at, "the parameter has no value".into())),
            Err(e) => Err(self.classify(
                what,
                at,
                (e.code(), e.message()),
                e.raw_response().map(|r| r.status().as_u16()),
                DisplayErrorContext(&e).to_string(),
            )),
        }
    }

    async fn read_secrets_manager(
        &self,
        clients: &Clients,
        what: &str,
        at: &AwsLocation,
    ) -> Result<String, FetchError> {
        use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
        let answer = clients
            .secrets_manager
            .get_secret_value()
            .secret_id(&at.name)
            .send()
            .await;
        match answer {
            Ok(out) => out.secret_string().map(str::to_owned).ok_or_else(|| {
                self.failed(
                    what,
                    at,
                    "the secret has no SecretString (a binary secret is not read)".into(),
                )
            }),
            Err(e) => Err(self.classify(
                what,
                at,
                (e.code(), e.message()),
                e.raw_response().map(|r| r.status().as_u16()),
                DisplayErrorContext(&e).to_string(),
            )),
        }
    }

    fn failed(&self, what: &str, at: &AwsLocation, message: String) -> FetchError {
        FetchError::Failed {
            what: what.to_owned(),
            at: at.clone(),
            message,
        }
    }

    /// An AWS error as a [`FetchError`]: not found, access denied, or anything else.
    fn classify(
        &self,
        what: &str,
        at: &AwsLocation,
        (code, message): (Option<&str>, Option<&str>),
        status: Option<u16>,
        full: String,
    ) -> FetchError {
        let code = code.unwrap_or_default();
        if matches!(code, "ParameterNotFound" | "ResourceNotFoundException") {
            return FetchError::NotFound {
                what: what.to_owned(),
                at: at.clone(),
                hint: match &self.backend {
                    Some(b) if what.starts_with("connection ") => {
                        format!(" (connections_backend {b})")
                    }
                    _ => String::new(),
                },
            };
        }
        let message = match message {
            Some(m) if !code.is_empty() => format!("{code}: {m}"),
            _ => full,
        };
        let denied = ["AccessDenied", "UnrecognizedClient", "InvalidClientTokenId"];
        if denied.iter().any(|d| code.contains(d)) || status == Some(403) {
            return FetchError::AccessDenied {
                what: what.to_owned(),
                at: at.clone(),
                message,
            };
        }
        self.failed(what, at, message)
    }
}
