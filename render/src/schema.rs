//! Schema checks of flotilla's and Karmada's kinds against policy-schemas/, with did-you-mean hints.
//!
//! The JSON Schemas (draft 2020-12) in `policy-schemas/` are embedded at build time. Every kind's
//! schema refers to the shared definitions of `common.schema.json` by a relative `$ref`, exactly as
//! an editor resolves them next to each other on disk or on a web server. Here the documents are
//! given base URIs under [`BASE_URI`] and the shared one is served from memory, so compiling never
//! touches the network or the filesystem. Each kind's validator is compiled once, on first use.
//!
//! Validation errors become [`SchemaFinding`]s: an RFC 6901 pointer into the document (for an
//! unknown field, the pointer of the field itself) and a one-line lowercase message that names the
//! path in dotted form. Two schema annotations, understood by VS Code's JSON support too, give
//! specific messages: `errorMessage` (any failing keyword of the schema object that carries it) and
//! `patternErrorMessage` (a failing `pattern`).

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Base URI the embedded schema documents are compiled under (it is never fetched).
pub const BASE_URI: &str = "https://flotilla.dev/schemas/v1alpha1/";

/// The shared definitions every kind's schema refers to.
const COMMON_FILE: &str = "common.schema.json";

/// Every embedded schema document, by file name.
const SOURCES: [(&str, &str); 9] = [
    (COMMON_FILE, include_str!("../../policy-schemas/common.schema.json")),
    (
        "propagationpolicy.schema.json",
        include_str!("../../policy-schemas/propagationpolicy.schema.json"),
    ),
    (
        "clusterpropagationpolicy.schema.json",
        include_str!("../../policy-schemas/clusterpropagationpolicy.schema.json"),
    ),
    (
        "overridepolicy.schema.json",
        include_str!("../../policy-schemas/overridepolicy.schema.json"),
    ),
    (
        "clusteroverridepolicy.schema.json",
        include_str!("../../policy-schemas/clusteroverridepolicy.schema.json"),
    ),
    (
        "cluster.karmada.schema.json",
        include_str!("../../policy-schemas/cluster.karmada.schema.json"),
    ),
    (
        "cluster.flotilla.schema.json",
        include_str!("../../policy-schemas/cluster.flotilla.schema.json"),
    ),
    (
        "globaltrafficpolicy.schema.json",
        include_str!("../../policy-schemas/globaltrafficpolicy.schema.json"),
    ),
    (
        "repoconfig.schema.json",
        include_str!("../../policy-schemas/repoconfig.schema.json"),
    ),
];

/// A kind that has a schema in `policy-schemas/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    PropagationPolicy,
    ClusterPropagationPolicy,
    OverridePolicy,
    ClusterOverridePolicy,
    KarmadaCluster,
    FlotillaCluster,
    GlobalTrafficPolicy,
    RepoConfig,
}

impl SchemaKind {
    /// Every kind, in a fixed order.
    pub const ALL: [SchemaKind; 8] = [
        SchemaKind::PropagationPolicy,
        SchemaKind::ClusterPropagationPolicy,
        SchemaKind::OverridePolicy,
        SchemaKind::ClusterOverridePolicy,
        SchemaKind::KarmadaCluster,
        SchemaKind::FlotillaCluster,
        SchemaKind::GlobalTrafficPolicy,
        SchemaKind::RepoConfig,
    ];

    /// The kind whose schema checks a document of this `apiVersion` and `kind`, if any.
    pub fn for_document(api_version: &str, kind: &str) -> Option<SchemaKind> {
        Some(match (api_version, kind) {
            ("policy.karmada.io/v1alpha1", "PropagationPolicy") => SchemaKind::PropagationPolicy,
            ("policy.karmada.io/v1alpha1", "ClusterPropagationPolicy") => SchemaKind::ClusterPropagationPolicy,
            ("policy.karmada.io/v1alpha1", "OverridePolicy") => SchemaKind::OverridePolicy,
            ("policy.karmada.io/v1alpha1", "ClusterOverridePolicy") => SchemaKind::ClusterOverridePolicy,
            ("cluster.karmada.io/v1alpha1", "Cluster") => SchemaKind::KarmadaCluster,
            ("flotilla.dev/v1alpha1", "Cluster") => SchemaKind::FlotillaCluster,
            ("flotilla.dev/v1alpha1", "GlobalTrafficPolicy") => SchemaKind::GlobalTrafficPolicy,
            ("flotilla.dev/v1alpha1", "RepoConfig") => SchemaKind::RepoConfig,
            _ => return None,
        })
    }

