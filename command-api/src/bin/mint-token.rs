//! Mints a bearer token for local development and tests:
//!
//!     JWT_HS256_SECRET=... mint-token manager ops
//!     JWT_HS256_SECRET=... mint-token member 42 3600
//!     JWT_HS256_SECRET=... mint-token partner card-issuer
//!
//! With `JWT_KEY_ID` set, the token names its key (`kid`), as the services
//! expect during a key rotation.

use clap::{Parser, ValueEnum};
use mileage_service::auth::{Role, mint_hs256, mint_hs256_with_kid};

/// Prints a signed HS256 bearer token for the command and query APIs.
#[derive(Parser)]
#[command(
    name = "mint-token",
    version,
    about = "Prints a signed HS256 bearer token for the command and query APIs (local development and tests)"
)]
struct Args {
    /// Who the token speaks for: `manager` (operators: everything),
    /// `member` (that member only) or `partner` (awards points).
    role: RoleArg,
    /// The token's subject (`sub`): the member id for `member`, a name otherwise.
    subject: String,
    /// How long the token is valid, in seconds (at most the services'
    /// `JWT_MAX_LIFETIME_SECS`, a day by default).
    #[arg(default_value_t = 12 * 3600)]
    ttl_seconds: u64,
    /// The services' HS256 secret.
    #[arg(
        long,
        env = "JWT_HS256_SECRET",
        value_name = "JWT_HS256_SECRET",
        hide_env_values = true
    )]
    secret: String,
    /// The key id (`kid`) to name, during a key rotation.
    #[arg(long, env = "JWT_KEY_ID", hide_env_values = true)]
    key_id: Option<String>,
}

/// The roles, as written on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Manager,
    Member,
    Partner,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Manager => Self::Manager,
            RoleArg::Member => Self::Member,
            RoleArg::Partner => Self::Partner,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (secret, role) = (args.secret.as_bytes(), args.role.into());
    let token = match args.key_id.filter(|k| !k.is_empty()) {
        Some(kid) => mint_hs256_with_kid(secret, &kid, &args.subject, role, args.ttl_seconds)?,
        None => mint_hs256(secret, &args.subject, role, args.ttl_seconds)?,
    };
    println!("{token}");
    Ok(())
}
