//! Text forms shared by errors and jsonb: PostgreSQL's jsonb output format and a plain
//! rendering of values for DETAIL lines.

use datafusion::common::ScalarValue;

/// jsonb's canonical text: object keys ordered by length then bytes, `", "` and `": "`
/// separators, as PostgreSQL prints it.
pub fn to_pg_text(v: &serde_json::Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then(a.cmp(b)));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::Value::String((*k).clone()).to_string());
                out.push_str(": ");
                write(&map[*k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A value as it appears in a DETAIL line such as `Key (id)=(1) already exists.`
pub fn display_scalar(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(Some(s)) => s.clone(),
        v if v.is_null() => "null".into(),
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonb_text_is_canonical() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"bb":1,"a":[1,{"c":null}],"ab":"x"}"#).unwrap();
        assert_eq!(
            to_pg_text(&v),
            r#"{"a": [1, {"c": null}], "ab": "x", "bb": 1}"#
        );
    }
}
