//! KurrentDB's v2 protocol, generated from the vendored `.proto` files in
//! `proto/v2` (see `build.rs`): the client of `StreamsService` for the
//! adapter's atomic multi-stream append, and its server for the wire
//! double.

#![allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub,
    dead_code,
    rustdoc::all
)]

pub mod kurrentdb {
    pub mod protocol {
        pub mod v2 {
            pub mod streams {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/v2/kurrentdb.protocol.v2.streams.rs"
                ));
                pub mod errors {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/v2/kurrentdb.protocol.v2.streams.errors.rs"
                    ));
                }
            }
        }
    }
}

pub mod kurrent {
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/v2/kurrent.rpc.rs"));
    }
}

pub mod google {
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/v2/google.rpc.rs"));
    }
}
