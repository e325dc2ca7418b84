//! `include/tfmprov.h` is generated from this crate by cbindgen and checked
//! in for the Zephyr build (which has no cbindgen). This test regenerates it
//! into memory and fails on any difference, so the header cannot drift from
//! the Rust ABI. `TFMPROV_BLESS=1` (scripts/check-header --bless) rewrites it.

use std::path::PathBuf;

fn generate() -> String {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("header is UTF-8")
}

#[test]
fn header_matches_the_rust_abi() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/tfmprov.h");
    let generated = generate();
    if std::env::var_os("TFMPROV_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/tfmprov.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let tmp = tempfile::Builder::new().suffix(".h").tempfile().expect("temp file");
        std::fs::write(tmp.path(), &generated).expect("write temp header");
        let kept = tmp.into_temp_path().keep().expect("keep temp header");
        panic!(
            "include/tfmprov.h is out of date with the Rust ABI.\n  regenerated: {}\n  diff -u {} {}\n  fix: scripts/check-header --bless",
            kept.display(),
            path.display(),
            kept.display()
        );
    }
}

#[test]
fn header_declares_the_whole_abi() {
    let h = generate();
    for name in [
        "int32_t tfmprov_init(",
        "int32_t tfmprov_smp_handle(",
        "int32_t tfmprov_smp_v1_rc(",
        "int32_t tfmprov_shell(",
        "int32_t tfmprov_mqtt_topic(",
        "int32_t tfmprov_mqtt_qos(",
        "int32_t tfmprov_mqtt_next(",
        "int32_t tfmprov_mqtt_on_error(",
        "const char *tfmprov_strerror(",
        "size_t tfmprov_psa_key_attributes_size(",
        "struct tfmprov_smp_rsp {",
        "#define TFMPROV_RSP_CERT",
        "#define TFMPROV_ERR_DEVICE_BASE",
    ] {
        assert!(h.contains(name), "generated header lacks `{name}`:\n{h}");
    }
}