    /// The schema's file name in `policy-schemas/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            SchemaKind::PropagationPolicy => "propagationpolicy.schema.json",
            SchemaKind::ClusterPropagationPolicy => "clusterpropagationpolicy.schema.json",
            SchemaKind::OverridePolicy => "overridepolicy.schema.json",
            SchemaKind::ClusterOverridePolicy => "clusteroverridepolicy.schema.json",
            SchemaKind::KarmadaCluster => "cluster.karmada.schema.json",
            SchemaKind::FlotillaCluster => "cluster.flotilla.schema.json",
            SchemaKind::GlobalTrafficPolicy => "globaltrafficpolicy.schema.json",
            SchemaKind::RepoConfig => "repoconfig.schema.json",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One schema violation in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFinding {
    /// RFC 6901 pointer into the document; for an unknown field, the pointer of that field.
    pub pointer: String,
    pub message: String,
    /// The finding is about a field the schema does not know.
    pub unknown_field: bool,
}

/// Checks `doc` against the schema of `kind`. Findings are sorted by pointer, then message, and
/// deduplicated; an empty result means the document is valid.
pub fn check(kind: SchemaKind, doc: &Value) -> Vec<SchemaFinding> {
    let (validator, docs) = match (validator(kind), documents()) {
        (Ok(v), Ok(d)) => (v, d),
        (Err(e), _) | (_, Err(e)) => {
            return vec![SchemaFinding {
                pointer: String::new(),
                message: format!(
                    "internal error: the schema {} is broken ({e}); this is a bug in flotilla",
                    kind.schema_file()
                ),
                unknown_field: false,
            }]
        }
    };
    if validator.is_valid(doc) {
        return Vec::new();
    }
    let ctx = Ctx { doc, docs };
    let mut findings = Vec::new();
    for error in validator.iter_errors(doc) {
        ctx.translate(&error, &mut findings);
    }
    findings.sort_by(|a, b| (&a.pointer, &a.message, a.unknown_field).cmp(&(&b.pointer, &b.message, b.unknown_field)));
    findings.dedup();
    findings
}

type Documents = HashMap<&'static str, Value>;

/// The parsed schema documents, by file name (read for messages and hints).
fn documents() -> &'static Result<Documents, String> {
    static DOCS: OnceLock<Result<Documents, String>> = OnceLock::new();
    DOCS.get_or_init(|| {
        SOURCES
            .iter()
            .map(|(file, text)| match serde_json::from_str(text) {
                Ok(v) => Ok((*file, v)),
                Err(e) => Err(format!("{file} is not valid JSON: {e}")),
            })
            .collect()
    })
}

/// The compiled validator of one kind.
fn validator(kind: SchemaKind) -> &'static Result<Validator, String> {
    static VALIDATORS: [OnceLock<Result<Validator, String>>; 8] = [const { OnceLock::new() }; 8];
    VALIDATORS[kind.index()].get_or_init(|| compile(kind))
}

fn compile(kind: SchemaKind) -> Result<Validator, String> {
    let docs = documents().as_ref().map_err(Clone::clone)?;
    let file = kind.schema_file();
    let schema = docs.get(file).ok_or_else(|| format!("{file} is not embedded"))?;
    compile_schema(file, schema)
}

/// Compiles one schema document as if it were `policy-schemas/<file>`.
fn compile_schema(file: &str, schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .with_base_uri(format!("{BASE_URI}{file}"))
        .with_retriever(Embedded)
        .build(schema)
        .map_err(|e| format!("{file} does not compile: {e}"))
}

/// Serves the embedded documents to `$ref`s; anything else is refused (no network, no files).
struct Embedded;

