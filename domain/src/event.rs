//! How domain events become stored bytes and back.
//!
//! Every event type has a name (the Rust struct's name, also the file name in
//! `schemas/events/`) and a schema version. Stored data is the struct's JSON;
//! the type and version travel beside it in the envelope.

/// What a stored event's `data` is: one aggregate's event enum.
pub trait EventPayload: Sized {
    /// The event's type name, e.g. `MemberJoined`.
    fn event_type(&self) -> &'static str;
    /// The version of the type's schema this value serialises as.
    fn schema_version(&self) -> u16;
    /// The event's data as JSON bytes.
    fn to_json(&self) -> Vec<u8>;
    /// Decodes stored data. Errors name the type and version, never panic.
    fn decode(event_type: &str, schema_version: u16, data: &[u8]) -> Result<Self, DecodeError>;
    /// The JSON Schema of every event type of this enum, at every version it
    /// can decode (the current one and the older ones it upcasts).
    fn schemas() -> Vec<EventSchema>;
}

/// One event type's JSON Schema, as written to `schemas/events/<Type>.v<N>.json`.
#[derive(Debug, Clone)]
pub struct EventSchema {
    pub event_type: &'static str,
    pub version: u16,
    /// The JSON Schema document.
    pub schema: serde_json::Value,
}

/// Stored data that does not decode into a known event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No event type of this name exists in the enum asked for.
    #[error("unknown event type {event_type:?}")]
    UnknownEventType {
        /// The stored type name.
        event_type: String,
    },
    /// The type exists but not at this schema version.
    #[error("event type {event_type} has no schema version {version}")]
    UnsupportedVersion {
        /// The stored type name.
        event_type: String,
        /// The stored version.
        version: u16,
    },
    /// The data is not valid for the type's schema.
    #[error("{event_type} v{version} data is malformed: {reason}")]
    Malformed {
        /// The stored type name.
        event_type: String,
        /// The stored version.
        version: u16,
        /// What serde reported.
        reason: String,
    },
}

/// Declares an aggregate's event enum: one variant per event struct, each
/// with its current schema version and, for types that evolved, the structs
/// of their older versions: `PointsEarned = 2 { 1 => PointsEarnedV1 }`.
/// An older version's struct decodes the stored data and converts into the
/// current type (`From`), which is the upcaster; chains go through each
/// version's `From`. Generates the [`EventPayload`] implementation (decoding
/// every version, schemas of every version) and `From` conversions.
macro_rules! domain_events {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $version:literal
               $( { $( $old:literal => $legacy:ty ),+ $(,)? } )? ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($variant), )+
        }

        $(
            impl From<$variant> for $name {
                fn from(event: $variant) -> Self {
                    Self::$variant(event)
                }
            }
        )+

        impl $crate::event::EventPayload for $name {
            fn event_type(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => stringify!($variant), )+
                }
            }

            fn schema_version(&self) -> u16 {
                match self {
                    $( Self::$variant(_) => $version, )+
                }
            }

            fn to_json(&self) -> Vec<u8> {
                match self {
                    $( Self::$variant(event) => serde_json::to_vec(event), )+
                }
                .expect("event structs hold only strings, numbers and timestamps, which always serialise")
            }

            fn decode(
                event_type: &str,
                schema_version: u16,
                data: &[u8],
            ) -> Result<Self, $crate::event::DecodeError> {
                use $crate::event::DecodeError;
                match event_type {
                    $(
                        stringify!($variant) => {
                            let malformed = |e: serde_json::Error| DecodeError::Malformed {
                                event_type: event_type.to_owned(),
                                version: schema_version,
                                reason: e.to_string(),
                            };
                            $($(
                                if schema_version == $old {
                                    return serde_json::from_slice::<$legacy>(data)
                                        .map(|legacy| Self::$variant(legacy.into()))
                                        .map_err(malformed);
                                }
                            )+)?
                            if schema_version != $version {
                                return Err(DecodeError::UnsupportedVersion {
                                    event_type: event_type.to_owned(),
                                    version: schema_version,
                                });
                            }
                            serde_json::from_slice(data).map(Self::$variant).map_err(malformed)
                        }
                    )+
                    _ => Err(DecodeError::UnknownEventType { event_type: event_type.to_owned() }),
                }
            }

            fn schemas() -> Vec<$crate::event::EventSchema> {
                let current = [
                    $(
                        $crate::event::EventSchema {
                            event_type: stringify!($variant),
                            version: $version,
                            schema: schemars::schema_for!($variant).to_value(),
                        },
                    )+
                ];
                let older: Vec<$crate::event::EventSchema> = vec![
                    $($($(
                        $crate::event::EventSchema {
                            event_type: stringify!($variant),
                            version: $old,
                            schema: schemars::schema_for!($legacy).to_value(),
                        },
                    )+)?)+
                ];
                current.into_iter().chain(older).collect()
            }
        }
    };
}

pub(crate) use domain_events;
