use super::*;

#[test]
fn placeholders_become_numbered_sqlite_parameters() {
    assert_eq!(sqlite_sql("SELECT 1"), "SELECT 1");
    assert_eq!(sqlite_sql("UPDATE t SET a = $2 WHERE b = $1"), "UPDATE t SET a = ?2 WHERE b = ?1");
}

#[test]
fn db_choice_parses_and_refuses_clearly() {
    assert_eq!(DbChoice::parse("sqlite"), Ok(DbChoice::Sqlite));
    assert_eq!(DbChoice::parse(""), Ok(DbChoice::Sqlite));
    assert_eq!(
        DbChoice::parse("postgres://u@127.0.0.1:5432/agg"),
        Ok(DbChoice::Postgres("postgres://u@127.0.0.1:5432/agg".into()))
    );
    assert!(DbChoice::parse("postgresql://u@h/db").is_ok());
    let e = DbChoice::parse("mysql://h/db").unwrap_err();
    assert!(e.contains("expected `sqlite` or a postgres:// URL"), "{e}");
    assert!(DbChoice::parse("postgres://u@h:notaport/db").is_err());
}

#[test]
fn row_accessors_say_what_is_wrong() {
    let r = Row(vec![Value::Int(7), Value::Null, Value::Text("t".into()), Value::Blob(vec![1])]);
    assert_eq!(r.int(0).unwrap(), 7);
    assert_eq!(r.opt_int(1).unwrap(), None);
    assert_eq!(r.opt_text(1).unwrap(), None);
    assert_eq!(r.text(2).unwrap(), "t");
    assert_eq!(r.blob(3).unwrap(), [1]);
    assert!(matches!(r.int(2), Err(DbError::Corrupt(m)) if m.contains("expected an integer")));
    assert!(matches!(r.text(9), Err(DbError::Corrupt(m)) if m.contains("no column 9")));
}