impl jsonschema::Retrieve for Embedded {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let file = uri.as_str().strip_prefix(BASE_URI).unwrap_or_default();
        match documents() {
            Ok(docs) => docs
                .get(file)
                .cloned()
                .ok_or_else(|| format!("no embedded schema at {uri}").into()),
            Err(e) => Err(e.clone().into()),
        }
    }
}

/// What translating one error needs.
struct Ctx<'a> {
    doc: &'a Value,
    docs: &'a Documents,
}

impl Ctx<'_> {
    fn translate(&self, error: &ValidationError<'_>, out: &mut Vec<SchemaFinding>) {
        let pointer = error.instance_path().as_str().to_string();
        let path = dotted_path(&pointer, self.doc);
        let keyword = error
            .absolute_keyword_location()
            .and_then(|uri| self.schema_at(uri.as_str()));
        // The schema object that holds the failing keyword, and the keyword's own value.
        let (holder, keyword_value) = match &keyword {
            Some((doc, fragment)) => (
                parent_pointer(fragment).and_then(|p| doc.pointer(&p)),
                doc.pointer(fragment),
            ),
            None => (None, None),
        };
        let instance = error.instance();
        let at = |what: String| SchemaFinding {
            pointer: pointer.clone(),
            message: prefixed(&path, &what),
            unknown_field: false,
        };
        let custom = |key: &str| holder.and_then(|h| h.get(key)).and_then(Value::as_str);

        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                for key in unexpected {
                    let hint = holder.and_then(|h| self.suggest(h, key, keyword.as_ref().map(|k| k.0)));
                    let place = if path.is_empty() {
                        "at the top level".to_string()
                    } else {
                        format!("in {path}")
                    };
                    let hint = hint.map(|h| format!("; did you mean `{h}`?")).unwrap_or_default();
                    out.push(SchemaFinding {
                        pointer: format!("{pointer}/{}", escape_token(key)),
                        message: format!("unknown field `{key}` {place}{hint}"),
                        unknown_field: true,
                    });
                }
                return;
            }
            ValidationErrorKind::PropertyNames { error: inner } => {
                let key = inner.instance().as_str().unwrap_or_default().to_string();
                // `propertyNames` holds the subschema; its own annotations explain the rule.
                let why = keyword_value
                    .and_then(|k| k.get("patternErrorMessage").or_else(|| k.get("errorMessage")))
                    .and_then(Value::as_str)
                    .map_or_else(|| "is not an allowed key".to_string(), str::to_string);
                out.push(SchemaFinding {
                    pointer: format!("{pointer}/{}", escape_token(&key)),
                    message: prefixed(&path, &format!("key `{key}` {why}")),
                    unknown_field: false,
                });
                return;
            }
            _ => {}
        }

        if let Some(message) = custom("errorMessage") {
            out.push(at(message.to_string()));
            return;
        }
        let what = match error.kind() {
            ValidationErrorKind::Required { property } => {
                format!("missing required field `{}`", property.as_str().unwrap_or_default())
            }
            ValidationErrorKind::Type { kind } => {
                format!("expected {}, found {}", expected_types(kind), describe(instance))
            }
            ValidationErrorKind::Enum { options } => {
                let values: Vec<String> = options.as_array().into_iter().flatten().map(enum_value).collect();
                let hint = instance
                    .as_str()
                    .and_then(|s| closest(s, values.iter().map(String::as_str)))
                    .map(|h| format!("; did you mean `{h}`?"))
                    .unwrap_or_default();
                format!("{} is not one of {}{hint}", compact(instance), values.join(", "))
            }
            ValidationErrorKind::Constant { expected_value } => {
                format!("must be {}, found {}", compact(expected_value), compact(instance))
            }
            ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}, found {}", compact(instance)),
            ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}, found {}", compact(instance)),
            ValidationErrorKind::ExclusiveMinimum { limit } => {
                format!("must be greater than {limit}, found {}", compact(instance))
            }
            ValidationErrorKind::ExclusiveMaximum { limit } => {
                format!("must be less than {limit}, found {}", compact(instance))
            }
            ValidationErrorKind::MinItems { limit } => format!("must have at least {limit} item{}", plural(*limit)),
            ValidationErrorKind::MaxItems { limit } => format!("must have at most {limit} item{}", plural(*limit)),
            ValidationErrorKind::MinLength { limit: 1 } | ValidationErrorKind::MinProperties { limit: 1 } => {
                "must not be empty".to_string()
            }
            ValidationErrorKind::MinLength { limit } => format!("must be at least {limit} characters long"),
            ValidationErrorKind::MaxLength { limit } => format!("must be at most {limit} characters long"),
            ValidationErrorKind::Pattern { pattern } => match custom("patternErrorMessage") {
                Some(message) => format!("{} {message}", compact(instance)),
                None => format!("{} does not match the pattern `{pattern}`", compact(instance)),
            },
            ValidationErrorKind::Not { .. } => "this combination of fields is not allowed".to_string(),
            ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
                "does not match any of the allowed forms".to_string()
            }
            ValidationErrorKind::OneOfMultipleValid { .. } => "matches more than one of the allowed forms".to_string(),
            ValidationErrorKind::UniqueItems => "must not contain duplicate items".to_string(),
            ValidationErrorKind::FalseSchema => "is not allowed here".to_string(),
            ValidationErrorKind::Format { format } => format!("{} is not a valid {format}", compact(instance)),
            ValidationErrorKind::Referencing(e) => {
                format!("internal error: unresolved schema reference ({e}); this is a bug in flotilla")
            }
            _ => lowercase_first(&error.to_string()),
        };
        out.push(at(what));
    }

    /// Resolves an absolute keyword location (`BASE_URI` + file + `#` + pointer) to its document
    /// and the (unescaped-URI) pointer inside it.
    fn schema_at(&self, uri: &str) -> Option<(&Value, String)> {
        let rest = uri.strip_prefix(BASE_URI)?;
        let (file, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        Some((self.docs.get(file)?, percent_decode(fragment)))
    }

    /// Follows `$ref` (relative to `file`, one of the embedded documents) to the schema it names.
    fn resolve<'s>(&'s self, file: &'s Value, schema: &'s Value) -> Option<(&'s Value, &'s Value)> {
        let mut current = (file, schema);
        for _ in 0..8 {
            let Some(reference) = current.1.get("$ref").and_then(Value::as_str) else {
                return Some(current);
            };
            let (target, fragment) = reference.split_once('#').unwrap_or((reference, ""));
            let doc = if target.is_empty() {
                current.0
            } else {
                self.docs.get(target)?
            };
            current = (doc, doc.pointer(&percent_decode(fragment))?);
        }
        None
    }

    /// The allowed property the unknown `key` most likely meant, at the schema object `holder`.
    fn suggest(&self, holder: &Value, key: &str, doc: Option<&Value>) -> Option<String> {
        let properties = holder.get("properties").and_then(Value::as_object)?;
        let allowed: Vec<&str> = properties.keys().map(String::as_str).collect();
        if let Some(hit) = synonym(key, &allowed).or_else(|| closest(key, allowed.iter().copied())) {
            return Some(hit.to_string());
        }
        // A field written one level too high, e.g. `clusterNames` directly under `placement`.
        let doc = doc?;
        let mut nested: Vec<(bool, &str)> = Vec::new();
        for (name, sub) in properties {
            let Some((sub_doc, sub)) = self.resolve(doc, sub) else {
                continue;
            };
            let (is_array, sub) = match sub.get("items") {
                Some(items) => match self.resolve(sub_doc, items) {
                    Some((_, items)) => (true, items),
                    None => continue,
                },
                None => (false, sub),
            };
            if sub.get("properties").and_then(|p| p.get(key)).is_some() {
                nested.push((is_array, name));
            }
        }
        nested.sort();
        nested.first().map(|(is_array, name)| {
            if *is_array {
                format!("{name}[].{key}")
            } else {
                format!("{name}.{key}")
            }
        })
    }
}

