//! Who is calling: bearer JWTs (HS256 with a shared secret, or RS256 with a
//! public key), with a role. `manager` may do every operator action; a
//! `member` token (subject = member id) may use that member's points, read,
//! withdraw and ask for release, but never award itself points; a `partner`
//! token (a system that awards points: a shop, a card issuer) may only earn
//! points for members. Joining needs no token.

use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind as JwtError;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use mileage_domain::envelope::Actor;
use mileage_domain::ids::MemberId;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::settings::{JwtKey, JwtKeys, TokenRules};

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An operator: dormant-target management and every member action.
    Manager,
    /// A member, acting for themselves (`sub` = member id).
    Member,
    /// A partner system that awards points (`sub` = the partner's name):
    /// earning only.
    Partner,
}

impl Role {
    /// The role as tokens spell it (`manager`, `member`, `partner`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manager => "manager",
            Self::Member => "member",
            Self::Partner => "partner",
        }
    }
}

/// The claims we read from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Member id for members; operator name for managers.
    pub sub: String,
    pub role: Role,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch: where the lifetime counts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Checks tokens against the configured keys (one, or two during a
/// rotation).
pub struct Verifier {
    keys: Vec<NamedKey>,
    max_lifetime: u64,
}

/// One key a token may be signed with, with the `kid` naming it (if any)
/// and how its tokens are checked.
struct NamedKey {
    id: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

impl NamedKey {
    fn from_key(id: Option<String>, key: &JwtKey) -> anyhow::Result<Self> {
        let (key, algorithm) = match key {
            JwtKey::Hs256(secret) => (
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                Algorithm::HS256,
            ),
            JwtKey::Rs256(pem) => (
                DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                    anyhow::anyhow!("an RS256 key is not an RSA public key in PEM form: {e}")
                })?,
                Algorithm::RS256,
            ),
        };
        Ok(Self {
            id,
            key,
            validation: validation(algorithm),
        })
    }
}

impl Verifier {
    /// The verifier for the configured keys: the current one first, then
    /// the one being retired; the default [`TokenRules`] until
    /// [`Verifier::with_rules`].
    pub fn from_keys(keys: &JwtKeys) -> anyhow::Result<Self> {
        let mut named = vec![NamedKey::from_key(keys.current_id.clone(), &keys.current)?];
        if let Some((id, key)) = &keys.previous {
            named.push(NamedKey::from_key(Some(id.clone()), key)?);
        }
        Ok(Self {
            keys: named,
            max_lifetime: TokenRules::default().max_lifetime.as_secs(),
        })
    }

