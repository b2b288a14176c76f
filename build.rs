//! Compiles `proto/*.proto` without `protoc`: `protox` parses the files into a
//! descriptor set, and `tonic-prost-build` generates messages and services from it.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut protos: Vec<PathBuf> = std::fs::read_dir("proto")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(&protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // File chunks decode into `Bytes`, sharing the receive buffer.
        .bytes(".raftsnap.file.FileChunk.data")
        .compile_fds(fds)?;
    Ok(())
}
