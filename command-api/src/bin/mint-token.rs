//! Mints a bearer token for local development:
//!
//!     JWT_HS256_SECRET=... mint-token manager ops
//!     JWT_HS256_SECRET=... mint-token member 42 [ttl-seconds]
//!     JWT_HS256_SECRET=... mint-token partner card-issuer

use mileage_service::auth::{Role, mint_hs256};

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
    println!("{}", mint_hs256(secret.as_bytes(), sub, role, ttl)?);
    Ok(())
}
