//! Reading manifests for `-f`: files, directories (`-R` descends), `-` for stdin; YAML
//! streams split on `---` lines as kubectl's YAMLReader does, JSON streams, `kind: List`
//! expanded. A parse error names the file, the document (counted from 1 among the non-empty
//! ones), and the line and column within the whole file.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the path \"{0}\" does not exist")]
    Missing(String),
    #[error("reading \"{path}\": {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "error parsing {source_name}: document {document}, line {line}, column {column}: {message}"
    )]
    Syntax {
        source_name: String,
        document: usize,
        line: u64,
        column: u64,
        message: String,
    },
    #[error(
        "error validating \"{source_name}\": document {document} (line {line}): error validating data: [{}]",
        problems.join(", ")
    )]
    Invalid {
        source_name: String,
        document: usize,
        line: u64,
        problems: Vec<String>,
    },
    #[error("must specify one of -f and -k")]
    NoFiles,
}

/// One object from a manifest, with where it came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file as the user named it (`-` is `STDIN`).
    pub source: String,
    /// Which document of the file, counted from 1 among the non-empty ones.
    pub document: usize,
    pub object: Value,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"]
            .as_str()
            .filter(|ns| !ns.is_empty())
    }
}

/// Every manifest named by `-f` arguments, in order.
pub fn load(files: &[String], recursive: bool) -> Result<Vec<Manifest>, ManifestError> {
    if files.is_empty() {
        return Err(ManifestError::NoFiles);
    }
    let mut manifests = Vec::new();
    for file in files {
        if file == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| ManifestError::Read {
                    path: "STDIN".into(),
                    source,
                })?;
            manifests.extend(parse("STDIN", &text)?);
            continue;
        }
        for path in expand(Path::new(file), recursive, true)? {
            let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
                path: path.display().to_string(),
                source,
            })?;
            manifests.extend(parse(&path.display().to_string(), &text)?);
        }
    }
    Ok(manifests)
}

/// A path to the files it stands for: itself, or a directory's `.yaml`, `.yml` and `.json`
/// files in name order (subdirectories too with `-R`), as kubectl's visitor does.
fn expand(path: &Path, recursive: bool, top: bool) -> Result<Vec<PathBuf>, ManifestError> {
    let meta =
        std::fs::metadata(path).map_err(|_| ManifestError::Missing(path.display().to_string()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !top && !recursive {
        return Ok(Vec::new());
    }
    let read_err = |source| ManifestError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut entries = std::fs::read_dir(path)
        .map_err(read_err)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            files.extend(expand(&entry, recursive, false)?);
        } else if entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(entry);
        }
    }
    Ok(files)
}

/// The objects of one file's text.
pub fn parse(source_name: &str, text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let trimmed = text.trim_start();
    let documents = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        parse_json_stream(source_name, text)?
    } else {
        parse_yaml_stream(source_name, text)?
    };
    let mut manifests = Vec::new();
    for (document, first_line, object) in documents {
        if object.is_null() {
            continue;
        }
        for object in expand_list(object) {
            validate(source_name, document, first_line, &object)?;
            manifests.push(Manifest {
                source: source_name.to_string(),
                document,
                object,
            });
        }
    }
    Ok(manifests)
}

/// (document number, its first line, its value) for each non-empty document.
type Documents = Vec<(usize, u64, Value)>;

fn parse_yaml_stream(source_name: &str, text: &str) -> Result<Documents, ManifestError> {
    let mut documents = Vec::new();
    for (first_line, body) in split_yaml_documents(text) {
        if body
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let document = documents.len() + 1;
        let value: Value = serde_saphyr::from_str(&body).map_err(|err| {
            let (line, column) = err
                .location()
                .map(|l| (l.line() + first_line - 1, l.column()))
                .unwrap_or((first_line, 1));
            ManifestError::Syntax {
                source_name: source_name.to_string(),
                document,
                line,
                column,
                message: bare_message(&err),
            }
        })?;
        documents.push((document, first_line, value));
    }
    Ok(documents)
}

/// serde-saphyr's message without its own position (ours is relative to the whole file)
/// or source snippet.
fn bare_message(err: &serde_saphyr::Error) -> String {
    let rendered = err.to_string();
    let first = rendered.lines().next().unwrap_or_default().trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // `line 5 column 10: mapping values are not allowed in this context`
    let without_position = match first
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((_, message)) => message,
        None => first,
    };
    without_position.trim().to_string()
}

