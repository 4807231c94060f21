//! Text and JSON templates with `{{name}}` placeholders, parsed once.
//!
//! A placeholder names a variable: a builtin (`vu`, `iteration`), a `[vars]` entry, a
//! value a setup step captured for the virtual user, or one an earlier step of the same
//! flow captured. Names are checked when the workload is parsed, so rendering cannot
//! meet an unknown one.
//!
//! A placeholder may instead call a function that draws a value:
//!
//! | call | value |
//! |---|---|
//! | `{{uniform 1 100}}` | an integer from 1 to 100 inclusive, each equally likely |
//!
//! Draws come from a [`DrawRng`] made per flow start by [`draw_rng`] from the
//! workload's seed and the start's index, so the same seed draws the same values
//! whatever the timing of the run. In a JSON body a template that is only a draw
//! renders as a number.

use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// The random source of a template's draws: ChaCha, one stream per flow start.
pub type DrawRng = ChaCha8Rng;

/// The draws of the workload seeded `seed` for its flow start number `start`: stream
/// `start` of the ChaCha generator keyed by the seed, independent of every other start.
pub fn draw_rng(seed: u64, start: u64) -> DrawRng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(start);
    rng
}

/// A value drawn at render time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draw {
    /// An integer in `low..=high`, uniformly.
    Uniform {
        /// The smallest value.
        low: i64,
        /// The largest value.
        high: i64,
    },
}

impl Draw {
    /// Parses a call such as `uniform 1 100`.
    fn parse(call: &str) -> Result<Self, TemplateError> {
        let mut words = call.split_whitespace();
        let function = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        let bad = |why: &str| TemplateError::BadCall(call.to_owned(), why.to_owned());
        match function {
            "uniform" => {
                let usage = "`uniform` takes two integers, the lowest and highest value: {{uniform 1 100}}";
                let [low, high] = args.as_slice() else { return Err(bad(usage)) };
                let (low, high): (i64, i64) = match (low.parse(), high.parse()) {
                    (Ok(l), Ok(h)) => (l, h),
                    _ => return Err(bad(usage)),
                };
                if low > high {
                    return Err(bad("`uniform`: the lowest value is above the highest"));
                }
                Ok(Self::Uniform { low, high })
            }
            other => Err(bad(&format!("there is no function `{other}`; the functions are: uniform"))),
        }
    }