    /// Tokens signed with HS256 and this shared secret (tests, embedders).
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            keys: vec![NamedKey {
                id: None,
                key: DecodingKey::from_secret(secret),
                validation: validation(Algorithm::HS256),
            }],
            max_lifetime: TokenRules::default().max_lifetime.as_secs(),
        }
    }

    /// The same verifier, also holding tokens to `rules`.
    #[must_use]
    pub fn with_rules(mut self, rules: &TokenRules) -> Self {
        let mut required = vec!["exp", "sub"];
        if rules.issuer.is_some() {
            required.push("iss");
        }
        if rules.audience.is_some() {
            required.push("aud");
        }
        for key in &mut self.keys {
            if let Some(issuer) = &rules.issuer {
                key.validation.set_issuer(&[issuer]);
            }
            if let Some(audience) = &rules.audience {
                key.validation.set_audience(&[audience]);
            }
            key.validation.set_required_spec_claims(&required);
        }
        self.max_lifetime = rules.max_lifetime.as_secs();
        self
    }

    /// The keys a token may be checked with: the one its `kid` names; keys
    /// without a name accept any `kid`; a token without `kid` may be signed
    /// with any key.
    fn candidates(&self, kid: Option<&str>) -> Vec<&NamedKey> {
        let Some(kid) = kid else {
            return self.keys.iter().collect();
        };
        let named: Vec<&NamedKey> = self
            .keys
            .iter()
            .filter(|k| k.id.as_deref() == Some(kid))
            .collect();
        if named.is_empty() {
            self.keys.iter().filter(|k| k.id.is_none()).collect()
        } else {
            named
        }
    }

    /// The claims of a valid token; 401 otherwise, saying why.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let header = decode_header(token).map_err(|_| {
            unauthorized("auth.invalid_token", "the bearer token is not valid here")
        })?;
        let candidates = self.candidates(header.kid.as_deref());
        if candidates.is_empty() {
            return Err(unauthorized(
                "auth.unknown_key",
                "the bearer token names a signing key (kid) this service does not accept",
            ));
        }
        let mut first_error = None;
        let mut verified = None;
        for key in candidates {
            match decode::<Claims>(token, &key.key, &key.validation) {
                Ok(data) => {
                    verified = Some(data.claims);
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let claims = verified.ok_or_else(|| {
            match first_error.as_ref().map(jsonwebtoken::errors::Error::kind) {
                Some(JwtError::ExpiredSignature) => {
                    unauthorized("auth.token_expired", "the bearer token has expired")
                }
                _ => unauthorized("auth.invalid_token", "the bearer token is not valid here"),
            }
        })?;
        Actor::caller(claims.role.as_str(), &claims.sub).map_err(|_| invalid_subject())?;
        // The lifetime counts from `iat`, which must be there and not in
        // the future (beyond the clock leeway): otherwise a token could
        // claim to be issued tomorrow and live a day longer than allowed.
        let Some(from) = claims.iat else {
            return Err(unauthorized(
                "auth.token_lifetime",
                "the bearer token has no iat, so its lifetime cannot be checked",
            ));
        };
        let at = now().map_err(|_| {
            unauthorized(
                "auth.invalid_token",
                "the bearer token cannot be checked now",
            )
        })?;
        if from > at + CLOCK_LEEWAY_SECS {
            return Err(unauthorized(
                "auth.token_lifetime",
                "the bearer token is issued in the future",
            ));
        }
        if claims.exp.saturating_sub(from) > self.max_lifetime {
            return Err(unauthorized(
                "auth.token_lifetime",
                "the bearer token is valid for longer than this service accepts",
            ));
        }
        Ok(claims)
    }
}

/// How far apart the issuer's clock and ours may be, in seconds.
const CLOCK_LEEWAY_SECS: u64 = 5;

fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = CLOCK_LEEWAY_SECS;
    // A token is no good before its `nbf` either (when it has one).
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation
}

/// A token whose subject is not 1 to 128 characters
/// without control characters: no event could say who acted.
fn invalid_subject() -> ApiError {
    unauthorized(
        "auth.invalid_subject",
        "the bearer token's sub must be 1 to 128 characters, none a control character",
    )
}

fn unauthorized(code: &'static str, detail: &str) -> ApiError {
    ApiError::Unauthorized {
        code,
        detail: detail.to_owned(),
    }
}

fn forbidden(detail: &str) -> ApiError {
    ApiError::Forbidden(detail.to_owned())
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl Caller {
    /// Operators only.
    pub fn require_manager(&self) -> Result<(), ApiError> {
        match self.0.role {
            Role::Manager => Ok(()),
            Role::Member | Role::Partner => Err(forbidden("this action needs the manager role")),
        }
    }

    /// The caller as the events it causes record it (`role:subject`).
    ///
    /// # Errors
    /// 401 for a subject no event could record; [`Verifier::verify`]
    /// refuses those already.
    pub fn actor(&self) -> Result<Actor, ApiError> {
        Actor::caller(self.0.role.as_str(), &self.0.sub).map_err(|_| invalid_subject())
    }

    /// An operator, or the member themselves.
    pub fn require_member_or_manager(&self, member_id: &MemberId) -> Result<(), ApiError> {
        match self.0.role {
            Role::Manager => Ok(()),
            Role::Member if self.0.sub == member_id.as_str() => Ok(()),
            Role::Member => Err(forbidden(
                "a member token may act only for its own member id",
            )),
            Role::Partner => Err(forbidden("a partner token may only award points")),
        }
    }

    /// Who may award points: an operator or a partner system, never a
    /// member (for themselves or anyone).
    pub fn require_awarder(&self) -> Result<(), ApiError> {
        match self.0.role {
            Role::Manager | Role::Partner => Ok(()),
            Role::Member => Err(forbidden(
                "points are awarded by an operator or a partner, not by the member",
            )),
        }
    }
}

/// Any service whose state holds a [`Verifier`] can ask for a `Caller`.
impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<Verifier>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Verified already by the rate limits' middleware.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            unauthorized(
                "auth.missing_token",
                "an Authorization: Bearer token is required",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                unauthorized(
                    "auth.invalid_token",
                    "expected Authorization: Bearer <token>",
                )
            })?;
        Arc::<Verifier>::from_ref(state)
            .verify(token.trim())
            .map(Caller)
    }
}

