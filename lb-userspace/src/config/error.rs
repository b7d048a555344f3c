//! Config errors that point at the file, line, column and field at fault.

use std::{ops::Range, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {message}", file.display())]
    Io { file: PathBuf, message: String },
    /// Command-line flags that contradict each other or the file.
    #[error("command line: {message}")]
    Flags { message: String },
    #[error("{}:{line}:{column}: {}{message}", file.display(), field_prefix(field))]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        /// Dotted path of the field, e.g. `origins[1].address`; empty for syntax errors.
        field: String,
        message: String,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl ConfigError {
    /// An error at byte range `span` of `text`, reported as 1-based line and column.
    pub(crate) fn at(
        file: &std::path::Path,
        text: &str,
        span: Range<usize>,
        field: String,
        message: String,
    ) -> Self {
        let (line, column) = line_column(text, span.start);
        Self::Invalid {
            file: file.to_owned(),
            line,
            column,
            field,
            message,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_column_is_one_based() {
        assert_eq!(super::line_column("ab\ncd", 0), (1, 1));
        assert_eq!(super::line_column("ab\ncd", 4), (2, 2));
        assert_eq!(super::line_column("ab\ncd", 99), (2, 3));
    }
}
