//! Loader tests: typing, locations, environment expansion, component entries and bounds.

use super::named::FOREIGN;
use super::*;
use serde::de::{self, MapAccess};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    data_dir: PathBuf,
    api: Option<Api>,
    pipelines: BTreeMap<String, Pipeline>,
}
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Api {
    address: String,
}
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pipeline {
    sources: Vec<Named<Source>>,
    #[serde(default)]
    transforms: Vec<Named<Transform>>,
    sinks: Vec<Named<Sink>>,
}
#[derive(Debug, PartialEq)]
enum Source {
    File(FileCfg),
    Demo(DemoCfg),
}
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCfg {
    include: Vec<String>,
    #[serde(default)]
    read_from: ReadFrom,
}
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReadFrom {
    #[default]
    Beginning,
    End,
}
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoCfg {
    rate: u64,
}
#[derive(Debug, PartialEq)]
enum Transform {
    Grep(GrepCfg),
}
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrepCfg {
    pattern: Pattern,
}
/// Stands in for a newtype that compiles a regex.
#[derive(Debug, PartialEq)]
struct Pattern(String);
impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.matches('(').count() != s.matches(')').count() {
            return Err(de::Error::custom(format!(
                "unbalanced parentheses in {s:?}"
            )));
        }
        Ok(Pattern(s))
    }
}
#[derive(Debug, Clone, PartialEq)]
enum Sink {
    Loki(LokiCfg),
}
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct LokiCfg {
    endpoint: url::Url,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

macro_rules! tagged {
        ($ty:ident, $kind:literal, $($tag:literal => $variant:ident),*) => {
            impl TaggedEnum for $ty {
                const KIND: &'static str = $kind;
                const TYPES: &'static [&'static str] = &[$($tag),*];
                fn deserialize_variant<'de, A: MapAccess<'de>>(t: &str, body: &mut A) -> Result<Self, A::Error> {
                    match t {
                        $($tag => Ok($ty::$variant(body.next_value()?)),)*
                        _ => Err(de::Error::custom("not a type")),
                    }
                }
            }
        };
    }
tagged!(Source, "source", "file" => File, "demo" => Demo);
tagged!(Transform, "transform", "grep" => Grep);
tagged!(Sink, "sink", "loki" => Loki);