/// Documents split at lines starting with `---`, each with the number of its first line.
pub fn split_yaml_documents(text: &str) -> Vec<(u64, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    for (index, line) in text.lines().enumerate() {
        let line_number = index as u64 + 1;
        let separator = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t'));
        if separator {
            documents.push((first_line, std::mem::take(&mut current)));
            first_line = line_number + 1;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    documents.push((first_line, current));
    documents
}

fn parse_json_stream(source_name: &str, text: &str) -> Result<Documents, ManifestError> {
    let mut documents = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        let Some(next) = stream.next() else { break };
        let document = documents.len() + 1;
        match next {
            Ok(value) => {
                let first_line = line_of(text, start);
                documents.push((document, first_line, value));
            }
            Err(err) => {
                return Err(ManifestError::Syntax {
                    source_name: source_name.to_string(),
                    document,
                    line: err.line() as u64,
                    column: err.column() as u64,
                    message: strip_json_position(&err.to_string()),
                });
            }
        }
    }
    Ok(documents)
}

/// The line of the first non-blank character at or after `offset`.
fn line_of(text: &str, offset: usize) -> u64 {
    let skipped = text[offset..].len() - text[offset..].trim_start().len();
    text[..offset + skipped].matches('\n').count() as u64 + 1
}

fn strip_json_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// `kind: List` (and `*List` kinds) stand for their items.
fn expand_list(object: Value) -> Vec<Value> {
    let is_list = object["kind"]
        .as_str()
        .is_some_and(|k| k == "List" || (k.ends_with("List") && object["items"].is_array()));
    match object {
        Value::Object(mut map) if is_list => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        other => vec![other],
    }
}

fn validate(
    source_name: &str,
    document: usize,
    line: u64,
    object: &Value,
) -> Result<(), ManifestError> {
    let mut problems = Vec::new();
    if !object.is_object() {
        problems.push(format!(
            "expected an object, found {}",
            match object {
                Value::Array(_) => "a sequence",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "something else",
            }
        ));
    } else {
        if object["apiVersion"].as_str().is_none_or(str::is_empty) {
            problems.push("apiVersion not set".to_string());
        }
        if object["kind"].as_str().is_none_or(str::is_empty) {
            problems.push("kind not set".to_string());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ManifestError::Invalid {
            source_name: source_name.to_string(),
            document,
            line,
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_separator_lines_only() {
        let docs = split_yaml_documents("a: 1\n---\nb: '---'\n--- # c\nc: 3\n----x: 4\n");
        let bodies: Vec<_> = docs.iter().map(|(l, b)| (*l, b.as_str())).collect();
        assert_eq!(
            bodies,
            vec![(1, "a: 1\n"), (3, "b: '---'\n"), (5, "c: 3\n----x: 4\n")]
        );
    }

    #[test]
    fn numbers_non_empty_documents_and_expands_lists() {
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: c\n";
        let manifests = parse("m.yaml", text).unwrap();
        let seen: Vec<_> = manifests
            .iter()
            .map(|m| (m.document, m.kind(), m.name()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, "ConfigMap", "a"),
                (1, "ConfigMap", "b"),
                (2, "Namespace", "c")
            ]
        );
    }

    #[test]
    fn a_yaml_error_names_file_document_line_and_column() {
        // The second document's `image` line is indented wrongly: line 9 of the file.
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n   labels: x\n";
        let err = parse("bad.yaml", text).unwrap_err();
        let ManifestError::Syntax {
            source_name,
            document,
            line,
            column,
            message,
        } = &err
        else {
            panic!("not a syntax error: {err:?}");
        };
        assert_eq!(source_name, "bad.yaml");
        assert_eq!(*document, 2);
        assert_eq!((*line, *column), (10, 10), "{err}");
        assert!(
            !message.is_empty() && !message.contains("line"),
            "{message}"
        );
        assert!(
            err.to_string()
                .starts_with("error parsing bad.yaml: document 2, line 10, column 10: "),
            "{err}"
        );
    }

    #[test]
    fn a_json_stream_error_has_its_position() {
        let text = "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n{\"apiVersion\": \"v1\",\n \"kind\": }\n";
        let err = parse("s.json", text).unwrap_err();
        assert!(
            matches!(
                err,
                ManifestError::Syntax {
                    document: 2,
                    line: 3,
                    column: 10,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn missing_kind_and_api_version_are_reported_with_the_document() {
        let err = parse("x.yaml", "a: 1\n---\nmetadata:\n  name: x\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error validating \"x.yaml\": document 1 (line 1): error validating data: [apiVersion not set, kind not set]"
        );
    }
}
