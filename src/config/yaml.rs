//! INTERIM loader (replaced by the located loader): YAML → JSON value → serde.

use serde::de::{DeserializeOwned, MapAccess};

/// Tagged component enums.
pub trait TaggedEnum: Sized {
    /// Kind.
    const KIND: &'static str;
    /// Types.
    const TYPES: &'static [&'static str];
    /// Variant.
    fn deserialize_variant<'de, A: MapAccess<'de>>(type_name: &str, body: &mut A) -> Result<Self, A::Error>;
}

/// A component entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Named<T> {
    /// Name.
    pub name: Option<String>,
    /// Config.
    pub config: T,
    /// Line.
    pub line: usize,
}

impl<'de, T: TaggedEnum> serde::Deserialize<'de> for Named<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut value = serde_json::Value::deserialize(d)?;
        let map = value.as_object_mut().ok_or_else(|| D::Error::custom("expected a map"))?;
        let kind = map.remove("type").and_then(|v| v.as_str().map(str::to_owned)).ok_or_else(|| D::Error::custom("missing type"))?;
        if !T::TYPES.contains(&kind.as_str()) {
            return Err(D::Error::custom(format!("unknown {} type {kind:?}", T::KIND)));
        }
        let name = map.remove("name").and_then(|v| v.as_str().map(str::to_owned));
        let mut access = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(vec![("config".to_string(), value)].into_iter());
        let _ = access.next_key::<String>().map_err(D::Error::custom)?;
        let config = T::deserialize_variant(&kind, &mut access).map_err(D::Error::custom)?;
        Ok(Named { name, config, line: 0 })
    }
}

fn to_json(yaml: &yaml_rust2::Yaml) -> serde_json::Value {
    use yaml_rust2::Yaml;
    match yaml {
        Yaml::Real(s) => s.parse::<f64>().map(serde_json::Value::from).unwrap_or(serde_json::Value::Null),
        Yaml::Integer(i) => (*i).into(),
        Yaml::String(s) => expand(s).into(),
        Yaml::Boolean(b) => (*b).into(),
        Yaml::Array(a) => a.iter().map(to_json).collect(),
        Yaml::Hash(h) => h.iter().map(|(k, v)| (k.as_str().map(str::to_owned).unwrap_or_else(|| format!("{k:?}")), to_json(v))).collect::<serde_json::Map<_, _>>().into(),
        _ => serde_json::Value::Null,
    }
}

fn expand(s: &str) -> String {
    let mut out = s.to_owned();
    while let Some(start) = out.find("${") {
        let Some(end) = out[start..].find('}') else { break };
        let inner = out[start + 2..start + end].to_owned();
        let (var, default) = inner.split_once(":-").unwrap_or((&inner, ""));
        let value = std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned());
        out.replace_range(start..start + end + 1, &value);
    }
    out
}

/// Error.
#[derive(Debug)]
pub struct ConfigError(String);
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) }
}
impl std::error::Error for ConfigError {}

/// Parse.
pub fn from_str<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| ConfigError(format!("{file}: {e}")))?;
    let json = docs.first().map(to_json).unwrap_or_default();
    serde_json::from_value(json).map_err(|e| ConfigError(format!("{file}: {e}")))
}
