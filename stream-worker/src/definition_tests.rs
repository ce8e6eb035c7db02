use super::*;

const GOOD: &str = "\
source:
  topic: users_created
  group: g
columns:
  - {name: id, cql_type: uuid}
  - name: post_code
    cql_type: text
    field: location.postcode
target:
  keyspace: ks
  table: t
  primary_key: [id]
";

fn errors_of(text: &str) -> Vec<String> {
    parse(Path::new("s.yaml"), text)
        .expect_err("definition should be rejected")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_good_definition_gets_defaults() {
    let stream = parse(Path::new("dir/users.yaml"), GOOD).expect("valid");
    assert_eq!(stream.name, "users");
    assert_eq!(stream.dead_letter_topic, "users_created.dlq");
    assert_eq!(stream.start_offset, StartOffset::Earliest);
    assert_eq!(stream.max_record_bytes, DEFAULT_MAX_RECORD_BYTES);
    assert_eq!(
        stream.replication.get("class").map(String::as_str),
        Some("SimpleStrategy")
    );
    // A primary key column is always required.
    assert!(stream.columns[0].required);
    assert_eq!(stream.columns[1].field, "location.postcode");
    assert!(!stream.columns[1].required);
}

#[test]
fn the_shipped_definition_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../streams/users_created.yaml");
    let streams = load(&[path]).expect("streams/users_created.yaml is valid");
    let stream = &streams[0];
    assert_eq!(
        (stream.keyspace.as_str(), stream.tables[0].name.as_str()),
        ("spark_streaming", "created_users")
    );
    let names: Vec<&str> = stream.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "first_name",
            "last_name",
            "gender",
            "address",
            "post_code",
            "email",
            "username",
            "dob",
            "registered_date",
            "phone",
            "picture"
        ]
    );
    assert_eq!(
        stream
            .replication
            .get("replication_factor")
            .map(String::as_str),
        Some("1")
    );
}

#[test]
fn a_syntax_error_has_its_location() {
    let errors = errors_of("source:\n  topic: [unclosed\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("s.yaml:"), "{errors:?}");
}

#[test]
fn an_unknown_key_is_rejected_with_its_line() {
    let text = GOOD.replace("  group: g\n", "  group: g\n  partitions: 4\n");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("s.yaml:4:"), "{errors:?}");
    assert!(
        errors[0].contains("unknown field `partitions`"),
        "{errors:?}"
    );
}

#[test]
fn every_semantic_error_is_reported_with_line_and_column() {
    let text = "\
source:
  topic: t
  group: g
columns:
  - {name: id, cql_type: uuid}
  - {name: id, cql_type: text}
  - name: age
    cql_type: integer
target:
  keyspace: Bad-Name
  table: t
  primary_key: [id, missing]
max_record_bytes: 0
";
    let errors = errors_of(text);
    assert_eq!(
        errors,
        [
            "s.yaml:10:13: target.keyspace `Bad-Name` must be a lower-case identifier ([a-z][a-z0-9_]*)",
            "s.yaml:6:12: duplicate column `id` (first defined as columns[0])",
            "s.yaml:8:15: column `age`: unknown cql_type `integer` (expected one of: text, varchar, \
             ascii, uuid, timeuuid, int, bigint, boolean, double, float, timestamp, date, decimal, \
             list<…>, set<…>, map<…, …>, frozen<type>)",
            "s.yaml:12:21: primary_key column `missing` is not one of the columns",
            "s.yaml:13:19: max_record_bytes must be greater than 0",
        ]
    );
}

#[test]
fn load_collects_errors_of_all_files() {
    let dir = std::env::temp_dir().join(format!("streams_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("a.yaml"), "source: {topic: t}\n").expect("write");
    std::fs::write(
        dir.join("b.yaml"),
        GOOD.replace("cql_type: uuid", "cql_type: blob"),
    )
    .expect("write");
    std::fs::write(dir.join("notes.txt"), "ignored").expect("write");
    let errors = load(std::slice::from_ref(&dir))
        .expect_err("both files are bad")
        .0;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0]
            .to_string()
            .contains("a.yaml:1:9: source: missing field `group`"),
        "{errors:?}"
    );
    assert!(
        errors[1]
            .to_string()
            .contains("b.yaml:5:26: column `id`: unknown cql_type `blob`"),
        "{errors:?}"
    );
}

