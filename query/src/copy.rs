//! COPY: bulk load from the client (`COPY t FROM STDIN`) and bulk unload to it
//! (`COPY t TO STDOUT`, `COPY (query) TO STDOUT`) in PostgreSQL's text and CSV formats.
//!
//! ## Model
//!
//! - A COPY FROM runs in the session's transaction, or in one of its own when none is
//!   open: either every row of it commits or none does.
//! - Data arrives in chunks that cut lines anywhere; a row ends at a newline (in CSV,
//!   one outside quotes). A line holding only `\.` ends the data; what follows it is
//!   ignored, as PostgreSQL does.
//! - Rows are converted in batches through the same assignment casts, defaults and
//!   checks as INSERT. The first bad row ends the COPY with its error and the line
//!   number (`COPY t, line n`); the rest of the data is read and dropped until the
//!   client ends the COPY, and the transaction fails.
//! - Text format: fields split by the delimiter (tab), `\N` is NULL, backslash escapes
//!   (`\t`, `\n`, `\\`, octal, `\x` hex) decode. CSV: fields split by the delimiter
//!   (comma), double quotes around fields (a doubled quote inside), an unquoted empty
//!   field is NULL; `HEADER` skips the first line.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast;

use crate::catalog::TableDesc;
use crate::error::{Error, Result, SqlState};

/// Rows converted and written at a time.
pub(crate) const BATCH_ROWS: usize = 4096;

/// How COPY data is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyFormat {
    /// CSV (else text).
    pub csv: bool,
    /// Field separator.
    pub delimiter: u8,
    /// The string that stands for NULL.
    pub null: String,
    /// Whether the first line is a header (CSV only).
    pub header: bool,
    /// CSV quote character.
    pub quote: u8,
    /// CSV escape character (inside quotes).
    pub escape: u8,
}

