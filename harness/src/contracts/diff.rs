//! A breaking-change diff of two pact files: what the NEW pact no longer promises that
//! the OLD one did, seen from the consumer — a removed interaction, a changed status, a
//! removed response field or header, a field whose JSON type changed; for an
//! asynchronous message, a removed or retyped field of its contents, or a removed
//! metadata key (its subject, say).
//!
//! Interactions are paired by description (and provider states). Arrays are compared by
//! their first element, as `each_like` describes every element by one example.

use std::fmt;

use serde_json::Value;

use super::PactDoc;

/// Which body a field is in: an HTTP response's, or a message's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Response,
    Message,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Response => "response",
            Self::Message => "message",
        })
    }
}

/// One change that would break the consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Breaking {
    InteractionRemoved { interaction: String },
    StatusChanged { interaction: String, old: u64, new: u64 },
    HeaderRemoved { interaction: String, header: String },
    MetadataRemoved { interaction: String, key: String },
    FieldRemoved { interaction: String, part: Part, field: String },
    TypeChanged { interaction: String, part: Part, field: String, old: &'static str, new: &'static str },
}

impl fmt::Display for Breaking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InteractionRemoved { interaction } => write!(f, "{interaction:?}: the interaction was removed"),
            Self::StatusChanged { interaction, old, new } => {
                write!(f, "{interaction:?}: status {old} narrowed to {new}")
            }
            Self::HeaderRemoved { interaction, header } => {
                write!(f, "{interaction:?}: response header {header} was removed")
            }
            Self::MetadataRemoved { interaction, key } => {
                write!(f, "{interaction:?}: message metadata {key} was removed")
            }
            Self::FieldRemoved { interaction, part, field } => {
                write!(f, "{interaction:?}: {part} field {field} was removed")
            }
            Self::TypeChanged { interaction, part, field, old, new } => {
                write!(f, "{interaction:?}: {part} field {field} changed type from {old} to {new}")
            }
        }
    }
}

/// Every breaking change from `old` to `new`.
pub fn breaking_changes(old: &PactDoc, new: &PactDoc) -> Vec<Breaking> {
    let mut out = Vec::new();
    for o in old.interactions() {
        let name = label(o);
        let Some(n) = new.interactions().iter().find(|n| key(n) == key(o)) else {
            out.push(Breaking::InteractionRemoved { interaction: name });
            continue;
        };
        if let Some(contents) = o.get("contents") {
            message_changes(&name, (contents, &o["metadata"]), (&n["contents"], &n["metadata"]), &mut out);
            continue;
        }
        let (or, nr) = (&o["response"], &n["response"]);
        let (os, ns) = (or["status"].as_u64().unwrap_or(200), nr["status"].as_u64().unwrap_or(200));
        if os != ns {
            out.push(Breaking::StatusChanged { interaction: name.clone(), old: os, new: ns });
        }
        if let Some(headers) = or["headers"].as_object() {
            for h in headers.keys() {
                let present = nr["headers"].as_object().is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case(h)));
                if !present {
                    out.push(Breaking::HeaderRemoved { interaction: name.clone(), header: h.clone() });
                }
            }
        }
        if let (Some(ob), Some(nb)) = (body(or), body(nr)) {
            compare(&name, Part::Response, "$", &ob, &nb, &mut out);
        } else if body(or).is_some() {
            out.push(Breaking::FieldRemoved {
                interaction: name.clone(),
                part: Part::Response,
                field: "$ (the whole body)".into(),
            });
        }
    }
    out
}

/// What an asynchronous message (V4 `contents` and `metadata`) no longer carries.
fn message_changes(name: &str, old: (&Value, &Value), new: (&Value, &Value), out: &mut Vec<Breaking>) {
    if let Some(keys) = old.1.as_object() {
        for key in keys.keys().filter(|k| new.1.get(k.as_str()).is_none()) {
            out.push(Breaking::MetadataRemoved { interaction: name.into(), key: key.clone() });
        }
    }
    match (old.0, new.0) {
        (Value::Null, _) => {}
        (_, Value::Null) => out.push(Breaking::FieldRemoved {
            interaction: name.into(),
            part: Part::Message,
            field: "$ (the whole message)".into(),
        }),
        (o, n) => compare(name, Part::Message, "$", &content(o), &content(n), out),
    }
}

/// How interactions are paired: description and provider states.
fn key(i: &Value) -> (String, String) {
    let states = i["providerStates"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect::<Vec<_>>().join(" & "))
        .unwrap_or_default();
    (i["description"].as_str().unwrap_or_default().to_string(), states)
}

