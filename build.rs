//! Compiles the etcd v3 API protos and ferrocd's internal protos with a vendored protoc,
//! so a fresh machine with only a Rust toolchain can build the server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let files = [
        "proto/etcd/kv.proto",
        "proto/etcd/auth.proto",
        "proto/etcd/rpc.proto",
        "proto/etcd/v3lock.proto",
        "proto/etcd/v3election.proto",
        "proto/ferrocd/internal.proto",
        "proto/ferrocd/peer.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&files, &["proto"])?;
    Ok(())
}