impl CopyFormat {
    /// The format a COPY statement's options ask for.
    pub(crate) fn from_options(
        options: &[ast::CopyOption],
        legacy: &[ast::CopyLegacyOption],
    ) -> Result<CopyFormat> {
        let mut csv = false;
        let mut delimiter = None;
        let mut null = None;
        let mut header = false;
        let mut quote = None;
        let mut escape = None;
        let one_byte = |c: char, what: &str| -> Result<u8> {
            if c.is_ascii() {
                Ok(c as u8)
            } else {
                Err(Error::unsupported(format!(
                    "COPY {what} must be a single one-byte character"
                )))
            }
        };
        for o in options {
            match o {
                ast::CopyOption::Format(f) => match f.value.to_lowercase().as_str() {
                    "text" => csv = false,
                    "csv" => csv = true,
                    "binary" => return Err(Error::unsupported("COPY in binary format")),
                    other => {
                        return Err(Error::new(
                            SqlState::InvalidParameterValue,
                            format!("COPY format \"{other}\" not recognized"),
                        ))
                    }
                },
                // Rows are written by a normal transaction either way.
                ast::CopyOption::Freeze(_) => {}
                ast::CopyOption::Delimiter(c) => delimiter = Some(one_byte(*c, "delimiter")?),
                ast::CopyOption::Null(s) => null = Some(s.clone()),
                ast::CopyOption::Header(h) => header = *h,
                ast::CopyOption::Quote(c) => quote = Some(one_byte(*c, "quote")?),
                ast::CopyOption::Escape(c) => escape = Some(one_byte(*c, "escape")?),
                ast::CopyOption::Encoding(e) => {
                    let e = e.to_uppercase().replace(['-', '_'], "");
                    if e != "UTF8" {
                        return Err(Error::unsupported(format!("COPY with ENCODING {e}")));
                    }
                }
                other => return Err(Error::unsupported(format!("COPY option {other}"))),
            }
        }
        for o in legacy {
            match o {
                ast::CopyLegacyOption::Binary => {
                    return Err(Error::unsupported("COPY in binary format"))
                }
                ast::CopyLegacyOption::Delimiter(c) => delimiter = Some(one_byte(*c, "delimiter")?),
                ast::CopyLegacyOption::Null(s) => null = Some(s.clone()),
                ast::CopyLegacyOption::Header => header = true,
                ast::CopyLegacyOption::Csv(opts) => {
                    csv = true;
                    for c in opts {
                        match c {
                            ast::CopyLegacyCsvOption::Header => header = true,
                            ast::CopyLegacyCsvOption::Quote(q) => {
                                quote = Some(one_byte(*q, "quote")?)
                            }
                            ast::CopyLegacyCsvOption::Escape(e) => {
                                escape = Some(one_byte(*e, "escape")?)
                            }
                            other => {
                                return Err(Error::unsupported(format!("COPY option {other}")))
                            }
                        }
                    }
                }
                other => return Err(Error::unsupported(format!("COPY option {other}"))),
            }
        }
        if header && !csv {
            return Err(Error::new(
                SqlState::FeatureNotSupported,
                "COPY HEADER available only in CSV mode",
            ));
        }
        let quote = quote.unwrap_or(b'"');
        Ok(CopyFormat {
            csv,
            delimiter: delimiter.unwrap_or(if csv { b',' } else { b'\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape.unwrap_or(quote),
        })
    }

    /// One row as a line of COPY output (with its newline). `None` is NULL.
    pub fn encode_row(&self, values: &[Option<String>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            match v {
                None => out.extend_from_slice(self.null.as_bytes()),
                Some(s) if self.csv => {
                    let needs_quotes = s.is_empty() && self.null.is_empty()
                        || s == &self.null
                        || s == "\\."
                        || s.bytes().any(|b| {
                            b == self.delimiter
                                || b == self.quote
                                || b == self.escape
                                || b == b'\n'
                                || b == b'\r'
                        });
                    if needs_quotes {
                        out.push(self.quote);
                        for b in s.bytes() {
                            if b == self.quote || b == self.escape {
                                out.push(self.escape);
                            }
                            out.push(b);
                        }
                        out.push(self.quote);
                    } else {
                        out.extend_from_slice(s.as_bytes());
                    }
                }
                Some(s) => {
                    for b in s.bytes() {
                        match b {
                            b'\\' => out.extend_from_slice(b"\\\\"),
                            b'\n' => out.extend_from_slice(b"\\n"),
                            b'\r' => out.extend_from_slice(b"\\r"),
                            b'\t' => out.extend_from_slice(b"\\t"),
                            8 => out.extend_from_slice(b"\\b"),
                            12 => out.extend_from_slice(b"\\f"),
                            11 => out.extend_from_slice(b"\\v"),
                            b if b == self.delimiter => {
                                out.push(b'\\');
                                out.push(b);
                            }
                            b => out.push(b),
                        }
                    }
                }
            }
        }
        out.push(b'\n');
        out
    }

    /// The fields of one text-format line (without its newline).
    fn text_fields(&self, line: &[u8]) -> std::result::Result<Vec<Option<String>>, String> {
        let mut fields = Vec::new();
        let mut raw_start = 0;
        let mut cur: Vec<u8> = Vec::new();
        let mut i = 0;
        let finish =
            |cur: &mut Vec<u8>, raw: &[u8]| -> std::result::Result<Option<String>, String> {
                if raw == self.null.as_bytes() {
                    cur.clear();
                    return Ok(None);
                }
                String::from_utf8(std::mem::take(cur))
                    .map(Some)
                    .map_err(|_| "invalid byte sequence for encoding \"UTF8\"".to_string())
            };
        while i < line.len() {
            let b = line[i];
            if b == self.delimiter {
                fields.push(finish(&mut cur, &line[raw_start..i])?);
                i += 1;
                raw_start = i;
                continue;
            }
            if b != b'\\' || i + 1 >= line.len() {
                cur.push(b);
                i += 1;
                continue;
            }
            let c = line[i + 1];
            i += 2;
            match c {
                b'b' => cur.push(8),
                b'f' => cur.push(12),
                b'n' => cur.push(b'\n'),
                b'r' => cur.push(b'\r'),
                b't' => cur.push(b'\t'),
                b'v' => cur.push(11),
                b'0'..=b'7' => {
                    let mut v = (c - b'0') as u32;
                    for _ in 0..2 {
                        match line.get(i) {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + (d - b'0') as u32;
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    cur.push(v as u8);
                }
                b'x' if line.get(i).is_some_and(|d| d.is_ascii_hexdigit()) => {
                    let mut v = 0u32;
                    for _ in 0..2 {
                        match line.get(i) {
                            Some(d) if d.is_ascii_hexdigit() => {
                                v = v * 16 + (*d as char).to_digit(16).expect("hex");
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    cur.push(v as u8);
                }
                other => cur.push(other),
            }
        }
        fields.push(finish(&mut cur, &line[raw_start..])?);
        Ok(fields)
    }

    /// The fields of one CSV record (without its final newline).
    fn csv_fields(&self, record: &[u8]) -> std::result::Result<Vec<Option<String>>, String> {
        let mut fields = Vec::new();
        let mut cur = Vec::new();
        let mut quoted = false;
        let mut in_quotes = false;
        let mut i = 0;
        let text = |cur: Vec<u8>| {
            String::from_utf8(cur)
                .map_err(|_| "invalid byte sequence for encoding \"UTF8\"".to_string())
        };
        while i < record.len() {
            let b = record[i];
            if in_quotes {
                if b == self.escape && record.get(i + 1) == Some(&self.quote) {
                    cur.push(self.quote);
                    i += 2;
                    continue;
                }
                if b == self.quote {
                    in_quotes = false;
                } else {
                    cur.push(b);
                }
                i += 1;
                continue;
            }
            if b == self.quote {
                in_quotes = true;
                quoted = true;
            } else if b == self.delimiter {
                let raw = std::mem::take(&mut cur);
                fields.push(if !quoted && raw == self.null.as_bytes() {
                    None
                } else {
                    Some(text(raw)?)
                });
                quoted = false;
            } else {
                cur.push(b);
            }
            i += 1;
        }
        if in_quotes {
            return Err("unterminated CSV quoted field".into());
        }
        fields.push(if !quoted && cur == self.null.as_bytes() {
            None
        } else {
            Some(text(cur)?)
        });
        Ok(fields)
    }

    /// Whether a CSV record is still open at the end of `record` (an odd quote).
    fn csv_open(&self, record: &[u8]) -> bool {
        let mut in_quotes = false;
        let mut i = 0;
        while i < record.len() {
            let b = record[i];
            if in_quotes && b == self.escape && record.get(i + 1) == Some(&self.quote) {
                i += 2;
                continue;
            }
            if b == self.quote {
                in_quotes = !in_quotes;
            }
            i += 1;
        }
        in_quotes
    }
}

/// A COPY FROM STDIN in progress: what it loads and the data not yet cut into rows.
#[derive(Debug)]
pub(crate) struct CopyIn {
    pub table: Arc<TableDesc>,
    /// Positions of the columns the data holds, in order.
    pub targets: Vec<usize>,
    pub format: CopyFormat,
    /// Bytes received after the last complete row.
    pending: Vec<u8>,
    /// Rows cut but not written yet, with their line numbers.
    pub rows: Vec<(u64, Vec<Option<String>>)>,
    /// Lines consumed so far.
    line: u64,
    /// The end marker was seen: later data is ignored.
    ended: bool,
    /// The first error: the COPY fails at its end.
    pub error: Option<Error>,
    /// Rows written.
    pub written: u64,
    /// The COPY runs in a transaction of its own.
    pub implicit: bool,
}

impl CopyIn {
    pub(crate) fn new(
        table: Arc<TableDesc>,
        targets: Vec<usize>,
        format: CopyFormat,
        implicit: bool,
    ) -> Self {
        CopyIn {
            table,
            targets,
            format,
            pending: Vec::new(),
            rows: Vec::new(),
            line: 0,
            ended: false,
            error: None,
            written: 0,
            implicit,
        }
    }

    /// The error for a bad line, in PostgreSQL's words.
    pub(crate) fn line_error(&self, line: u64, e: Error) -> Error {
        let context = format!("COPY {}, line {line}", self.table.name);
        let mut e = e.with_table(&self.table.name);
        e.extra.detail = Some(match e.extra.detail.take() {
            Some(d) => format!("{d} ({context})"),
            None => context,
        });
        e
    }

    /// Take in a chunk of data, cutting every complete row out of it.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        if self.ended || self.error.is_some() {
            return;
        }
        self.pending.extend_from_slice(data);
        let mut start = 0;
        let mut search = 0;
        while let Some(nl) = self.pending[search..].iter().position(|b| *b == b'\n') {
            let end = search + nl;
            let record = &self.pending[start..end];
            if self.format.csv && self.format.csv_open(record) {
                // A newline inside quotes belongs to the field.
                search = end + 1;
                continue;
            }
            let record = record.strip_suffix(b"\r").unwrap_or(record).to_vec();
            start = end + 1;
            search = start;
            if !self.take_record(&record) {
                self.pending.clear();
                return;
            }
        }
        self.pending.drain(..start);
    }

    /// Handle one record; `false` once no more data is wanted.
    fn take_record(&mut self, record: &[u8]) -> bool {
        self.line += 1 + record.iter().filter(|b| **b == b'\n').count() as u64;
        if record == b"\\." {
            self.ended = true;
            return false;
        }
        if self.format.header && self.line == 1 {
            return true;
        }
        let fields = if self.format.csv {
            self.format.csv_fields(record)
        } else {
            self.format.text_fields(record)
        };
        let line = self.line;
        match fields {
            Ok(f) if f.len() == self.targets.len() => {
                self.rows.push((line, f));
                true
            }
            Ok(f) => {
                let msg = if f.len() > self.targets.len() {
                    "extra data after last expected column".to_string()
                } else {
                    let missing = &self.table.columns[self.targets[f.len()]].name;
                    format!("missing data for column \"{missing}\"")
                };
                let e = Error::new(SqlState::BadCopyFileFormat, msg);
                self.error = Some(self.line_error(line, e));
                false
            }
            Err(msg) => {
                let state = if msg.contains("UTF8") {
                    SqlState::CharacterNotInRepertoire
                } else {
                    SqlState::BadCopyFileFormat
                };
                self.error = Some(self.line_error(line, Error::new(state, msg)));
                false
            }
        }
    }

    /// The end of the data: a last line without its newline counts.
    pub(crate) fn finish_input(&mut self) {
        if !self.ended && self.error.is_none() && !self.pending.is_empty() {
            let mut rest = std::mem::take(&mut self.pending);
            if rest.ends_with(b"\r") {
                rest.pop();
            }
            self.take_record(&rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> CopyFormat {
        CopyFormat::from_options(&[], &[]).unwrap()
    }

    fn csv() -> CopyFormat {
        CopyFormat::from_options(&[ast::CopyOption::Format(ast::Ident::new("csv"))], &[]).unwrap()
    }

    #[test]
    fn text_fields_decode_escapes_and_nulls() {
        let f = text();
        let got = f.text_fields(b"1\ta\\tb\\\\c\t\\N\t\\101\\x41\t").unwrap();
        assert_eq!(
            got,
            vec![
                Some("1".into()),
                Some("a\tb\\c".into()),
                None,
                Some("AA".into()),
                Some("".into())
            ]
        );
        let row = vec![Some("a\tb\\c\nd".to_string()), None, Some(String::new())];
        let line = f.encode_row(&row);
        assert_eq!(line, b"a\\tb\\\\c\\nd\t\\N\t\n");
        assert_eq!(f.text_fields(&line[..line.len() - 1]).unwrap(), row);
    }

    #[test]
    fn csv_fields_handle_quotes_and_empty_versus_null() {
        let f = csv();
        let got = f.csv_fields(b"1,\"a,b\",,\"\",\"say \"\"hi\"\"\"").unwrap();
        assert_eq!(
            got,
            vec![
                Some("1".into()),
                Some("a,b".into()),
                None,
                Some("".into()),
                Some("say \"hi\"".into())
            ]
        );
        let row = vec![Some("x,\"y\"".to_string()), None, Some(String::new())];
        let line = f.encode_row(&row);
        assert_eq!(line, b"\"x,\"\"y\"\"\",,\"\"\n");
        assert_eq!(f.csv_fields(&line[..line.len() - 1]).unwrap(), row);
        assert!(f.csv_open(b"1,\"open"));
        assert!(!f.csv_open(b"1,\"closed\""));
    }
}
