//! `kafka_publish`: publishes JSON records to a Kafka topic with an idempotent, acks=all
//! producer and waits for every delivery report. Records are one `value`, or one per item of
//! `for_each` with `key`, `value` and `headers` rendered per item (`item`, `index` in scope);
//! `repeat` publishes them again for a number of rounds or for a while. With `format: avro` the
//! values are Avro in the Confluent wire format, their schema registered in a schema registry.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use apache_avro::Schema;
use async_trait::async_trait;
use schema_registry::{Backoff, Registry, RegistryError};
use updraft_secrets::KafkaClient;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::fields::{DurationValue, Templated, is_template};
use crate::{Operator, OperatorError, TaskContext};

const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
const DEFAULT_SCHEMA_REGISTRY: &str = "http://127.0.0.1:8081";
/// A registry outage is retried this many times (0.2 s, 0.4 s, … 3.2 s) before the try fails.
const REGISTRY_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(200),
    max: Duration::from_secs(5),
    tries: Some(5),
};
/// Deliveries awaited at once; beyond this the oldest is awaited first (bounded memory).
const MAX_IN_FLIGHT: usize = 10_000;

#[derive(Debug, Default)]
pub struct KafkaPublishOperator;

/// `kafka_publish`'s fields.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaPublishConfig {
    /// Bootstrap servers, `host:port[,host:port]`. Default env `KAFKA_BOOTSTRAP_SERVERS`, else
    /// `127.0.0.1:9092`.
    #[serde(default)]
    pub brokers: Option<String>,
    /// A connection giving the brokers (`extra."bootstrap.servers"`, else `host[:port]`; a
    /// host may list several, comma-separated), SASL credentials (login, password) and any
    /// librdkafka setting in `extra` (`security.protocol`, `sasl.mechanism`, `ssl.ca.location`).
    /// `brokers` wins over it.
    #[serde(default)]
    pub conn_id: Option<String>,
    pub topic: String,
    /// The record value (any JSON, serialised as JSON). With `for_each` it is rendered per item
    /// and defaults to the item itself. Rendered by the operator (deferred).
    #[serde(default)]
    pub value: Option<Value>,
    /// A list (usually a template like `{{ xcom('fetch').body.results }}`): one record per item.
    #[serde(default)]
    pub for_each: Option<Value>,
    /// The record key, rendered per item; strings are sent as is, other values as JSON; null or
    /// absent means no key. Rendered by the operator (deferred).
    #[serde(default)]
    pub key: Option<Value>,
    /// Record headers, name → value, rendered per item. Rendered by the operator (deferred).
    #[serde(default)]
    pub headers: BTreeMap<String, Value>,
    /// Publish the records again: `{times: 3}` or `{for: 60s}`, optionally with an `interval`.
    #[serde(default)]
    pub repeat: Option<Repeat>,
    /// How values are written: `json` (default), or `avro` — Avro in the Confluent wire format
    /// (magic byte, schema id, datum), each value checked against the schema.
    #[serde(default)]
    pub format: ValueFormat,
    /// Avro: the schema registry's URL (credentials as `http://user:password@host:8081`).
    /// Default env `SCHEMA_REGISTRY_URL`, else `http://127.0.0.1:8081`.
    #[serde(default)]
    pub schema_registry: Option<String>,
    /// Avro: an HTTP connection giving the registry (its host, port and schema as for `http`)
    /// and a login sent as basic auth. `schema_registry` wins over it.
    #[serde(default)]
    pub schema_registry_conn_id: Option<String>,
    /// Avro: the registry subject. Default `<topic>-value` (Confluent's topic name strategy).
    #[serde(default)]
    pub subject: Option<String>,
    /// Avro: the schema (a mapping or a JSON string), registered under the subject before the
    /// first record (the registry refuses one that breaks the subject's compatibility rule).
    /// Without it, the subject's latest version is used.
    #[serde(default)]
    pub schema: Option<Value>,
    /// Fail a record not acknowledged within this time (librdkafka `message.timeout.ms`).
    /// Default 30s.
    #[serde(default = "default_delivery_timeout")]
    #[schemars(default = "default_delivery_timeout_text")]
    pub delivery_timeout: Templated<DurationValue>,
}

/// `kafka_publish`'s `format`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    #[default]
    Json,
    Avro,
}

/// A bounded repetition; exactly one of `times` and `for`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    /// Number of rounds (at least 1).
    #[serde(default)]
    pub times: Option<Templated<u64>>,
    /// Start rounds until this much time has passed since the first (the last round completes).
    #[serde(default, rename = "for")]
    pub duration: Option<Templated<DurationValue>>,
    /// Pause between rounds. Default none.
    #[serde(default)]
    pub interval: Option<Templated<DurationValue>>,
}

