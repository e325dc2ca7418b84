//! CA state directory: creation, reopening, file modes, refusal of broken states,
//! import of CAs made by openssl.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use tfmprov_ca::store::{
    DB_FILE, INTERMEDIATE_CERT_FILE, INTERMEDIATE_KEY_FILE, ROOT_CERT_FILE, ROOT_KEY_FILE,
};
use tfmprov_ca::{Ca, CaConfig, Error, ImportedCas};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn create_then_reopen_keeps_the_same_cas() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let ca = open_ca(&dir);
    let (root, intermediate) = (ca.root_pem(), ca.intermediate_pem());
    assert!(root.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_ne!(root, intermediate);
    assert!(ca.has_root_key());
    drop(ca);

    for f in [
        ROOT_CERT_FILE,
        ROOT_KEY_FILE,
        INTERMEDIATE_CERT_FILE,
        INTERMEDIATE_KEY_FILE,
        DB_FILE,
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert_eq!(mode(&dir.join(ROOT_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(INTERMEDIATE_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let key = std::fs::read_to_string(dir.join(INTERMEDIATE_KEY_FILE)).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");

    let again = open_ca(&dir);
    assert_eq!(again.root_pem(), root);
    assert_eq!(again.intermediate_pem(), intermediate);

    // The CA certificates as openssl sees them.
    std::fs::write(tmp.path().join("root.pem"), &root).unwrap();
    std::fs::write(tmp.path().join("int.pem"), &intermediate).unwrap();
    let text = openssl(tmp.path(), &["x509", "-in", "root.pem", "-noout", "-text"]);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    let text = openssl(tmp.path(), &["x509", "-in", "int.pem", "-noout", "-text"]);
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    openssl(tmp.path(), &["verify", "-CAfile", "root.pem", "int.pem"]);
}

#[test]
fn two_state_dirs_get_different_cas() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert_ne!(open_ca(a.path()).root_pem(), open_ca(b.path()).root_pem());
}

#[test]
fn incomplete_state_is_refused_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    drop(open_ca(tmp.path()));
    let key_path = tmp.path().join(INTERMEDIATE_KEY_FILE);
    let key = std::fs::read(&key_path).unwrap();
    std::fs::remove_file(&key_path).unwrap();
    let err = Ca::open_or_create(&CaConfig::new(tmp.path())).unwrap_err();
    assert!(matches!(err, Error::State { .. }), "{err}");
    assert!(err.to_string().contains("incomplete"), "{err}");
    assert!(
        !key_path.exists(),
        "a key must not be regenerated over a broken state"
    );
    std::fs::write(&key_path, key).unwrap();
    open_ca(tmp.path());
}

#[test]
fn mismatched_key_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    drop(open_ca(a.path()));
    drop(open_ca(b.path()));
    std::fs::copy(
        b.path().join(INTERMEDIATE_KEY_FILE),
        a.path().join(INTERMEDIATE_KEY_FILE),
    )
    .unwrap();
    let err = Ca::open_or_create(&CaConfig::new(a.path())).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn bad_validity_days_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = CaConfig::new(tmp.path());
    cfg.validity_days = 0;
    assert!(matches!(Ca::open_or_create(&cfg), Err(Error::Config(_))));
    cfg.validity_days = 40_000;
    assert!(matches!(Ca::open_or_create(&cfg), Err(Error::Config(_))));
}

/// Root (SEC1 key) and intermediate (PKCS#8 key) made by openssl.
fn openssl_cas(dir: &std::path::Path) -> ImportedCas {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "rootkey.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "rootkey.pem",
            "-subj",
            "/O=Example/CN=Imported Root",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "root.pem",
        ],
    );
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "intkey.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "intkey.pem",
            "-subj",
            "/O=Example/CN=Imported Intermediate",
            "-out",
            "int.csr",
        ],
    );
    std::fs::write(
        dir.join("int.ext"),
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "rootkey.pem",
            "-CAcreateserial",
            "-days",
            "1000",
            "-sha256",
            "-extfile",
            "int.ext",
            "-out",
            "int.pem",
        ],
    );
    ImportedCas {
        root_cert: dir.join("root.pem"),
        root_key: Some(dir.join("rootkey.pem")),
        intermediate_cert: dir.join("int.pem"),
        intermediate_key: dir.join("intkey.pem"),
    }
}

