//! KurrentDB's atomic multi-stream append (`StreamsService/AppendSession`
//! of the v2 protocol, 25.1 and later): every part of a command on two
//! streams in one transaction, all or none, each part under its own
//! expected revision. No release of the Rust client has it, so it is
//! called here over its own gRPC channel, on the client's connection
//! settings: the same first node, TLS (with the settings' CA file and user
//! certificate) and credentials; a follower's not-leader answer names the
//! leader, and the next append goes there.
//!
//! The records carry our metadata as properties, which a read through the
//! v1 protocol returns as the same JSON custom metadata (plus the server's
//! `$schema.*` keys), so readers see one kind of event whichever way it was
//! appended.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use kurrentdb::{ClientSettings, Endpoint};
use prost::Message as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::protocol_v2::google::rpc::Status as RichStatus;
use crate::protocol_v2::kurrent::rpc::NotLeaderNodeErrorDetails;
use crate::protocol_v2::kurrentdb::protocol::v2::streams::errors::StreamRevisionConflictErrorDetails;
use crate::protocol_v2::kurrentdb::protocol::v2::streams::{
    AppendRecord, AppendRequest, SchemaFormat, SchemaInfo,
    streams_service_client::StreamsServiceClient,
};
use crate::{AppendOutcome, ExpectedVersion, NewEvent, Position, StoreError};

/// The first server version with `AppendSession`.
pub(crate) const ATOMIC_FROM: (usize, usize) = (25, 1);

/// One part of a session: the stream's name on the server, our name for
/// it, what it expects, and its events.
pub(crate) struct Part<'a> {
    pub(crate) on_server: String,
    pub(crate) stream: &'a str,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: &'a [NewEvent],
}

/// Appends over `AppendSession`.
pub(crate) struct Sessions {
    tls: Option<ClientTlsConfig>,
    authorization: Option<String>,
    /// The node appends go to, and its channel once made.
    node: Mutex<(Endpoint, Option<Channel>)>,
}

impl Sessions {
    /// Sessions on `settings`; `None` when the settings ask for what this
    /// channel cannot do (TLS without certificate verification), and then
    /// multi-stream appends stay in order.
    pub(crate) fn new(settings: &ClientSettings) -> Result<Option<Self>, StoreError> {
        let Some(first) = settings.hosts().first().cloned() else {
            return Ok(None);
        };
        let tls = if settings.is_secure_mode_enabled() {
            if !settings.is_tls_certificate_verification_enabled() {
                return Ok(None);
            }
            Some(tls_config(settings)?)
        } else {
            None
        };
        Ok(Some(Self {
            tls,
            authorization: settings
                .default_authenticated_user()
                .as_ref()
                .and_then(basic),
            node: Mutex::new((first, None)),
        }))
    }

    /// The channel to the node appends go to.
    fn channel(&self) -> Result<Channel, StoreError> {
        let mut node = self
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(channel) = &node.1 {
            return Ok(channel.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let uri = format!("{scheme}://{}:{}", node.0.host, node.0.port);
        let mut endpoint = Channel::from_shared(uri)
            .map_err(|e| StoreError::Config(format!("EventStoreDB node address: {e}")))?
            .connect_timeout(Duration::from_secs(10))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| StoreError::Config(format!("EventStoreDB TLS: {e}")))?;
        }
        let channel = endpoint.connect_lazy();
        node.1 = Some(channel.clone());
        Ok(channel)
    }

    /// From now on, appends go to `leader`.
    fn follow(&self, leader: Endpoint) {
        let mut node = self
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *node = (leader, None);
    }