/// Words Karmada users write for a field that has another name (checked before edit distance).
const SYNONYMS: &[(&str, &[&str])] = &[
    ("maximum", &["maxGroups"]),
    ("max", &["maxGroups"]),
    ("maxclusters", &["maxGroups"]),
    ("minimum", &["minGroups"]),
    ("min", &["minGroups"]),
    ("minclusters", &["minGroups"]),
    ("spreadby", &["spreadByField"]),
    ("clusters", &["clusterNames", "targetCluster"]),
    ("names", &["clusterNames"]),
    ("excludeclusters", &["exclude"]),
    ("tolerations", &["clusterTolerations"]),
    ("affinity", &["clusterAffinity"]),
    ("affinities", &["clusterAffinities"]),
    ("selectors", &["resourceSelectors"]),
    ("resources", &["resourceSelectors"]),
    ("selector", &["labelSelector"]),
    ("expressions", &["matchExpressions"]),
    ("weights", &["staticWeightList", "weightPreference"]),
    ("replicas", &["replicaScheduling", "availableReplicas"]),
    ("type", &["replicaSchedulingType"]),
    ("schedulingtype", &["replicaSchedulingType"]),
    ("divisionpreference", &["replicaDivisionPreference"]),
    ("rules", &["overrideRules"]),
    ("overrides", &["overrideRules", "overriders"]),
    ("target", &["targetCluster"]),
    ("cluster", &["targetCluster"]),
    ("image", &["imageOverrider"]),
    ("command", &["commandOverrider"]),
    ("args", &["argsOverrider"]),
    ("labels", &["labelsOverrider"]),
    ("annotations", &["annotationsOverrider"]),
    ("patch", &["plaintext"]),
    ("patches", &["plaintext"]),
    ("jsonpatch", &["plaintext"]),
    ("op", &["operator"]),
    ("ns", &["namespace"]),
    ("name", &["cluster"]),
    ("context", &["kubeconfigContext"]),
    ("kubecontext", &["kubeconfigContext"]),
    ("gateway", &["eastWestGateway"]),
    ("ip", &["address"]),
    ("ports", &["portRange"]),
    ("vip", &["vipRange"]),
    ("vipcidr", &["vipRange"]),
    ("pointers", &["jsonPointers"]),
    ("paths", &["jsonPointers"]),
];

