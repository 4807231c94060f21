//! Text and JSON templates with `{{name}}` placeholders, parsed once.
//!
//! A placeholder names a variable: a builtin (`vu`, `iteration`), a `[vars]` entry, a
//! value a setup step captured for the virtual user, or one an earlier step of the same
//! flow captured. Names are checked when the workload is parsed, so rendering cannot
//! meet an unknown one.

use std::fmt::Write as _;

use serde_json::Value;

/// One piece of a template.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    Var(String),
}

/// A string with `{{name}}` placeholders.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template string that does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    /// `{{` without its `}}`.
    #[error("`{{{{` is not closed by `}}}}`")]
    Unclosed,
    /// `{{}}` or a name with characters other than letters, digits, `_`, `-`, `.`.
    #[error("`{{{{{0}}}}}` is not a variable name (letters, digits, `_`, `-`, `.`)")]
    BadName(String),
}

impl Template {
    /// Parses `text`, splitting it at its placeholders.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or(TemplateError::Unclosed)?;
            let name = after[..close].trim();
            let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
            if name.is_empty() || !name.chars().all(valid) {
                return Err(TemplateError::BadName(name.to_owned()));
            }
            parts.push(Part::Var(name.to_owned()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The variables the template uses.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The text itself when there is no placeholder: rendering it costs nothing.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Appends the rendered text to `out`, looking variables up with `lookup`.
    pub fn render_into<'a>(&self, out: &mut String, lookup: &impl Fn(&str) -> Option<&'a Value>) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(name) => match lookup(name) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(other) => {
                        let _ = write!(out, "{other}");
                    }
                    None => {}
                },
            }
        }
    }

    /// Renders the template to a new string.
    pub fn render<'a>(&self, lookup: &impl Fn(&str) -> Option<&'a Value>) -> String {
        let mut out = String::new();
        self.render_into(&mut out, lookup);
        out
    }

    /// The single variable if the template is exactly `{{name}}`, which a JSON body
    /// replaces by the variable's JSON value (a number stays a number).
    fn whole_var(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Var(name)] => Some(name),
            _ => None,
        }
    }
}

/// A JSON body whose strings are templates.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonTemplate {
    /// A string leaf.
    Text(Template),
    /// A number, boolean or null, kept as is.
    Scalar(Value),
    /// An array of templates.
    Array(Vec<JsonTemplate>),
    /// An object whose values are templates.
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Builds the template from a JSON value, parsing every string leaf.
    pub fn parse(value: &Value) -> Result<Self, TemplateError> {
        Ok(match value {
            Value::String(s) => Self::Text(Template::parse(s)?),
            Value::Array(items) => Self::Array(items.iter().map(Self::parse).collect::<Result<_, _>>()?),
            Value::Object(map) => Self::Object(
                map.iter().map(|(k, v)| Ok((k.clone(), Self::parse(v)?))).collect::<Result<_, TemplateError>>()?,
            ),
            scalar => Self::Scalar(scalar.clone()),
        })
    }

    /// Every variable used anywhere in the body.
    pub fn vars(&self) -> Vec<&str> {
        match self {
            Self::Text(t) => t.vars().collect(),
            Self::Scalar(_) => Vec::new(),
            Self::Array(items) => items.iter().flat_map(Self::vars).collect(),
            Self::Object(fields) => fields.iter().flat_map(|(_, v)| v.vars()).collect(),
        }
    }

    /// Renders the body to a JSON value.
    pub fn render<'a>(&self, lookup: &impl Fn(&str) -> Option<&'a Value>) -> Value {
        match self {
            Self::Text(t) => match t.whole_var().and_then(lookup) {
                Some(v) => v.clone(),
                None => Value::String(t.render(lookup)),
            },
            Self::Scalar(v) => v.clone(),
            Self::Array(items) => Value::Array(items.iter().map(|i| i.render(lookup)).collect()),
            Self::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), v.render(lookup))).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_placeholders_and_keeps_typed_values() {
        let token = json!("abc");
        let qty = json!(3);
        let lookup = |n: &str| match n {
            "token" => Some(&token),
            "qty" => Some(&qty),
            _ => None,
        };
        let t = Template::parse("Bearer {{ token }}!").unwrap();
        assert_eq!(t.render(&lookup), "Bearer abc!");
        let body = JsonTemplate::parse(&json!({"q": "{{qty}}", "s": "n={{qty}}"})).unwrap();
        assert_eq!(body.render(&lookup), json!({"q": 3, "s": "n=3"}));
    }

    #[test]
    fn refuses_broken_placeholders() {
        assert_eq!(Template::parse("a {{b"), Err(TemplateError::Unclosed));
        assert!(matches!(Template::parse("{{}}"), Err(TemplateError::BadName(_))));
        assert!(matches!(Template::parse("{{a b}}"), Err(TemplateError::BadName(_))));
    }
}