#[test]
fn two_streams_with_one_name_are_rejected() {
    let dir = std::env::temp_dir().join(format!("streams_dup_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("a.yaml"), format!("name: users\n{GOOD}")).expect("write");
    std::fs::write(dir.join("b.yaml"), format!("name: users\n{GOOD}")).expect("write");
    let errors = load(std::slice::from_ref(&dir))
        .expect_err("duplicate names")
        .0;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .to_string()
            .contains("b.yaml:1:1: duplicate stream name `users`"),
        "{errors:?}"
    );
}

#[test]
fn the_write_consistency_is_a_quorum_when_three_replicas_allow_it() {
    let with_target = |extra: &str| {
        let text = format!("{GOOD}{extra}");
        parse(Path::new("s.yaml"), &text).map(|stream| stream.consistency)
    };
    assert_eq!(
        with_target(""),
        Ok(Consistency::LocalOne),
        "RF 1 by default"
    );
    let rf3 = "  replication: {class: SimpleStrategy, replication_factor: 3}\n";
    assert_eq!(with_target(rf3), Ok(Consistency::LocalQuorum));
    let dcs = "  replication: {class: NetworkTopologyStrategy, dc1: 3, dc2: 2}\n";
    assert_eq!(with_target(dcs), Ok(Consistency::LocalQuorum));
    let chosen = format!("{rf3}  consistency: all\n");
    assert_eq!(with_target(&chosen), Ok(Consistency::All));
    let errors = errors_of(&format!("{GOOD}  consistency: most\n"));
    assert!(
        errors[0].starts_with("s.yaml:13:") && errors[0].contains("LOCAL_QUORUM"),
        "{errors:?}"
    );
}

#[test]
fn connection_ids_are_read_and_checked_where_they_stand() {
    let named = GOOD
        .replace("  group: g\n", "  group: g\n  conn_id: events\n")
        .replace(
            "  keyspace: ks\n",
            "  keyspace: ks\n  conn_id: cassandra_main\n",
        );
    let stream = parse(Path::new("s.yaml"), &named).expect("valid");
    assert_eq!(stream.kafka_conn_id.as_deref(), Some("events"));
    assert_eq!(stream.cassandra_conn_id.as_deref(), Some("cassandra_main"));
    assert_eq!(
        parse(Path::new("s.yaml"), GOOD)
            .expect("valid")
            .kafka_conn_id,
        None
    );

    let bad = GOOD.replace(
        "  keyspace: ks\n",
        "  keyspace: ks\n  conn_id: \"main db\"\n",
    );
    let errors = errors_of(&bad);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("s.yaml:11:12:") && errors[0].contains("target.conn_id `main db`"),
        "{errors:?}"
    );
}

#[test]
fn vrl_errors_point_at_the_definition_line_and_column() {
    // A literal block keeps the program's lines: the error is at its exact place.
    let text = format!(
        "{GOOD}transform: |\n  .post_code = \"x\"\n  .id = to_string(.uuid)\nwhere: .country == 1 + \"x\"\n"
    );
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("s.yaml:16:20: where: unhandled error"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("s.yaml:15:9: transform: unhandled fallible assignment"),
        "{}",
        errors[1]
    );
}

#[test]
fn a_where_must_be_boolean_and_programs_compile_once() {
    let errors = errors_of(&format!("{GOOD}where: .country\n"));
    assert!(
        errors[0].starts_with("s.yaml:13:8: where: must be a boolean expression"),
        "{errors:?}"
    );
    let stream = parse(
        Path::new("s.yaml"),
        &format!(
            "{GOOD}where: '.country == \"FR\"'\ntransform: .post_code = upcase!(.post_code)\n"
        ),
    )
    .expect("valid");
    assert_eq!(
        stream.filter.as_ref().map(|f| f.source.as_str()),
        Some(".country == \"FR\"")
    );
    assert!(stream.transform.is_some());
}

#[test]
fn the_randomuser_example_shapes_a_nested_record() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../streams/examples/users_randomuser.yaml");
    let streams = load(&[path]).expect("streams/examples/users_randomuser.yaml is valid");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/testdata/randomuser_response.json");
    let response: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).expect("fixture")).expect("JSON");
    let record = serde_json::to_vec(&response["results"][0]).expect("record");
    let row = crate::decode::decode(&streams[0], Some(&record))
        .expect("decodes")
        .expect("kept");
    let text = |index: usize| match &row[index] {
        scylla::value::MaybeUnset::Set(Some(scylla::value::CqlValue::Text(text))) => text.clone(),
        other => panic!("column {index}: {other:?}"),
    };
    assert_eq!(
        text(4),
        "3007 Valwood Pkwy, Billings, Michigan, United States"
    );
    assert_eq!(text(5), "63104");
    let dob = chrono::DateTime::parse_from_rfc3339("1963-05-28T08:34:25.000Z").expect("date");
    assert!(matches!(
        &row[8],
        scylla::value::MaybeUnset::Set(Some(scylla::value::CqlValue::Timestamp(t))) if t.0 == dob.timestamp_millis()
    ));
}

#[test]
fn the_documented_definition_format_parses() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/streams.md"))
            .expect("docs/streams.md");
    let example = doc
        .split("## Definition format")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("the format's YAML block");
    let stream = parse(Path::new("streams.md"), example).expect("the documented format is valid");
    assert!(stream.filter.is_some() && stream.transform.is_some());
    assert_eq!(stream.kafka_conn_id.as_deref(), Some("events"));
}

const FAN_OUT: &str = "\
source: {topic: t, group: g}
columns:
  - {name: id, cql_type: uuid}
  - {name: email, cql_type: text}
  - {name: country, cql_type: text}
  - {name: name, cql_type: text}