/// Mints an HS256 token: for local development (`mint-token`) and tests.
pub fn mint_hs256(
    secret: &[u8],
    sub: &str,
    role: Role,
    ttl_seconds: u64,
) -> anyhow::Result<String> {
    mint(secret, None, sub, role, now()?.saturating_add(ttl_seconds))
}

/// Mints an HS256 token naming its key with `kid` (a key rotation).
pub fn mint_hs256_with_kid(
    secret: &[u8],
    kid: &str,
    sub: &str,
    role: Role,
    ttl_seconds: u64,
) -> anyhow::Result<String> {
    mint(
        secret,
        Some(kid),
        sub,
        role,
        now()?.saturating_add(ttl_seconds),
    )
}

/// An already expired HS256 token, for tests of expiry.
pub fn mint_expired_hs256(secret: &[u8], sub: &str, role: Role) -> anyhow::Result<String> {
    mint(secret, None, sub, role, now()?.saturating_sub(3600))
}

fn now() -> anyhow::Result<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())
}

fn mint(
    secret: &[u8],
    kid: Option<&str>,
    sub: &str,
    role: Role,
    exp: u64,
) -> anyhow::Result<String> {
    let claims = Claims {
        sub: sub.to_owned(),
        role,
        exp,
        iat: now().ok(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    Ok(encode(&header, &claims, &EncodingKey::from_secret(secret))?)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::{TokenRules, Verifier, now};

    const SECRET: &[u8] = b"unit-test-secret-of-32-bytes-or-more!";

    fn signed(claims: &serde_json::Value) -> String {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn issuer_audience_and_lifetime_are_required_when_set() {
        let rules = TokenRules {
            issuer: Some("https://id.example".into()),
            audience: Some("mileage".into()),
            max_lifetime: std::time::Duration::from_secs(3600),
        };
        let verifier = Verifier::hs256(SECRET).with_rules(&rules);
        let at = now().unwrap();
        let good = json!({ "sub": "ops", "role": "manager", "iat": at, "exp": at + 600,
                           "iss": "https://id.example", "aud": "mileage" });
        assert!(verifier.verify(&signed(&good)).is_ok());
        for (claim, value) in [
            ("iss", json!("https://evil.example")),
            ("aud", json!("other")),
        ] {
            let mut bad = good.clone();
            bad[claim] = value;
            assert!(verifier.verify(&signed(&bad)).is_err(), "{claim}");
            bad.as_object_mut().unwrap().remove(claim);
            assert!(verifier.verify(&signed(&bad)).is_err(), "missing {claim}");
        }
        let mut long = good.clone();
        long["exp"] = json!(at + 7200);
        let refused = verifier.verify(&signed(&long)).unwrap_err();
        assert!(
            format!("{refused:?}").contains("auth.token_lifetime"),
            "{refused:?}"
        );
        long.as_object_mut().unwrap().remove("iat");
        assert!(
            verifier.verify(&signed(&long)).is_err(),
            "without iat, from now"
        );
        let mut without_iat = good.clone();
        without_iat.as_object_mut().unwrap().remove("iat");
        let refused = verifier.verify(&signed(&without_iat)).unwrap_err();
        assert!(
            format!("{refused:?}").contains("auth.token_lifetime"),
            "a short token without iat is refused too: {refused:?}"
        );
        let mut future = good.clone();
        future["iat"] = json!(at + 3600);
        future["exp"] = json!(at + 3600 + 600);
        let refused = verifier.verify(&signed(&future)).unwrap_err();
        assert!(
            format!("{refused:?}").contains("auth.token_lifetime"),
            "an iat in the future is refused: {refused:?}"
        );
    }

    #[test]
    fn minted_tokens_carry_their_issue_time_and_pass_the_default_rules() {
        let token = super::mint_hs256(SECRET, "ops", super::Role::Manager, 3600).unwrap();
        let claims = Verifier::hs256(SECRET).verify(&token).unwrap();
        assert!(claims.iat.is_some());
        let long = super::mint_hs256(SECRET, "ops", super::Role::Manager, 48 * 3600).unwrap();
        assert!(
            Verifier::hs256(SECRET).verify(&long).is_err(),
            "two days is past a day"
        );
    }

    #[test]
    fn roles_are_spelled_as_tokens_spell_them() {
        for role in [
            super::Role::Manager,
            super::Role::Member,
            super::Role::Partner,
        ] {
            assert_eq!(serde_json::to_value(role).unwrap(), json!(role.as_str()));
        }
    }

    #[test]
    fn during_a_rotation_tokens_of_both_keys_pass_and_a_kid_picks_its_key() {
        use crate::settings::{JwtKey, JwtKeys};
        const OLD: &[u8] = b"the-old-secret-of-thirty-two-bytes-or-more";
        let keys = JwtKeys {
            current: JwtKey::hs256(std::str::from_utf8(SECRET).unwrap()),
            current_id: Some("k2".into()),
            previous: Some((
                "k1".into(),
                JwtKey::hs256(std::str::from_utf8(OLD).unwrap()),
            )),
        };
        let verifier = Verifier::from_keys(&keys).unwrap();
        let mint = |secret, kid: Option<&str>| {
            match kid {
                Some(kid) => {
                    super::mint_hs256_with_kid(secret, kid, "ops", super::Role::Manager, 600)
                }
                None => super::mint_hs256(secret, "ops", super::Role::Manager, 600),
            }
            .unwrap()
        };
        for (secret, kid) in [
            (SECRET, Some("k2")),
            (OLD, Some("k1")),
            (SECRET, None),
            (OLD, None),
        ] {
            assert!(verifier.verify(&mint(secret, kid)).is_ok(), "{kid:?}");
        }
        let code = |token: String| match verifier.verify(&token) {
            Err(crate::ApiError::Unauthorized { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(mint(OLD, Some("k2"))),
            "auth.invalid_token",
            "k2 is the new key"
        );
        assert_eq!(code(mint(SECRET, Some("k9"))), "auth.unknown_key");
        let retired = Verifier::from_keys(&JwtKeys {
            current: keys.current.clone(),
            current_id: Some("k2".into()),
            previous: None,
        })
        .unwrap();
        assert!(
            retired.verify(&mint(OLD, Some("k1"))).is_err(),
            "once the old key is removed, its tokens stop"
        );
        assert!(
            Verifier::hs256(SECRET)
                .verify(&mint(SECRET, Some("any")))
                .is_ok(),
            "an unnamed key takes any kid"
        );
    }

    #[test]
    fn a_token_is_refused_before_its_not_before_time() {
        let verifier = Verifier::hs256(SECRET);
        let at = now().unwrap();
        let early = signed(
            &json!({ "sub": "ops", "role": "manager", "iat": at, "exp": at + 3600, "nbf": at + 600 }),
        );
        assert!(verifier.verify(&early).is_err());
        let due = signed(
            &json!({ "sub": "ops", "role": "manager", "iat": at, "exp": at + 3600, "nbf": at - 1 }),
        );
        assert!(verifier.verify(&due).is_ok());
    }
}