fn label(i: &Value) -> String {
    i["description"].as_str().unwrap_or("(no description)").to_string()
}

/// The JSON body of a V4 response (`body.content`), or of an older one (`body`).
fn body(response: &Value) -> Option<Value> {
    response.get("body").map(content)
}

/// The JSON of a V4 body (`content`, decoded when encoded), or an older plain one.
fn content(b: &Value) -> Value {
    match b.get("content") {
        Some(Value::String(s)) if b.get("encoded").is_some_and(|e| e != &Value::Bool(false)) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
        }
        Some(content) => content.clone(),
        None => b.clone(),
    }
}

fn compare(interaction: &str, part: Part, path: &str, old: &Value, new: &Value, out: &mut Vec<Breaking>) {
    if kind(old) != kind(new) {
        out.push(Breaking::TypeChanged {
            interaction: interaction.into(),
            part,
            field: path.into(),
            old: kind(old),
            new: kind(new),
        });
        return;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, ov) in o {
                let child = format!("{path}.{k}");
                match n.get(k) {
                    Some(nv) => compare(interaction, part, &child, ov, nv, out),
                    None => out.push(Breaking::FieldRemoved { interaction: interaction.into(), part, field: child }),
                }
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            if let (Some(ov), Some(nv)) = (o.first(), n.first()) {
                compare(interaction, part, &format!("{path}[*]"), ov, nv, out);
            }
        }
        _ => {}
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn pact(status: u64, body: Value) -> PactDoc {
        let json = serde_json::json!({
            "consumer": {"name": "web"}, "provider": {"name": "db"},
            "interactions": [{
                "description": "get a product",
                "providerStates": [{"name": "products 1 to 100 exist"}],
                "response": {"status": status, "headers": {"Content-Type": ["application/json"]},
                             "body": {"content": body, "contentType": "application/json", "encoded": false}}
            }]
        });
        PactDoc::parse(Path::new("p.json"), json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn nothing_breaks_when_the_new_pact_promises_more() {
        let old = pact(200, serde_json::json!({"id": 1, "items": [{"name": "a"}]}));
        let new = pact(200, serde_json::json!({"id": 1, "extra": true, "items": [{"name": "a", "sku": "x"}]}));
        assert_eq!(breaking_changes(&old, &new), vec![]);
    }

    #[test]
    fn a_removed_field_a_changed_type_and_a_changed_status_are_named() {
        let old = pact(200, serde_json::json!({"id": 1, "items": [{"name": "a", "stock": 3}]}));
        let new = pact(404, serde_json::json!({"id": "1", "items": [{"stock": 3}]}));
        let found: Vec<String> = breaking_changes(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("status 200 narrowed to 404"), "{found:?}");
        assert!(found.iter().any(|f| f.contains("$.id changed type from number to string")), "{found:?}");
        assert!(found.iter().any(|f| f.contains("$.items[*].name was removed")), "{found:?}");
    }

    fn message_pact(content: Value, metadata: Value) -> PactDoc {
        let json = serde_json::json!({
            "consumer": {"name": "mailer"}, "provider": {"name": "api"},
            "interactions": [{
                "type": "Asynchronous/Messages",
                "description": "an order was paid",
                "contents": {"content": content, "contentType": "application/json", "encoded": false},
                "metadata": metadata
            }]
        });
        PactDoc::parse(Path::new("m.json"), json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_message_that_loses_a_field_or_its_subject_is_named() {
        let old = message_pact(
            serde_json::json!({"user_id": "7", "total_minor": 3725}),
            serde_json::json!({"subject": "api.paid"}),
        );
        assert_eq!(breaking_changes(&old, &old), vec![]);
        let new = message_pact(serde_json::json!({"total_minor": "37.25"}), serde_json::json!({}));
        let found: Vec<String> = breaking_changes(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found.contains(&"\"an order was paid\": message metadata subject was removed".to_string()),
            "{found:?}"
        );
        assert!(found.contains(&"\"an order was paid\": message field $.user_id was removed".to_string()), "{found:?}");
        assert!(found.iter().any(|f| f.contains("message field $.total_minor changed type from number to string")));
    }

    #[test]
    fn a_removed_interaction_is_named() {
        let old = pact(200, serde_json::json!({}));
        let mut json = old.json.clone();
        json["interactions"] = serde_json::json!([]);
        let new = PactDoc::parse(Path::new("n.json"), json.to_string().as_bytes()).unwrap();
        assert_eq!(
            breaking_changes(&old, &new),
            vec![Breaking::InteractionRemoved { interaction: "get a product".into() }]
        );
    }
}