#[test]
fn import_openssl_cas_and_issue() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let imported = openssl_cas(&src);
    let state = tmp.path().join("state");
    let cfg = CaConfig {
        state_dir: state.clone(),
        validity_days: 30,
        import: Some(imported.clone()),
        database: tfmprov_db::DbChoice::Sqlite,
        admin_token_file: None,
    };
    let ca = Ca::open_or_create(&cfg).unwrap();
    assert!(ca.has_root_key());
    assert_eq!(mode(&state.join(ROOT_KEY_FILE)), 0o600);
    assert_eq!(mode(&state.join(INTERMEDIATE_KEY_FILE)), 0o600);

    let issued = ca.sign_csr(&p256_csr(tmp.path(), "/CN=dev-imp")).unwrap();
    let out = openssl_verify(tmp.path(), &ca, &first_pem(&issued.chain_pem));
    assert!(out.contains("OK"), "{out}");
    // The leaf's AKI is the openssl-made intermediate's SKI.
    let int_text = openssl(
        &src,
        &[
            "x509",
            "-in",
            "int.pem",
            "-noout",
            "-ext",
            "subjectKeyIdentifier",
        ],
    );
    let leaf_text = openssl(
        tmp.path(),
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-ext",
            "authorityKeyIdentifier",
        ],
    );
    let ski = int_text.lines().nth(1).unwrap().trim().to_string();
    assert!(
        leaf_text.contains(&ski),
        "AKI {leaf_text} vs intermediate SKI {ski}"
    );
    drop(ca);

    // The same import again is accepted; a different CA over the state is not.
    Ca::open_or_create(&cfg).unwrap();
    let other_dir = tmp.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = openssl_cas(&other_dir);
    let err = Ca::open_or_create(&CaConfig {
        import: Some(other),
        ..cfg
    })
    .unwrap_err();
    assert!(err.to_string().contains("different CA"), "{err}");
}

#[test]
fn import_with_offline_root() {
    let tmp = tempfile::tempdir().unwrap();
    let mut imported = openssl_cas(tmp.path());
    imported.root_key = None;
    let state = tmp.path().join("state");
    let cfg = CaConfig {
        state_dir: state.clone(),
        validity_days: 30,
        import: Some(imported),
        database: tfmprov_db::DbChoice::Sqlite,
        admin_token_file: None,
    };
    let ca = Ca::open_or_create(&cfg).unwrap();
    assert!(!ca.has_root_key());
    assert!(!state.join(ROOT_KEY_FILE).exists());
    drop(ca);
    let ca = open_ca(&state);
    assert!(!ca.has_root_key());
    ca.sign_csr(&p256_csr(tmp.path(), "/CN=dev-offline"))
        .unwrap();
}

#[test]
fn import_refuses_an_intermediate_not_signed_by_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let mut imp = openssl_cas(&a);
    let other = openssl_cas(&b);
    imp.root_cert = other.root_cert;
    imp.root_key = other.root_key;
    let err = Ca::open_or_create(&CaConfig {
        state_dir: tmp.path().join("state"),
        validity_days: 30,
        import: Some(imp),
        database: tfmprov_db::DbChoice::Sqlite,
        admin_token_file: None,
    })
    .unwrap_err();
    assert!(matches!(err, Error::State { .. }), "{err}");
    assert!(!tmp
        .path()
        .join("state")
        .join(INTERMEDIATE_KEY_FILE)
        .exists());
}

#[test]
fn import_refuses_a_key_that_is_not_p256() {
    let tmp = tempfile::tempdir().unwrap();
    let mut imp = openssl_cas(tmp.path());
    openssl(
        tmp.path(),
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            "p384.pem",
        ],
    );
    imp.intermediate_key = tmp.path().join("p384.pem");
    let err = Ca::open_or_create(&CaConfig {
        state_dir: tmp.path().join("state"),
        validity_days: 30,
        import: Some(imp),
        database: tfmprov_db::DbChoice::Sqlite,
        admin_token_file: None,
    })
    .unwrap_err();
    assert!(matches!(err, Error::State { .. }), "{err}");
}
