//! Mints a bearer token for local development:
//!
//!     JWT_HS256_SECRET=... mint-token manager ops
//!     JWT_HS256_SECRET=... mint-token member 42 [ttl-seconds]
//!     JWT_HS256_SECRET=... mint-token partner card-issuer
//!
//! With `JWT_KEY_ID` set, the token names its key (`kid`), as the services
//! expect during a key rotation.

use mileage_service::auth::{Role, mint_hs256, mint_hs256_with_kid};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: mint-token <manager|member|partner> <subject> [ttl-seconds]";
    let [role, sub, ..] = args.as_slice() else {
        anyhow::bail!("{usage}")
    };
    let role = match role.as_str() {
        "manager" => Role::Manager,
        "member" => Role::Member,
        "partner" => Role::Partner,
        other => anyhow::bail!("unknown role {other:?}; {usage}"),
    };
    let ttl = match args.get(2) {
        Some(ttl) => ttl
            .parse()
            .map_err(|_| anyhow::anyhow!("ttl-seconds {ttl:?} is not a number"))?,
        None => 12 * 3600,
    };
    let secret = std::env::var("JWT_HS256_SECRET")
        .map_err(|_| anyhow::anyhow!("JWT_HS256_SECRET is not set"))?;
    let token = match std::env::var("JWT_KEY_ID").ok().filter(|k| !k.is_empty()) {
        Some(kid) => mint_hs256_with_kid(secret.as_bytes(), &kid, sub, role, ttl)?,
        None => mint_hs256(secret.as_bytes(), sub, role, ttl)?,
    };
    println!("{token}");
    Ok(())
}