target:
  keyspace: ks
  table: users
  primary_key: [id]
  ttl: 86400
  tables:
    - table: users_by_email
      primary_key: [email]
      columns: [email, id, name]
    - table: users_by_country
      primary_key: [country]
      clustering_key: [id]
      columns: [country, id, name]
";

#[test]
fn fan_out_tables_have_their_own_keys_columns_and_ttl() {
    let stream = parse(Path::new("s.yaml"), FAN_OUT).expect("valid");
    let names: Vec<&str> = stream.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["users", "users_by_email", "users_by_country"]);
    assert_eq!(stream.tables[0].columns, [0, 1, 2, 3]);
    assert_eq!(stream.tables[0].ttl, Some(86_400));
    assert_eq!(stream.tables[1].columns, [1, 0, 3]);
    assert_eq!(stream.tables[1].ttl, None);
    assert_eq!(stream.tables[2].clustering_key, ["id"]);
    // A key of any table is required: a record without one cannot be written there.
    let required: Vec<&str> = stream
        .columns
        .iter()
        .filter(|c| c.required)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(required, ["id", "email", "country"]);
}

#[test]
fn fan_out_mistakes_are_named_where_they_are() {
    let text = FAN_OUT
        .replace("columns: [email, id, name]", "columns: [id, name, phone]")
        .replace("table: users_by_country", "table: users_by_email")
        .replace("ttl: 86400", "ttl: 0");
    let errors = errors_of(&text);
    assert_eq!(
        errors,
        [
            "s.yaml:11:8: target.ttl must be 1 to 630720000 seconds (20 years)",
            "s.yaml:15:27: column `phone` is not one of the stream's columns",
            "s.yaml:14:21: primary_key column `email` is not one of this table's columns",
            "s.yaml:16:14: table `users_by_email` is written twice",
        ]
    );
}

#[test]
fn user_defined_types_are_declared_then_used_frozen() {
    let text = "\
source: {topic: t, group: g}
types:
  - name: address
    fields:
      - {name: street, cql_type: text}
      - {name: floor, cql_type: frozen<address>}
columns:
  - {name: id, cql_type: uuid}
  - {name: home, cql_type: address}
  - {name: homes, cql_type: list<frozen<address>>}
target: {keyspace: ks, table: t, primary_key: [id]}
";
    assert_eq!(
        errors_of(text),
        [
            "s.yaml:6:33: field `floor` of type `address`: frozen<address>: `address` is not \
             one of the definition's types",
            "s.yaml:9:28: column `home`: user-defined type `address` must be written \
             frozen<address>",
        ]
    );
    let stream = parse(
        Path::new("s.yaml"),
        &text
            .replace("      - {name: floor, cql_type: frozen<address>}\n", "")
            .replace("cql_type: address}", "cql_type: frozen<address>}"),
    )
    .expect("valid");
    assert_eq!(
        stream.types[0].fields,
        [("street".to_string(), CqlType::Text)]
    );
    assert_eq!(
        stream.columns[2].cql_type.to_string(),
        "list<frozen<address>>"
    );
}

#[test]
fn avro_streams_name_their_registry_and_json_ones_cannot() {
    let with_source = |extra: &str| GOOD.replace("  group: g\n", &format!("  group: g\n{extra}"));
    let stream = parse(Path::new("s.yaml"), GOOD).expect("valid");
    assert_eq!((stream.format, stream.registry_url), (Format::Json, None));
    let text = with_source("  format: avro\n  registry: http://registry:8081\n");
    let stream = parse(Path::new("s.yaml"), &text).expect("valid");
    assert_eq!(stream.format, Format::Avro);
    assert_eq!(stream.registry_url.as_deref(), Some("http://registry:8081"));

    let errors = errors_of(&with_source("  registry: http://registry:8081\n"));
    assert!(
        errors[0].starts_with("s.yaml:4:") && errors[0].contains("only with `format: avro`"),
        "{errors:?}"
    );
    let errors = errors_of(&with_source("  format: avro\n  registry: ftp://registry\n"));
    assert!(
        errors[0].starts_with("s.yaml:5:") && errors[0].contains("not an http(s) URL"),
        "{errors:?}"
    );
    let text = with_source("  format: avro\n  registry_conn_id: schemas\n");
    let stream = parse(Path::new("s.yaml"), &text).expect("valid");
    assert_eq!(stream.registry_conn_id.as_deref(), Some("schemas"));
    let errors = errors_of(&with_source(
        "  format: avro\n  registry: http://r:8081\n  registry_conn_id: schemas\n",
    ));
    assert!(
        errors[0].starts_with("s.yaml:6:") && errors[0].contains("not both"),
        "{errors:?}"
    );
    let errors = errors_of(&with_source("  format: protobuf\n"));
    assert!(
        errors[0].starts_with("s.yaml:4:") && errors[0].contains("unknown variant `protobuf`"),
        "{errors:?}"
    );
}
