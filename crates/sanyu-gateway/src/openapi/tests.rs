use super::*;

#[test]
fn every_secured_operation_documents_401_and_strings_have_the_input_rules() {
    let doc = document();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            if op.get("security").is_some() {
                assert!(
                    op["responses"].get("401").is_some(),
                    "{method} {path} lacks 401"
                );
            }
        }
    }
    let report = &doc["components"]["schemas"]["ReportRequest"];
    assert_eq!(report["properties"]["student_no"]["maxLength"], MAX_CODE);
    assert!(
        report["required"]
            .as_array()
            .expect("required")
            .contains(&json!("narrative"))
    );
    let note = &doc["components"]["schemas"]["NoteRequest"]["properties"]["text"];
    assert_eq!(note["pattern"], TEXT_NONEMPTY);
}

#[test]
fn case_work_answers_are_documented_with_the_case_work_state() {
    let doc = document();
    let ack = &doc["paths"]["/v1/cases/{id}/acknowledge"]["post"]["responses"]["200"];
    let schema = ack["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .expect("ref");
    let name = schema.trim_start_matches("#/components/schemas/");
    let props = &doc["components"]["schemas"][name]["properties"];
    assert!(
        props.get("allowed_actions").is_some(),
        "{name} is not the case-work state"
    );
}

/// utoipa names a schema after its type and keeps the last of two types
/// with one name: the other's answers are then documented wrongly (two
/// `CaseState`s, two `Counts` once). Every schema type has its own name.
#[test]
fn no_two_schema_types_share_a_name() {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    files(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut paths,
    );
    let mut seen = std::collections::BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("source");
        let mut schema_derive = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("#[derive(") {
                schema_derive = line.contains("ToSchema");
                continue;
            }
            if line.starts_with("#[schema(as") {
                schema_derive = false;
            }
            if line.starts_with("#[") || line.starts_with("///") {
                continue;
            }
            if schema_derive {
                let name = line
                    .strip_prefix("pub struct ")
                    .or_else(|| line.strip_prefix("pub enum "))
                    .or_else(|| line.strip_prefix("struct "))
                    .or_else(|| line.strip_prefix("enum "))
                    .and_then(|rest| rest.split([' ', '{', '(', '<', ';']).next());
                if let Some(name) = name
                    && let Some(other) = seen.insert(name.to_string(), path.clone())
                {
                    panic!(
                        "schema `{name}` in {} and {}",
                        other.display(),
                        path.display()
                    );
                }
            }
            schema_derive = false;
        }
    }
    assert!(seen.contains_key("CaseView"), "the scan found the schemas");
}