fn synonym<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    let (_, targets) = SYNONYMS.iter().find(|(alias, _)| *alias == lower)?;
    targets.iter().find_map(|t| allowed.iter().copied().find(|a| a == t))
}

/// The candidate nearest to `word` by case-insensitive edit distance, if near enough.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower: Vec<char> = word.to_lowercase().chars().collect();
    candidates
        .filter(|c| *c != word)
        .filter_map(|c| {
            let c_lower: Vec<char> = c.to_lowercase().chars().collect();
            let distance = edit_distance(&word_lower, &c_lower);
            let limit = (word_lower.len().max(c_lower.len()) / 3).max(1);
            (distance <= limit).then_some((distance, c))
        })
        .min()
        .map(|(_, c)| c)
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    if let Some(first) = rows.first_mut() {
        for (j, cell) in first.iter_mut().enumerate() {
            *cell = j;
        }
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// `spec.placement.spreadConstraints[0]` for `/spec/placement/spreadConstraints/0`.
fn dotted_path(pointer: &str, doc: &Value) -> String {
    let mut out = String::new();
    let mut current = Some(doc);
    for token in pointer.split('/').skip(1) {
        let token = unescape_token(token);
        let in_array = matches!(current, Some(Value::Array(_)));
        match token.parse::<usize>() {
            Ok(index) if in_array => {
                out.push_str(&format!("[{index}]"));
                current = current.and_then(|v| v.get(index));
            }
            _ => {
                let plain =
                    !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !plain {
                    out.push_str(&format!("[{}]", Value::String(token.clone())));
                } else if out.is_empty() {
                    out.push_str(&token);
                } else {
                    out.push('.');
                    out.push_str(&token);
                }
                current = current.and_then(|v| v.get(&token));
            }
        }
    }
    out
}

fn prefixed(path: &str, what: &str) -> String {
    if path.is_empty() {
        what.to_string()
    } else {
        format!("{path}: {what}")
    }
}

fn parent_pointer(pointer: &str) -> Option<String> {
    pointer.rfind('/').map(|i| pointer[..i].to_string())
}

fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn unescape_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Decodes `%XX` escapes of a URI fragment; anything malformed is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn expected_types(kind: &TypeKind) -> String {
    let names: Vec<String> = match kind {
        TypeKind::Single(t) => vec![t.to_string()],
        TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect(),
    };
    names.iter().map(|n| with_article(n)).collect::<Vec<_>>().join(" or ")
}

fn with_article(type_name: &str) -> String {
    match type_name {
        "null" => "null".to_string(),
        "array" | "object" | "integer" => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

/// `the string "2"`, `the number 1.5`, `an object`, ...
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => format!("the string {}", compact(value)),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// A short JSON rendering of a value for messages (long strings and containers are cut).
fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 60 {
        return text;
    }
    let cut: String = text.chars().take(57).collect();
    format!("{cut}...")
}

fn enum_value(value: &Value) -> String {
    match value.as_str() {
        Some("") => "\"\"".to_string(),
        Some(s) => s.to_string(),
        None => value.to_string(),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_schema_compiles() {
        for kind in SchemaKind::ALL {
            assert!(
                validator(kind).is_ok(),
                "{kind:?}: {:?}",
                validator(kind).as_ref().err()
            );
        }
    }

    #[test]
    fn every_embedded_schema_is_a_valid_draft_2020_12_schema() {
        let docs = match documents() {
            Ok(docs) => docs,
            Err(e) => panic!("schema documents do not parse: {e}"),
        };
        for (file, doc) in docs {
            assert!(
                jsonschema::meta::is_valid(doc),
                "{file} does not conform to its meta-schema"
            );
            assert_eq!(doc["$schema"], "https://json-schema.org/draft/2020-12/schema", "{file}");
        }
    }

    #[test]
    fn a_broken_schema_is_an_error_not_a_panic() {
        let missing_ref = serde_json::json!({"$ref": "nowhere.schema.json#/$defs/X"});
        let bad_keyword = serde_json::json!({"type": 5});
        for schema in [missing_ref, bad_keyword] {
            match compile_schema("broken.schema.json", &schema) {
                Ok(_) => panic!("{schema} compiled"),
                Err(e) => assert!(e.starts_with("broken.schema.json does not compile: "), "{e}"),
            }
        }
    }

    #[test]
    fn kinds_and_files_agree() {
        for kind in SchemaKind::ALL {
            assert!(SOURCES.iter().any(|(file, _)| *file == kind.schema_file()), "{kind:?}");
            assert_eq!(SchemaKind::ALL[kind.index()], kind);
        }
    }

    #[test]
    fn edit_distance_counts_transpositions_once() {
        let d = |a: &str, b: &str| edit_distance(&a.chars().collect::<Vec<_>>(), &b.chars().collect::<Vec<_>>());
        assert_eq!(d("maxgroups", "maxgroups"), 0);
        assert_eq!(d("mxagroups", "maxgroups"), 1);
        assert_eq!(d("maxgroup", "maxgroups"), 1);
        assert_eq!(d("", "abc"), 3);
    }

    #[test]
    fn closest_respects_the_threshold() {
        let allowed = ["maxGroups", "minGroups", "spreadByField", "spreadByLabel"];
        assert_eq!(closest("maxgroup", allowed.into_iter()), Some("maxGroups"));
        assert_eq!(closest("spreadByFeild", allowed.into_iter()), Some("spreadByField"));
        assert_eq!(closest("zzz", allowed.into_iter()), None);
        assert_eq!(synonym("Maximum", &allowed), Some("maxGroups"));
        assert_eq!(synonym("maximum", &["replicaScheduling"]), None);
    }

    #[test]
    fn dotted_paths_index_arrays_and_quote_odd_keys() {
        let doc = serde_json::json!({"spec": {"a": [{"b": 1}]}, "metadata": {"labels": {"x.io/y": "z"}}});
        assert_eq!(dotted_path("/spec/a/0/b", &doc), "spec.a[0].b");
        assert_eq!(
            dotted_path("/metadata/labels/x.io~1y", &doc),
            "metadata.labels[\"x.io/y\"]"
        );
        assert_eq!(dotted_path("", &doc), "");
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("/%24defs/A"), "/$defs/A");
        assert_eq!(percent_decode("/a%2"), "/a%2");
    }
}