#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
enum Loose {
    Int(i64),
    Str(String),
    List(Vec<Loose>),
    Map(BTreeMap<String, Loose>),
    Null(()),
}
#[derive(Debug, PartialEq, Deserialize)]
struct Flat {
    a: u8,
    #[serde(flatten)]
    rest: BTreeMap<String, Loose>,
}
fn env(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("loki.example".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn check<T: DeserializeOwned + PartialEq + fmt::Debug>(yaml: &str, want: Result<T, &str>) {
    let got = from_str_with_env::<T>(yaml, "sluice.yaml", &env).map_err(|e| e.to_string());
    assert_eq!(got, want.map_err(str::to_string), "\n--- yaml:\n{yaml}");
}

/// A one-pipeline config whose sources start on line 5.
fn web(sources: &str, sinks: &str) -> String {
    format!("data_dir: /d\npipelines:\n  web:\n    sources:\n{sources}    sinks:\n{sinks}")
}
const DEMO: &str = "      - type: demo\n        rate: 5\n";
const LOKI: &str = "      - type: loki\n        endpoint: http://x\n";

fn named<T>(name: Option<&str>, config: T, line: usize) -> Named<T> {
    Named {
        name: name.map(str::to_string),
        config,
        line,
    }
}

#[test]
fn valid_config_round_trips() {
    let yaml = r#"
data_dir: /var/lib/sluice
api: {address: "127.0.0.1:8686"}
pipelines:
  web:
    sources:
      - type: file
        name: nginx
        include: ["${LOGS:-/var/log}/*.log", "${EMPTY:-/tmp}/x", "a$$b$c"]
        read_from: end
      - {type: demo, rate: "${RATE:-42}"}
    transforms:
      - type: grep
        pattern: (GET|POST)
    sinks:
      - &loki
        type: loki
        endpoint: http://${HOST}:3100/push
        labels: {job: web}
  copy:
    sources: [{type: demo, rate: 0x10}]
    sinks: [*loki]
"#;
    let include = vec!["/var/log/*.log".into(), "/tmp/x".into(), "a$b$c".into()];
    let file = Source::File(FileCfg {
        include,
        read_from: ReadFrom::End,
    });
    let labels = BTreeMap::from([("job".to_string(), "web".to_string())]);
    let endpoint = url::Url::parse("http://loki.example:3100/push").unwrap();
    let loki = Sink::Loki(LokiCfg { endpoint, labels });
    let grep = Transform::Grep(GrepCfg {
        pattern: Pattern("(GET|POST)".into()),
    });
    let web = Pipeline {
        sources: vec![
            named(Some("nginx"), file, 7),
            named(None, Source::Demo(DemoCfg { rate: 42 }), 11),
        ],
        transforms: vec![named(None, grep, 13)],
        sinks: vec![named(None, loki, 17)],
    };
    let copy = Pipeline {
        sources: vec![named(None, Source::Demo(DemoCfg { rate: 16 }), 21)],
        transforms: vec![],
        sinks: vec![Named {
            line: 22,
            ..web.sinks[0].clone()
        }],
    };
    let want = Config {
        data_dir: "/var/lib/sluice".into(),
        api: Some(Api {
            address: "127.0.0.1:8686".into(),
        }),
        pipelines: BTreeMap::from([("web".into(), web), ("copy".into(), copy)]),
    };
    check(yaml, Ok(want));
}

#[test]
fn config_errors_name_file_line_and_path() {
    let sink = |endpoint: &str| format!("      - type: loki\n        endpoint: {endpoint}\n");
    let labels = "      - type: loki\n        endpoint: http://x\n        labels:\n          a: b\n          a: c\n";
    let grep = "    transforms:\n      - type: grep\n        pattern: \"(oops\"\n";
    let cases: Vec<(String, &str)> = vec![
            (web("      - type: file\n        inlcude: [a]\n", LOKI),
             r#"6:9: pipelines.web.sources[0].inlcude: unknown key "inlcude", expected one of: include, read_from"#),
            ("\u{feff}data_dir: /d\npipeline: {}\n".into(),
             r#"2:1: pipeline: unknown key "pipeline", expected one of: data_dir, api, pipelines"#),
            (web("      - type: demo\n        rate: fast\n", LOKI),
             r#"6:15: pipelines.web.sources[0].rate: expected an integer, found "fast""#),
            (web(DEMO, &sink("not a url")),
             r#"9:19: pipelines.web.sinks[0].endpoint: relative URL without a base: "not a url""#),
            (web(DEMO, &sink("http://${NOPE}/x")),
             "9:19: pipelines.web.sinks[0].endpoint: environment variable NOPE is not set (use ${NOPE:-default} for a default)"),
            (web(DEMO, &sink("\"${NOPE\"")),
             r#"9:19: pipelines.web.sinks[0].endpoint: unterminated "${" (write $$ for a literal $)"#),
            (web(DEMO, &sink("${1X}")), r#"9:19: pipelines.web.sinks[0].endpoint: invalid environment variable name "1X" in "${1X}""#),
            (web("      - type: flie\n", LOKI),
             r#"5:15: pipelines.web.sources[0].type: unknown source type "flie", expected one of: file, demo"#),
            (web("      - include: [a]\n", LOKI), r#"5:9: pipelines.web.sources[0]: missing key "type" (one of: file, demo)"#),
            (web("      - file\n", LOKI), r#"5:9: pipelines.web.sources[0]: expected a map with a "type" key, found "file""#),
            (web("      - {type: demo, name: [x], rate: 1}\n", LOKI),
             "5:28: pipelines.web.sources[0].name: expected a string, found a list"),
            (web("      - type: demo\n", LOKI), r#"5:9: pipelines.web.sources[0]: missing required key "rate""#),
            (web("      - {type: file, include: [a], read_from: middle}\n", LOKI),
             r#"5:47: pipelines.web.sources[0].read_from: unknown value "middle", expected one of: beginning, end"#),
            (web(DEMO, labels), r#"12:11: pipelines.web.sinks[0].labels.a: duplicate key "a" (first defined on line 11)"#),
            (web(DEMO, LOKI) + grep, r#"12:18: pipelines.web.transforms[0].pattern: unbalanced parentheses in "(oops""#),
            ("data_dir: /d\npipelines: [web]\n".into(), "2:12: pipelines: expected a map, found a list"),
            ("pipelines: {}\n".into(), r#"1:1: missing required key "data_dir""#),
            ("data_dir: [a\npipelines: {}\n".into(), "2:10: invalid YAML: illegal placement of ':' indicator"),
            ("a: 1\n---\nb: 2\n".into(), "2:1: multiple YAML documents in one config file are not supported"),
            ("".into(), "1:1: empty config"),
            ("# nothing\n".into(), "1:1: empty config"),
            ("data_dir: !env x\n".into(), "1:16: unsupported YAML tag !env"),
            ("a: &a [1]\nb: *zz\n".into(), "2:4: invalid YAML: while parsing node, found unknown anchor"),
        ];
    for (yaml, want) in cases {
        check::<Config>(&yaml, Err(&format!("sluice.yaml:{want}")));
    }
}

#[test]
fn scalars_are_typed_on_demand() {
    type Scalars = (
        Vec<bool>,
        Vec<i64>,
        Vec<f64>,
        Vec<String>,
        Option<u8>,
        (u8, String),
    );
    let yaml = "- [true, True, TRUE, false, \"FALSE\"]\n- [0x1f, 0o17, -12, '+7', 007]\n\
                    - [1.5, -.inf, .Inf, 1e3, 2, \"0.25\"]\n- - 12\n  - true\n  - ~x\n  - 'q'\n  - |\n    two\n    lines\n-\n- [255, 1.0]\n";
    let floats = vec![1.5, f64::NEG_INFINITY, f64::INFINITY, 1000.0, 2.0, 0.25];
    let strings = vec![
        "12".into(),
        "true".into(),
        "~x".into(),
        "q".into(),
        "two\nlines\n".into(),
    ];
    let want = (
        vec![true, true, true, false, false],
        vec![31, 15, -12, 7, 7],
        floats,
        strings,
    );
    check::<Scalars>(
        yaml,
        Ok((want.0, want.1, want.2, want.3, None, (255, "1.0".into()))),
    );
    let base = "- []\n- []\n- []\n- []\n";
    let cases = [
        (
            "- 256\n- [1, a]",
            "5:3: [4]: expected an integer from 0 to 255, found 256",
        ),
        (
            "- ${EMPTY}\n- []",
            "6:3: [5]: invalid length 0, expected a tuple of size 2",
        ),
        ("- 1\n- [1, a, b]", "6:3: [5]: expected 2 items, found 3"),
        (
            "- 1_000\n- [1, a]",
            r#"5:3: [4]: expected an integer, found "1_000""#,
        ),
        ("- 1\n- {a: 1}", "6:3: [5]: expected a list, found a map"),
        ("- 1\n- [1, a]\n- 3", "1:1: expected 6 items, found 7"),
    ];
    for (tail, want) in cases {
        check::<Scalars>(
            &format!("{base}{tail}\n"),
            Err(&format!("sluice.yaml:{want}")),
        );
    }
    let no_bool = r#"sluice.yaml:1:3: [0]: expected a boolean (true or false), found "yes""#;
    check::<Vec<bool>>("- yes", Err(no_bool));
    assert!(from_str_with_env::<Vec<f64>>("[.nan]", "f", &env).unwrap()[0].is_nan());
}

#[test]
fn enums_untagged_flatten_and_limits() {
    let m = |v: Vec<(&str, Loose)>| {
        Loose::Map(v.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    };
    let list = Loose::List(vec![Loose::Int(1), Loose::Str("x".into()), Loose::Null(())]);
    check(
        "a: [1, x, ~]\nb: '7'\n",
        Ok(m(vec![("a", list), ("b", Loose::Str("7".into()))])),
    );
    check(
        "a: 1\nb: 2\n",
        Ok(Flat {
            a: 1,
            rest: BTreeMap::from([("b".to_string(), Loose::Int(2))]),
        }),
    );
    check::<Flat>(
        "x:\n  a: 1\n",
        Err("sluice.yaml:1:1: missing required key \"a\""),
    );
    let unit = r#"sluice.yaml:1:3: [0]: expected a string, found a map"#;
    check::<Vec<ReadFrom>>("- {end: 1}", Err(unit));
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(from_str_with_env::<Loose>(&deep(MAX_DEPTH), "f", &env).is_ok());
    check::<Loose>(
        &deep(MAX_DEPTH + 1),
        Err("sluice.yaml:1:129: nesting deeper than 128 levels"),
    );
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                    e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
    check::<Loose>(
        bomb,
        Err("sluice.yaml:5:33: aliases expand to more than 100000 nodes"),
    );
}

#[test]
fn named_needs_this_loader() {
    let map =
        de::value::MapDeserializer::<_, de::value::Error>::new([("type", "demo")].into_iter());
    let err = Named::<Source>::deserialize(map).unwrap_err();
    assert_eq!(err.to_string(), FOREIGN);
}

proptest::proptest! {
    #[test]
    fn never_panics(
        s in "((  |- |a: |type: |name: |\\[|\\]|\\{|\\}|, |&a |\\*a |\\? |!!str |'|\"|\\n|\\$\\{X|\\}|#|\\||>|---|x|1|~)){0,60}",
        t in ".{0,60}",
    ) {
        let _ = from_str::<Config>(&s, "f");
        let _ = from_str::<Loose>(&s, "f");
        let _ = from_str::<Config>(&t, "f");
    }
}