    /// Appends `parts` in one transaction: one outcome per part, in order,
    /// each at the session's position (the last record's; its records are
    /// visible together). Unanswered within `deadline`, its outcome is
    /// unknown.
    pub(crate) async fn append(
        &self,
        parts: &[Part<'_>],
        deadline: Duration,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let requests = parts
            .iter()
            .map(|part| request(part))
            .collect::<Result<Vec<_>, _>>()?;
        let mut call = tonic::Request::new(futures::stream::iter(requests));
        if let Some(authorization) = &self.authorization {
            let value = authorization
                .parse()
                .map_err(|_| StoreError::Config("EventStoreDB credentials are not ASCII".into()))?;
            call.metadata_mut().insert("authorization", value);
        }
        call.set_timeout(deadline);
        let mut client = StreamsServiceClient::new(self.channel()?);
        let answer = tokio::time::timeout(deadline, client.append_session(call)).await;
        let streams = || {
            parts
                .iter()
                .map(|p| p.stream)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let answer = match answer {
            Ok(Ok(answer)) => answer.into_inner(),
            Ok(Err(status)) => return Err(self.error(parts, &status)),
            Err(_) => {
                return Err(StoreError::OutcomeUnknown(format!(
                    "no answer to an append to {} within {} s",
                    streams(),
                    deadline.as_secs_f64()
                )));
            }
        };
        let at = u64::try_from(answer.position).unwrap_or(0);
        if answer.output.len() != parts.len() {
            return Err(StoreError::Backend(format!(
                "EventStoreDB answered an append to {} with {} outcomes",
                streams(),
                answer.output.len()
            )));
        }
        Ok(answer
            .output
            .iter()
            .map(|out| AppendOutcome {
                last_version: u64::try_from(out.stream_revision).unwrap_or(0),
                position: Position {
                    commit: at,
                    prepare: at,
                },
                already_appended: false,
            })
            .collect())
    }

    /// A failed session's error in ours.
    fn error(&self, parts: &[Part<'_>], status: &tonic::Status) -> StoreError {
        let details = RichStatus::decode(status.details())
            .map(|s| s.details)
            .unwrap_or_default();
        let detail = |name: &str| details.iter().find(|d| d.type_url.ends_with(name));
        let named = |on_server: &str| {
            parts
                .iter()
                .find(|p| p.on_server == on_server)
                .or_else(|| parts.first())
        };
        if let Some(conflict) = detail(".StreamRevisionConflictErrorDetails")
            .and_then(|d| StreamRevisionConflictErrorDetails::decode(d.value.as_slice()).ok())
            && let Some(part) = named(&conflict.stream)
        {
            return StoreError::WrongExpectedVersion {
                stream: part.stream.to_owned(),
                expected: part.expected,
                actual: u64::try_from(conflict.actual_revision).ok(),
            };
        }
        if let Some(leader) = detail(".NotLeaderNodeErrorDetails")
            .and_then(|d| NotLeaderNodeErrorDetails::decode(d.value.as_slice()).ok())
            .and_then(|d| d.current_leader)
        {
            self.follow(Endpoint {
                host: leader.host.clone(),
                port: u32::try_from(leader.port).unwrap_or(2113),
            });
            return StoreError::Unavailable(format!(
                "not the leader; appends go to {}:{} from now on",
                leader.host, leader.port
            ));
        }
        let streams = parts
            .iter()
            .map(|p| p.stream)
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!("append to {streams}: {}", status.message());
        match status.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                super::access_denied(&streams)
            }
            tonic::Code::FailedPrecondition
                if detail(".StreamTombstonedErrorDetails").is_some() =>
            {
                super::deleted(&streams)
            }
            tonic::Code::Unavailable => StoreError::Unavailable(message),
            // Sent, and then no clear answer: the server's own timeout, a
            // cut call, or an internal error after the records reached it
            // (25.1 answers a retry that is partly stored that way).
            tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
            | tonic::Code::Internal
            | tonic::Code::Unknown => StoreError::OutcomeUnknown(message),
            tonic::Code::InvalidArgument => StoreError::InvalidRequest(message),
            _ => StoreError::Backend(message),
        }
    }
}

/// One part as the server reads it.
fn request(part: &Part<'_>) -> Result<AppendRequest, StoreError> {
    let records = part
        .events
        .iter()
        .map(|event| {
            let metadata = serde_json::to_value(super::custom_metadata(event)).map_err(|e| {
                StoreError::InvalidRequest(format!("event {} metadata: {e}", event.event_id))
            })?;
            serde_json::from_slice::<serde_json::Value>(&event.data).map_err(|e| {
                StoreError::InvalidRequest(format!(
                    "event {} data is not JSON: {e}",
                    event.event_id
                ))
            })?;
            let properties = match metadata {
                serde_json::Value::Object(map) => {
                    map.into_iter().map(|(k, v)| (k, value(v))).collect()
                }
                _ => std::collections::HashMap::new(),
            };
            Ok(AppendRecord {
                record_id: Some(event.event_id.to_string()),
                properties,
                schema: Some(SchemaInfo {
                    format: SchemaFormat::Json as i32,
                    name: event.event_type.clone(),
                    id: None,
                }),
                data: event.data.to_vec(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(AppendRequest {
        stream: part.on_server.clone(),
        records,
        expected_revision: Some(expected_revision(part.expected)),
    })
}

/// The v2 protocol's expected revision: a revision, or its constants
/// (`ExpectedRevisionConstants`: -1 no stream, -2 any).
fn expected_revision(expected: ExpectedVersion) -> i64 {
    match expected {
        ExpectedVersion::Exact(v) => i64::try_from(v).unwrap_or(i64::MAX),
        ExpectedVersion::NoStream => -1,
        ExpectedVersion::Any => -2,
    }
}

/// A JSON value as a protobuf one (properties are a `Struct`).
fn value(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map.into_iter().map(|(k, v)| (k, value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// TLS as the client's settings ask: the system's roots, or the CA file
/// named, and the user certificate when there is one.
fn tls_config(settings: &ClientSettings) -> Result<ClientTlsConfig, StoreError> {
    let read = |path: &String| {
        std::fs::read(path)
            .map_err(|e| StoreError::Config(format!("EventStoreDB TLS file {path}: {e}")))
    };
    let mut tls = ClientTlsConfig::new().with_native_roots();
    if let Some(ca) = settings.tls_ca_file() {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let Some((cert, key)) = settings.user_certificate() {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(tls)
}

/// The `Basic` authorization of the settings' default user. The client
/// keeps its login and password to itself, except through its own
/// serialisation, which is where they are read from.
fn basic(credentials: &kurrentdb::Credentials) -> Option<String> {
    let json = serde_json::to_value(credentials).ok()?;
    let bytes = |key: &str| -> Option<Vec<u8>> {
        json.get(key)?
            .as_array()?
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect()
    };
    let mut pair = bytes("login")?;
    pair.push(b':');
    pair.extend(bytes("password")?);
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_user_becomes_a_basic_authorization() {
        let settings: ClientSettings = "esdb://admin:changeit@127.0.0.1:2113?tls=false"
            .parse()
            .unwrap();
        let credentials = settings.default_authenticated_user().as_ref().unwrap();
        assert_eq!(basic(credentials).unwrap(), "Basic YWRtaW46Y2hhbmdlaXQ=");
    }

    #[test]
    fn expected_revisions_use_the_v2_constants() {
        assert_eq!(expected_revision(ExpectedVersion::Exact(7)), 7);
        assert_eq!(expected_revision(ExpectedVersion::NoStream), -1);
        assert_eq!(expected_revision(ExpectedVersion::Any), -2);
    }

    #[test]
    fn tls_without_verification_keeps_appends_in_order() {
        let settings: ClientSettings = "esdb://127.0.0.1:2113?tls=true&tlsVerifyCert=false"
            .parse()
            .unwrap();
        assert!(Sessions::new(&settings).unwrap().is_none());
        let plain: ClientSettings = "esdb://127.0.0.1:2113?tls=false".parse().unwrap();
        assert!(Sessions::new(&plain).unwrap().is_some());
    }

    #[test]
    fn properties_carry_the_metadata_json_as_it_is() {
        let v = value(serde_json::json!({"a": "x", "n": 2, "t": [true, null]}));
        let Some(prost_types::value::Kind::StructValue(s)) = v.kind else {
            panic!("a struct")
        };
        assert_eq!(
            s.fields["n"].kind,
            Some(prost_types::value::Kind::NumberValue(2.0))
        );
        assert_eq!(
            s.fields["a"].kind,
            Some(prost_types::value::Kind::StringValue("x".into()))
        );
    }
}