fn default_delivery_timeout() -> Templated<DurationValue> {
    Templated::Value(DurationValue(Duration::from_secs(30)))
}

fn default_delivery_timeout_text() -> &'static str {
    "30s"
}

#[async_trait]
impl Operator for KafkaPublishOperator {
    const NAME: &'static str = "kafka_publish";
    const DEFERRED_FIELDS: &'static [&'static str] = &["key", "value", "headers"];
    type Config = KafkaPublishConfig;

    fn check(config: &KafkaPublishConfig) -> Result<(), String> {
        if config.topic.trim().is_empty() {
            return Err("`topic` is empty".into());
        }
        match &config.for_each {
            None if config.value.is_none() => return Err("give `value` or `for_each`".into()),
            Some(Value::String(text)) if !is_template(text) => {
                return Err("`for_each` must be a list or a template that renders to one".into());
            }
            Some(Value::String(_) | Value::Array(_)) | None => {}
            Some(other) => return Err(format!("`for_each` must be a list, found {other}")),
        }
        if config.format == ValueFormat::Json {
            let avro_only = [
                ("schema_registry", config.schema_registry.is_some()),
                (
                    "schema_registry_conn_id",
                    config.schema_registry_conn_id.is_some(),
                ),
                ("subject", config.subject.is_some()),
                ("schema", config.schema.is_some()),
            ];
            if let Some((field, _)) = avro_only.iter().find(|(_, given)| *given) {
                return Err(format!("`{field}` is read only with `format: avro`"));
            }
        }
        if let Some(schema) = &config.schema {
            avro_schema(schema)?;
        }
        if let Some(repeat) = &config.repeat {
            match (&repeat.times, &repeat.duration) {
                (Some(_), Some(_)) => {
                    return Err("repeat: give either `times` or `for`, not both".into());
                }
                (None, None) => return Err("repeat: give `times` or `for`".into()),
                (Some(Templated::Value(0)), None) => {
                    return Err("repeat: `times` must be at least 1".into());
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn execute(
        &self,
        mut config: KafkaPublishConfig,
        ctx: &TaskContext,
    ) -> Result<Value, OperatorError> {
        let settings = match &config.conn_id {
            Some(conn_id) => {
                let connection = ctx.connection(conn_id).map_err(OperatorError::Config)?;
                connection.kafka_client().map_err(OperatorError::Config)?
            }
            None => KafkaClient::default(),
        };
        if config.brokers.as_deref().is_none_or(|b| b.trim().is_empty()) {
            config.brokers = settings.brokers;
        }
        let avro = AvroTarget::of(&mut config, ctx)?;
        let mut plan = Plan::try_from(config)?;
        let target = format!("topic `{}` at brokers `{}`", plan.topic, plan.brokers);
        if let Some(avro) = avro {
            plan.encoding = avro.resolve(ctx).await?;
        }
        let mut client = ClientConfig::new();
        for (name, value) in &settings.settings {
            client.set(name, value);
        }
        let producer: FutureProducer = client
            .set("bootstrap.servers", &plan.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                plan.delivery_timeout.as_millis().max(1).to_string(),
            )
            .set(
                "client.id",
                format!("updraft.{}.{}", ctx.identity.dag_id, ctx.identity.task_id),
            )
            .create()
            .map_err(|error| {
                OperatorError::Failed(format!("cannot create a producer for {target}: {error}"))
            })?;

        let started = Instant::now();
        let mut totals = Totals::default();
        let mut round: u64 = 0;
        loop {
            let records = plan.render_records(ctx)?;
            let round_started = Instant::now();
            let published = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Err(OperatorError::Cancelled),
                result = publish_round(&producer, &plan.topic, &records, &mut totals) => result,
            };
            published.map_err(|error| {
                let hint = match error {
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut) => format!(
                        " (no acknowledgement within delivery_timeout {:?}: is the broker reachable?)",
                        plan.delivery_timeout
                    ),
                    _ => String::new(),
                };
                OperatorError::Failed(format!("publishing to {target}: {error}{hint}"))
            })?;
            round += 1;
            ctx.log(format!(
                "round {round}: published {} records to {target} in {} ms",
                records.len(),
                round_started.elapsed().as_millis()
            ));
            if records.is_empty() {
                ctx.log("for_each is empty: nothing to publish");
                break;
            }
            let more = match plan.repeat {
                Rounds::Times(times) => round < times,
                Rounds::For(duration) => started.elapsed() + plan.interval < duration,
            };
            if !more {
                break;
            }
            if !plan.interval.is_zero() {
                tokio::select! {
                    () = ctx.cancel.cancelled() => return Err(OperatorError::Cancelled),
                    () = tokio::time::sleep(plan.interval) => {}
                }
            }
        }
        Ok(json!({
            "count": totals.count,
            "topic": plan.topic,
            "rounds": round,
            "partitions": totals.partitions_json(),
        }))
    }
}

enum Rounds {
    Times(u64),
    For(Duration),
}

/// Where an Avro publish gets its schema.
struct AvroTarget {
    registry: Registry,
    subject: String,
    schema: Option<String>,
}

impl AvroTarget {
    /// The Avro settings of a `format: avro` config (taken out of it), `None` for JSON. The
    /// registry: `schema_registry`, else the connection's, else env `SCHEMA_REGISTRY_URL`.
    fn of(
        config: &mut KafkaPublishConfig,
        ctx: &TaskContext,
    ) -> Result<Option<Self>, OperatorError> {
        if config.format != ValueFormat::Avro {
            return Ok(None);
        }
        let given = config
            .schema_registry
            .take()
            .filter(|url| !url.trim().is_empty());
        let registry = match (given, &config.schema_registry_conn_id) {
            (Some(url), _) => registry_at(&url)?,
            (None, Some(conn_id)) => {
                let connection = ctx.connection(conn_id).map_err(OperatorError::Config)?;
                let url = connection.http_base_url().map_err(OperatorError::Config)?;
                match connection.login {
                    Some(user) => registry_at(&url)?
                        .with_login(user, connection.password.unwrap_or_default()),
                    None => registry_at(&url)?,
                }
            }
            (None, None) => registry_at(
                &std::env::var("SCHEMA_REGISTRY_URL")
                    .ok()
                    .filter(|url| !url.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_SCHEMA_REGISTRY.to_string()),
            )?,
        };
        let schema = match config.schema.take() {
            None => None,
            Some(schema) => Some(avro_schema(&schema).map_err(OperatorError::Config)?.1),
        };
        Ok(Some(Self {
            registry,
            subject: config
                .subject
                .take()
                .unwrap_or_else(|| schema_registry::value_subject(&config.topic)),
            schema,
        }))
    }

    /// Registers the schema (or reads the subject's latest) and returns how to encode with it.
    async fn resolve(self, ctx: &TaskContext) -> Result<Encoding, OperatorError> {
        let transient = |error: &RegistryError| error.is_transient();
        let (id, text) = match self.schema {
            Some(schema) => {
                let id = REGISTRY_BACKOFF
                    .run("register the schema", transient, || {
                        self.registry.register(&self.subject, &schema)
                    })
                    .await
                    .map_err(|e| OperatorError::Failed(e.to_string()))?;
                (id, schema)
            }
            None => {
                let latest = REGISTRY_BACKOFF
                    .run("read the latest schema", transient, || {
                        self.registry.latest(&self.subject)
                    })
                    .await
                    .map_err(|e| OperatorError::Failed(e.to_string()))?;
                (latest.id, latest.schema)
            }
        };
        let schema = Schema::parse_str(&text).map_err(|e| {
            OperatorError::Failed(format!(
                "schema id {id} of subject `{}` is not Avro: {e}",
                self.subject
            ))
        })?;
        ctx.log(format!(
            "Avro: schema id {id} of subject `{}` at {}",
            self.subject,
            self.registry.url()
        ));
        Ok(Encoding::Avro { id, schema })
    }
}

fn registry_at(url: &str) -> Result<Registry, OperatorError> {
    Registry::new(url).map_err(|e| OperatorError::Config(e.to_string()))
}

/// `schema` (a mapping or a JSON string) parsed as Avro, and its JSON text.
fn avro_schema(schema: &Value) -> Result<(Schema, String), String> {
    let text = match schema {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let parsed = Schema::parse_str(&text).map_err(|e| format!("`schema` is not an Avro schema: {e}"))?;
    Ok((parsed, text))
}

/// How record values are serialised.
enum Encoding {
    Json,
    /// Avro datums framed with the registry's schema id.
    Avro { id: u32, schema: Schema },
}

impl Encoding {
    fn encode(&self, value: &Value, which: &str) -> Result<Vec<u8>, OperatorError> {
        match self {
            Encoding::Json => serde_json::to_vec(value).map_err(|error| {
                OperatorError::Failed(format!("cannot serialise the value of {which}: {error}"))
            }),
            Encoding::Avro { id, schema } => {
                let misfit = |error: apache_avro::Error| {
                    OperatorError::Failed(format!(
                        "the value of {which} does not fit Avro schema id {id}: {error}"
                    ))
                };
                let datum = apache_avro::types::Value::from(value.clone())
                    .resolve(schema)
                    .and_then(|avro| apache_avro::to_avro_datum(schema, avro))
                    .map_err(misfit)?;
                Ok(schema_registry::frame(*id, &datum))
            }
        }
    }
}

/// A config with its non-deferred fields resolved.
struct Plan {
    brokers: String,
    topic: String,
    /// `None` for a single `value` record.
    items: Option<Vec<Value>>,
    key: Option<Value>,
    value: Option<Value>,
    headers: BTreeMap<String, Value>,
    repeat: Rounds,
    interval: Duration,
    delivery_timeout: Duration,
    encoding: Encoding,
}

impl TryFrom<KafkaPublishConfig> for Plan {
    type Error = OperatorError;

    fn try_from(config: KafkaPublishConfig) -> Result<Self, OperatorError> {
        let brokers = config
            .brokers
            .filter(|brokers| !brokers.trim().is_empty())
            .or_else(|| {
                std::env::var("KAFKA_BOOTSTRAP_SERVERS")
                    .ok()
                    .filter(|value| !value.trim().is_empty())
            })
            .unwrap_or_else(|| DEFAULT_BROKERS.to_string());
        let items = match config.for_each {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(other) => {
                let shown = crate::fields::excerpt(&other.to_string(), 200);
                return Err(OperatorError::Config(format!(
                    "`for_each` must render to a list, got {shown}"
                )));
            }
        };
        let (repeat, interval) = match config.repeat {
            None => (Rounds::Times(1), Duration::ZERO),
            Some(repeat) => {
                let interval = repeat
                    .interval
                    .map(|value| value.resolve("repeat.interval"))
                    .transpose()?;
                let rounds = match (repeat.times, repeat.duration) {
                    (Some(times), _) => Rounds::Times(times.resolve("repeat.times")?),
                    (None, Some(duration)) => Rounds::For(duration.resolve("repeat.for")?.0),
                    (None, None) => {
                        return Err(OperatorError::Config(
                            "repeat: give `times` or `for`".into(),
                        ));
                    }
                };
                (rounds, interval.map(|value| value.0).unwrap_or_default())
            }
        };
        if matches!(repeat, Rounds::Times(0)) {
            return Err(OperatorError::Config(
                "repeat: `times` must be at least 1".into(),
            ));
        }
        Ok(Plan {
            brokers,
            topic: config.topic,
            items,
            key: config.key,
            value: config.value,
            headers: config.headers,
            repeat,
            interval,
            delivery_timeout: config.delivery_timeout.resolve("delivery_timeout")?.0,
            encoding: Encoding::Json,
        })
    }
}

/// One record, serialised.
struct Record {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Plan {
    /// Renders every record of one round. Rendering again each round gives fresh `uuid4()` and
    /// `now()` values.
    fn render_records(&self, ctx: &TaskContext) -> Result<Vec<Record>, OperatorError> {
        match &self.items {
            None => Ok(vec![self.render_record(ctx, Map::new(), None, "value")?]),
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    let mut locals = Map::new();
                    locals.insert("item".into(), item.clone());
                    locals.insert("index".into(), json!(index));
                    self.render_record(ctx, locals, Some(item), &format!("for_each item {index}"))
                })
                .collect(),
        }
    }

    fn render_record(
        &self,
        ctx: &TaskContext,
        locals: Map<String, Value>,
        item: Option<&Value>,
        which: &str,
    ) -> Result<Record, OperatorError> {
        let render = |field: &str, template: &Value| {
            ctx.renderer.render(template, &locals).map_err(|message| {
                OperatorError::Template(format!("`{field}` of {which}: {message}"))
            })
        };
        let value = match (&self.value, item) {
            (Some(template), _) => render("value", template)?,
            (None, Some(item)) => item.clone(),
            (None, None) => return Err(OperatorError::Config("give `value` or `for_each`".into())),
        };
        let key = match &self.key {
            None => None,
            Some(template) => match render("key", template)? {
                Value::Null => None,
                Value::String(text) => Some(text.into_bytes()),
                other => Some(other.to_string().into_bytes()),
            },
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, template) in &self.headers {
            let rendered = match render(&format!("headers.{name}"), template)? {
                Value::String(text) => text.into_bytes(),
                other => other.to_string().into_bytes(),
            };
            headers.push((name.clone(), rendered));
        }
        let value = self.encoding.encode(&value, which)?;
        Ok(Record {
            key,
            value,
            headers,
        })
    }
}

/// Records published and the offsets they got, per partition.
#[derive(Default)]
struct Totals {
    count: u64,
    partitions: BTreeMap<i32, (i64, i64)>,
}

impl Totals {
    fn delivered(&mut self, partition: i32, offset: i64) {
        self.count += 1;
        let range = self.partitions.entry(partition).or_insert((offset, offset));
        range.0 = range.0.min(offset);
        range.1 = range.1.max(offset);
    }

    fn partitions_json(&self) -> Value {
        let mut partitions = Map::new();
        for (partition, (first, last)) in &self.partitions {
            partitions.insert(
                partition.to_string(),
                json!({ "first_offset": first, "last_offset": last }),
            );
        }
        Value::Object(partitions)
    }
}

/// Sends every record, then waits for every delivery report.
async fn publish_round(
    producer: &FutureProducer,
    topic: &str,
    records: &[Record],
    totals: &mut Totals,
) -> Result<(), KafkaError> {
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    for record in records {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut future_record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&record.value)
            .headers(headers);
        if let Some(key) = &record.key {
            future_record = future_record.key(key);
        }
        loop {
            if pending.len() >= MAX_IN_FLIGHT {
                await_delivery(&mut pending, totals).await?;
            }
            match producer.send_result(future_record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // librdkafka's queue is full: make room by waiting for the oldest delivery.
                    future_record = returned;
                    if pending.is_empty() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    } else {
                        await_delivery(&mut pending, totals).await?;
                    }
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
    while !pending.is_empty() {
        await_delivery(&mut pending, totals).await?;
    }
    Ok(())
}

async fn await_delivery(
    pending: &mut VecDeque<DeliveryFuture>,
    totals: &mut Totals,
) -> Result<(), KafkaError> {
    let Some(delivery) = pending.pop_front() else {
        return Ok(());
    };
    match delivery.await {
        Ok(Ok(delivery)) => {
            totals.delivered(delivery.partition, delivery.offset);
            Ok(())
        }
        Ok(Err((error, _message))) => Err(error),
        Err(_canceled) => Err(KafkaError::Canceled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OperatorKind;

    fn validate(config: Value) -> Result<(), String> {
        OperatorKind::validate(&KafkaPublishOperator, &config)
    }

    #[test]
    fn the_seed_task_validates_unrendered() {
        validate(json!({
            "topic": "users_created",
            "for_each": "{{ xcom('fetch_users').body.results }}",
            "key": "{{ item.login.uuid }}",
            "value": {"id": "{{ uuid4() }}", "first_name": "{{ item.name.first }}"},
            "repeat": {"for": "60s", "interval": "{{ params.pause }}"},
        }))
        .unwrap();
        validate(json!({"topic": "t", "value": {"a": 1}, "repeat": {"times": "3"}})).unwrap();
    }

    #[test]
    fn bad_configs_are_rejected_at_parse_time() {
        let cases = [
            (json!({"topic": "t"}), "give `value` or `for_each`"),
            (
                json!({"topic": "t", "for_each": "not a template"}),
                "must be a list",
            ),
            (json!({"topic": "t", "for_each": 3}), "must be a list"),
            (
                json!({"topic": "t", "value": 1, "repeat": {}}),
                "give `times` or `for`",
            ),
            (
                json!({"topic": "t", "value": 1, "repeat": {"times": 2, "for": "1s"}}),
                "not both",
            ),
            (
                json!({"topic": "t", "value": 1, "repeat": {"times": 0}}),
                "at least 1",
            ),
            (
                json!({"topic": "t", "value": 1, "repeat": {"for": "soon"}}),
                "invalid duration",
            ),
            (
                json!({"topic": "t", "value": 1, "repeat": {"time": 2}}),
                "unknown field `time`",
            ),
            (json!({"value": 1}), "missing field `topic`"),
        ];
        for (config, message) in cases {
            let error = validate(config.clone()).unwrap_err();
            assert!(error.contains(message), "{config}: {error}");
        }
    }

    #[test]
    fn offsets_are_ranged_per_partition() {
        let mut totals = Totals::default();
        for (partition, offset) in [(1, 7), (0, 3), (1, 5), (0, 4), (1, 6)] {
            totals.delivered(partition, offset);
        }
        assert_eq!(totals.count, 5);
        assert_eq!(
            totals.partitions_json(),
            json!({"0": {"first_offset": 3, "last_offset": 4}, "1": {"first_offset": 5, "last_offset": 7}})
        );
    }
}
