use super::*;

#[test]
fn build_and_parse() {
    for k in Kind::ALL {
        let t = topic(DEFAULT_PREFIX, "dev-01.a_b", k);
        assert_eq!(t, alloc::format!("prov/dev-01.a_b/{}", k.as_str()));
        assert_eq!(parse_topic("prov", &t), Some(("dev-01.a_b", k)));
    }
    assert_eq!(topic("site/prov", "d", Kind::Errors), "site/prov/d/errors");
    assert_eq!(
        parse_topic("site/prov", "site/prov/d/errors"),
        Some(("d", Kind::Errors))
    );
    assert_eq!(subscription("prov", Kind::Session), "prov/+/session");
    assert_eq!((Kind::Session.qos(), Kind::Data.qos()), (2, 1));
}

#[test]
fn parse_rejects() {
    assert_eq!(parse_topic("prov", "prov/d/other"), None);
    assert_eq!(parse_topic("prov", "prov/d/data/x"), None);
    assert_eq!(parse_topic("prov", "prov//data"), None);
    assert_eq!(parse_topic("prov", "prov/+/data"), None);
    assert_eq!(parse_topic("prov", "provx/d/data"), None);
    assert_eq!(parse_topic("prov", "other/d/data"), None);
    assert_eq!(parse_topic("prov", "prov/d"), None);
    assert_eq!(parse_topic("prov", "prov"), None);
    assert_eq!(parse_topic("prov", ""), None);
}

#[test]
fn device_id_syntax() {
    assert!(valid_device_id("a"));
    assert!(valid_device_id(&"x".repeat(64)));
    assert!(!valid_device_id(&"x".repeat(65)));
    assert!(!valid_device_id(""));
    for bad in ["a/b", "a+b", "a#", "a b", "é", "a\0", "a:b"] {
        assert!(!valid_device_id(bad), "{bad:?}");
    }
    assert!(valid_device_id("AZaz09._-"));
}
