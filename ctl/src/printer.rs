//! kubectl's human-readable printer: the server's `meta.k8s.io/v1` Table laid out with the
//! tab writer kubectl uses (minimum cell width 6, padding 3, the last column unpadded),
//! upper-case headers, priority columns only with `-o wide`, a NAMESPACE column with `-A`
//! and `kind/name` names when several types are printed.

use serde_json::Value;

/// One column of a server Table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub priority: i64,
}

/// A server Table: its columns and, per row, the cells and the row's object metadata.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    pub resource_version: String,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub cells: Vec<Value>,
    pub namespace: Option<String>,
    pub name: String,
}

impl Table {
    /// Decodes the server's Table JSON.
    pub fn from_json(table: &Value) -> Table {
        let columns = table["columnDefinitions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|c| Column {
                name: c["name"].as_str().unwrap_or_default().to_string(),
                priority: c["priority"].as_i64().unwrap_or(0),
            })
            .collect();
        let rows = table["rows"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let meta = &r["object"]["metadata"];
                Row {
                    cells: r["cells"].as_array().cloned().unwrap_or_default(),
                    namespace: meta["namespace"].as_str().map(str::to_string),
                    name: meta["name"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect();
        Table {
            columns,
            rows,
            resource_version: table["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PrintOptions {
    pub wide: bool,
    pub with_namespace: bool,
    /// `pod`, `deployment.apps`: names print as `kind/name` (several types at once).
    pub kind_prefix: Option<String>,
    pub no_headers: bool,
}

/// The header and rows of a Table as text cells, ready for [`tabwrite`].
pub fn table_lines(table: &Table, options: &PrintOptions) -> Vec<Vec<String>> {
    let shown: Vec<usize> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| options.wide || c.priority == 0)
        .map(|(i, _)| i)
        .collect();
    let mut lines = Vec::new();
    if !options.no_headers {
        let mut header = Vec::new();
        if options.with_namespace {
            header.push("NAMESPACE".to_string());
        }
        header.extend(shown.iter().map(|&i| table.columns[i].name.to_uppercase()));
        lines.push(header);
    }
    for row in &table.rows {
        let mut line = Vec::new();
        if options.with_namespace {
            line.push(row.namespace.clone().unwrap_or_default());
        }
        for &i in &shown {
            let mut text = row.cells.get(i).map(cell_text).unwrap_or_default();
            if i == 0
                && let Some(prefix) = &options.kind_prefix
            {
                text = format!("{prefix}/{text}");
            }
            line.push(text);
        }
        lines.push(line);
    }
    lines
}

/// A cell as kubectl prints it (Go's `fmt.Fprint` of the decoded JSON value).
pub fn cell_text(cell: &Value) -> String {
    match cell {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Go's `text/tabwriter` as kubectl's printers configure it (minwidth 6, padding 3,
/// spaces).
pub fn tabwrite(lines: &[Vec<String>]) -> String {
    tabwrite_with(lines, 6, 3)
}

/// [`tabwrite`] for tables printed piece by piece (`get -w`): the column widths of earlier
/// pieces are remembered and only grow, as in kubectl's fork of the tab writer.
pub fn tabwrite_remembering(lines: &[Vec<String>], widths: &mut Vec<usize>) -> String {
    const MIN_WIDTH: usize = 6;
    const PADDING: usize = 3;
    for line in lines {
        let cells = line.len().saturating_sub(1);
        if widths.len() < cells {
            widths.resize(cells, MIN_WIDTH);
        }
        for (i, cell) in line.iter().take(cells).enumerate() {
            widths[i] = widths[i].max(cell.chars().count() + PADDING);
        }
    }
    let mut out = String::new();
    for line in lines {
        for (i, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < line.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// [`tabwrite`] with another minimum width and padding (kubectl's describers and
/// `rollout history` use 0 and 2).
pub fn tabwrite_with(lines: &[Vec<String>], min_width: usize, padding: usize) -> String {
    let text: String = lines
        .iter()
        .map(|cells| format!("{}\n", cells.join("\t")))
        .collect();
    tabwriter(&text, min_width, padding)
}

/// Go's `text/tabwriter` (left-aligned, space padding, no flags) over `text`: a cell is
/// text ended by a tab; consecutive lines having a cell in a column form a block whose cells
/// are padded to the block's widest cell plus `padding` (at least `min_width`); the text
/// after a line's last tab is not a cell and is never padded.
pub fn tabwriter(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_inclusive('\n')
        .map(|l| l.strip_suffix('\n').unwrap_or(l).split('\t').collect())
        .collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut widths = Vec::new();
    format_block(
        &lines,
        0,
        lines.len(),
        &mut widths,
        min_width,
        padding,
        &mut out,
    );
    // split_inclusive keeps a last line without a newline; the writer adds newlines per line.
    if !text.ends_with('\n') && out.ends_with('\n') {
        out.pop();
    }
    out
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    min_width: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = min_width;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, min_width, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(width) = widths.get(j) {
                let pad = width.saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods_table() -> Table {
        Table::from_json(&json!({
            "kind": "Table",
            "metadata": {"resourceVersion": "7"},
            "columnDefinitions": [
                {"name": "Name", "priority": 0},
                {"name": "Ready", "priority": 0},
                {"name": "Restarts", "priority": 0},
                {"name": "Nominated Node", "priority": 1},
            ],
            "rows": [
                {"cells": ["web-1", "1/1", 0, "<none>"], "object": {"metadata": {"name": "web-1", "namespace": "shop"}}},
                {"cells": ["a-very-long-pod-name", "0/1", 12, "<none>"], "object": {"metadata": {"name": "a-very-long-pod-name", "namespace": "default"}}},
            ]
        }))
    }

    #[test]
    fn prints_like_kubectl() {
        let table = pods_table();
        assert_eq!(table.resource_version, "7");
        let text = tabwrite(&table_lines(&table, &PrintOptions::default()));
        assert_eq!(
            text,
            "NAME                   READY   RESTARTS\n\
             web-1                  1/1     0\n\
             a-very-long-pod-name   0/1     12\n"
        );
    }

    #[test]
    fn tabwriter_blocks_like_go() {
        // Lines without a cell in a column end that column's block (kubectl's describers).
        let text = "Name:\tweb\nNamespace:\tshop\nPod Template:\n  Labels:\tapp=web\n  Containers:\n   web:\n    Image:\tbusybox\n    Host Port:\t<none>\n";
        assert_eq!(
            tabwriter(text, 0, 2),
            "Name:       web\nNamespace:  shop\nPod Template:\n  Labels:  app=web\n  Containers:\n   web:\n    Image:      busybox\n    Host Port:  <none>\n"
        );
        // A column of a deeper block is aligned only among the lines that have it.
        assert_eq!(
            tabwriter("a\tb\tc\naaaa\tb\nx\tyyyy\tz\n", 0, 1),
            "a    b c\naaaa b\nx    yyyy z\n"
        );
    }

    #[test]
    fn remembered_widths_only_grow() {
        let mut widths = Vec::new();
        let first = tabwrite_remembering(
            &[
                vec!["NAME".into(), "DATA".into(), "AGE".into()],
                vec!["settings".into(), "1".into(), "5m".into()],
            ],
            &mut widths,
        );
        assert_eq!(first, "NAME       DATA   AGE\nsettings   1      5m\n");
        let next = tabwrite_remembering(&[vec!["w".into(), "1".into(), "0s".into()]], &mut widths);
        assert_eq!(next, "w          1      0s\n");
        let longer = tabwrite_remembering(
            &[vec!["a-much-longer-name".into(), "1".into(), "0s".into()]],
            &mut widths,
        );
        assert_eq!(longer, "a-much-longer-name   1      0s\n");
    }

    #[test]
    fn wide_namespaced_and_kind_prefixed() {
        let options = PrintOptions {
            wide: true,
            with_namespace: true,
            kind_prefix: Some("pod".into()),
            no_headers: false,
        };
        let text = tabwrite(&table_lines(&pods_table(), &options));
        assert_eq!(
            text,
            "NAMESPACE   NAME                       READY   RESTARTS   NOMINATED NODE\n\
             shop        pod/web-1                  1/1     0          <none>\n\
             default     pod/a-very-long-pod-name   0/1     12         <none>\n"
        );
    }
}