    fn draw(self, rng: &mut DrawRng) -> i64 {
        match self {
            Self::Uniform { low, high } => rng.random_range(low..=high),
        }
    }
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    Var(String),
    Draw(Draw),
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
    /// A function call that does not parse.
    #[error("`{{{{{0}}}}}`: {1}")]
    BadCall(String, String),
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
            if name.contains(char::is_whitespace) {
                parts.push(Part::Draw(Draw::parse(name)?));
            } else if name.is_empty() || !name.chars().all(valid) {
                return Err(TemplateError::BadName(name.to_owned()));
            } else {
                parts.push(Part::Var(name.to_owned()));
            }
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
            Part::Literal(_) | Part::Draw(_) => None,
        })
    }

    /// Whether it draws a value (`{{uniform 1 100}}`).
    pub fn has_draws(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Draw(_)))
    }

    /// The text itself when there is no placeholder: rendering it costs nothing.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Appends the rendered text to `out`, looking variables up with `lookup` and
    /// drawing from `rng`.
    pub fn render_into<'a>(&self, out: &mut String, lookup: &impl Fn(&str) -> Option<&'a Value>, rng: &mut DrawRng) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Draw(d) => {
                    let _ = write!(out, "{}", d.draw(rng));
                }
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
    pub fn render<'a>(&self, lookup: &impl Fn(&str) -> Option<&'a Value>, rng: &mut DrawRng) -> String {
        let mut out = String::new();
        self.render_into(&mut out, lookup, rng);
        out
    }

    /// The single part if the template is exactly `{{name}}` or one draw, which a JSON
    /// body replaces by a JSON value (a number stays a number).
    fn whole(&self) -> Option<&Part> {
        match self.parts.as_slice() {
            [part @ (Part::Var(_) | Part::Draw(_))] => Some(part),
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

    /// Whether any string of it draws a value.
    pub fn has_draws(&self) -> bool {
        match self {
            Self::Text(t) => t.has_draws(),
            Self::Scalar(_) => false,
            Self::Array(items) => items.iter().any(Self::has_draws),
            Self::Object(fields) => fields.iter().any(|(_, v)| v.has_draws()),
        }
    }

    /// Renders the body to a JSON value, drawing from `rng`.
    pub fn render<'a>(&self, lookup: &impl Fn(&str) -> Option<&'a Value>, rng: &mut DrawRng) -> Value {
        match self {
            Self::Text(t) => match t.whole() {
                Some(Part::Draw(d)) => Value::from(d.draw(rng)),
                Some(Part::Var(name)) => lookup(name).cloned().unwrap_or_else(|| Value::String(String::new())),
                _ => Value::String(t.render(lookup, rng)),
            },
            Self::Scalar(v) => v.clone(),
            Self::Array(items) => Value::Array(items.iter().map(|i| i.render(lookup, rng)).collect()),
            Self::Object(fields) => {
                Value::Object(fields.iter().map(|(k, v)| (k.clone(), v.render(lookup, rng))).collect())
            }
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
        let rng = &mut draw_rng(0, 0);
        let t = Template::parse("Bearer {{ token }}!").unwrap();
        assert_eq!(t.render(&lookup, rng), "Bearer abc!");
        let body = JsonTemplate::parse(&json!({"q": "{{qty}}", "s": "n={{qty}}"})).unwrap();
        assert_eq!(body.render(&lookup, rng), json!({"q": 3, "s": "n=3"}));
    }

    fn draws(t: &Template, seed: u64, start: u64) -> Vec<i64> {
        let rng = &mut draw_rng(seed, start);
        (0..50).map(|_| t.render(&|_| None, rng).parse().unwrap()).collect()
    }

    #[test]
    fn uniform_draws_stay_in_range_and_follow_the_seed() {
        let t = Template::parse("{{uniform 1 100}}").unwrap();
        assert_eq!(t.vars().count(), 0);
        assert!(t.as_literal().is_none());
        let a = draws(&t, 7, 3);
        assert!(a.iter().all(|v| (1..=100).contains(v)), "{a:?}");
        assert_eq!(a, draws(&t, 7, 3), "the same seed and start draw the same values");
        assert_ne!(a, draws(&t, 8, 3), "another seed draws other values");
        assert_ne!(a, draws(&t, 7, 4), "another flow start draws other values");
        let both_ends = draws(&Template::parse("{{uniform 0 1}}").unwrap(), 1, 1);
        assert!(both_ends.contains(&0) && both_ends.contains(&1), "{both_ends:?}");
        let body = JsonTemplate::parse(&json!({"id": "{{uniform 5 5}}", "p": "/p/{{uniform 5 5}}"})).unwrap();
        assert_eq!(body.render(&|_| None, &mut draw_rng(0, 0)), json!({"id": 5, "p": "/p/5"}));
    }

    #[test]
    fn bad_calls_say_how_to_write_them() {
        let err = |s: &str| Template::parse(s).unwrap_err().to_string();
        assert!(err("{{uniform 1}}").contains("two integers"), "{}", err("{{uniform 1}}"));
        assert!(err("{{uniform a b}}").contains("two integers"));
        assert!(err("{{uniform 9 1}}").contains("above the highest"));
        assert!(err("{{zipf 100 1.1}}").contains("no function `zipf`"));
    }

    #[test]
    fn refuses_broken_placeholders() {
        assert_eq!(Template::parse("a {{b"), Err(TemplateError::Unclosed));
        assert!(matches!(Template::parse("{{}}"), Err(TemplateError::BadName(_))));
        assert!(matches!(Template::parse("{{a/b}}"), Err(TemplateError::BadName(_))));
        assert!(matches!(Template::parse("{{a b}}"), Err(TemplateError::BadCall(..))));
    }
}
