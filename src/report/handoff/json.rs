//! The handoff model as JSON (`handoff --json`): the model's own fields,
//! pretty-printed, one newline at the end.

use super::model::Handoff;

/// The page as data.
pub fn to_json(h: &Handoff) -> String {
    serde_json::to_string_pretty(h).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::super::model::tests::sample;
    use super::*;

    #[test]
    fn the_document_is_the_model() {
        let text = to_json(&sample());
        assert!(text.ends_with("}\n"));
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["run_id"], 7);
        assert_eq!(doc["state"], "held");
        assert_eq!(doc["owners"][0]["secrets"][0]["name"], "TOKEN");
        assert_eq!(doc["blocked"][0]["id"], "deploy");
        assert_eq!(doc["blocked"][0]["hosts"][1], "w2");
        // A line about one step has no `step` nor `hosts`.
        assert!(doc["done"][0].get("hosts").is_none());
        assert_eq!(doc["counts"]["blocked"], 2);
    }
}
