//! `{{ field }}` templates: text with field references, rendered against a log event.
//! Used by the `set` transform and meant for any component that builds text from fields
//! (the Loki sink's label templates, index names).
//!
//! Syntax: literal text with `{{ name }}` placeholders (spaces inside the braces are
//! optional); `{{ a.b }}` reads the field `a.b`, or else key `b` of the map in field `a`
//! ([`LogEvent::lookup`]; a key may itself contain dots: `{{ pod_labels.app.kubernetes.io/name }}`). A missing field renders as the empty string; a non-string value renders as
//! its plain text (numbers, booleans) or JSON (arrays, objects). `{{` without a closing
//! `}}`, or an empty name, is an error at parse time.
//!
//! Owns: parsing and rendering templates. Never: fails or panics at render time.

use std::fmt;

use crate::event::LogEvent;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
}

/// One piece of a parsed template (see [`Template::segments`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Literal text.
    Literal(&'a str),
    /// A `{{ name }}` field reference.
    Field(&'a str),
}

/// Why a template could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The template text.
    pub template: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid template {:?}: {}", self.template, self.reason)
    }
}

impl std::error::Error for TemplateError {}

impl Template {
    /// Parses `text`; `{{ name }}` is a field reference, everything else is literal.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let error = |reason| TemplateError {
            template: text.to_owned(),
            reason,
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| error("`{{` without a closing `}}`"))?;
            let name = after[..close].trim();
            if name.is_empty() {
                return Err(error("empty field name between `{{` and `}}`"));
            }
            if name.contains(['{', '}']) {
                return Err(error("braces inside a field reference"));
            }
            parts.push(Part::Field(name.to_owned()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Renders the template for `event`.
    pub fn render(&self, event: &LogEvent) -> String {
        let mut out = String::new();
        self.render_into(event, &mut out);
        out
    }

    /// Appends the rendering for `event` to `out` (no allocation when `out` has room).
    pub fn render_into(&self, event: &LogEvent, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(name) => {
                    if let Some(value) = event.lookup(name) {
                        value.push_text(out);
                    }
                }
            }
        }
    }

    /// True when the template references no field (it renders the same for every event).
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The text when the template references no field.
    pub fn as_static(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// The template's pieces in order: literal text and field references, for components
    /// that render the literal parts their own way (e.g. date patterns in index names).
    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> {
        self.parts.iter().map(|p| match p {
            Part::Literal(text) => Segment::Literal(text),
            Part::Field(name) => Segment::Field(name),
        })
    }

    /// The names of the fields the template references, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;

    fn check(template: &str, expected: Result<&str, &str>) {
        let mut event = LogEvent::new("hello");
        event.insert("status", Value::Int(404));
        event.insert("host", "web-1");
        event.insert("ok", Value::Bool(false));
        event.insert("tags", Value::Array(vec!["a".into(), Value::Int(1)]));
        let mut http = crate::event::Map::new();
        http.insert("status", Value::Int(200));
        event.insert("http", Value::from(http));
        event.insert("dotted.name", "flat");
        match (Template::parse(template), expected) {
            (Ok(t), Ok(text)) => assert_eq!(t.render(&event), text, "template {template:?}"),
            (Err(e), Err(reason)) => assert!(e.to_string().contains(reason), "{e} vs {reason}"),
            (got, want) => panic!("template {template:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn renders_templates() {
        check("plain", Ok("plain"));
        check("", Ok(""));
        check("{{status}}", Ok("404"));
        check("{{ host }}-{{ status }}!", Ok("web-1-404!"));
        check("{{ message }}", Ok("hello"));
        check("[{{ missing }}]", Ok("[]"));
        check("{{ ok }}", Ok("false"));
        check("{{ tags }}", Ok(r#"["a",1]"#));
        check(
            "{{ http.status }}/{{ http.missing }}/{{ dotted.name }}",
            Ok("200//flat"),
        );
        check("{{ tags.0 }}", Ok(""));
        let mut labels = crate::event::Map::new();
        labels.insert("app.kubernetes.io/name", Value::from("shop"));
        let mut event = LogEvent::new("x");
        event.insert("pod_labels", Value::from(labels));
        let t = Template::parse("{{ pod_labels.app.kubernetes.io/name }}").unwrap();
        assert_eq!(t.render(&event), "shop", "a key with dots inside a map");
        check("héllo {{ host }} ü", Ok("héllo web-1 ü"));
        check("a } b }}", Ok("a } b }}"));
        check("{{ host", Err("without a closing"));
        check("{{  }}", Err("empty field name"));
        check("{{ a { }}", Err("braces"));
    }

    #[test]
    fn static_and_fields() {
        let t = Template::parse("x{{ a }}y{{b}}").unwrap();
        assert!(!t.is_static());
        assert_eq!(t.fields().collect::<Vec<_>>(), ["a", "b"]);
        assert!(Template::parse("x").unwrap().is_static());
    }
}
