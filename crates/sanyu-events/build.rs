//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../../proto";
    let file = "../../proto/sanyu/events/v1/events.proto";
    println!("cargo:rerun-if-changed={proto_root}");
    let descriptors = protox::compile([file], [proto_root])?;
    prost_build::Config::new()
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::prost_types")
        .compile_fds(descriptors)?;
    Ok(())
}
