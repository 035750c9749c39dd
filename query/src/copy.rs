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

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::sql::sqlparser::ast::Statement;
use tessera_cluster::TxnOptions;

use crate::assign::cast_column;
use crate::catalog::{Catalog, TableDesc};
use crate::error::{Error, Result, SqlState};
use crate::session::{parse, Output, Session, TxnState};

const COPY_SOURCE: &str = "__tessera_copy";

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

/// The COPY statements of a session.
impl Session {
    /// Start a COPY FROM STDIN: in the open transaction, or in one of its own.
    pub(crate) fn copy_from(&mut self, stmt: &Statement) -> Result<Output> {
        let Statement::Copy {
            source,
            options,
            legacy_options,
            ..
        } = stmt
        else {
            return Err(Error::internal("not a COPY"));
        };
        if self.state == TxnState::Failed {
            return Err(Error::in_failed_transaction());
        }
        let ast::CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return Err(Error::new(
                SqlState::SyntaxError,
                "COPY FROM needs a table, not a query",
            ));
        };
        let format = crate::copy::CopyFormat::from_options(options, legacy_options)?;
        let implicit = self.state == TxnState::Idle;
        if implicit {
            self.slot.set(self.node.db.begin(TxnOptions::default()));
        }
        let started = (|| {
            let catalog = self.sync_catalog()?;
            let t = catalog.table(&crate::dml::object_name(table_name))?.clone();
            let names: Vec<String> = columns.iter().map(crate::dml::ident).collect();
            let targets = crate::dml::column_positions(&t, &names)?;
            Ok((t, targets))
        })();
        let (t, targets) = match started {
            Ok(x) => x,
            Err(e) => {
                self.copy_failed(implicit);
                return Err(e);
            }
        };
        let columns = targets.len();
        self.copy = Some(crate::copy::CopyIn::new(t, targets, format, implicit));
        Ok(Output::CopyIn { columns })
    }

    /// A failed COPY FROM: its own transaction is rolled back, an explicit one fails.
    fn copy_failed(&mut self, implicit: bool) {
        self.copy = None;
        if implicit {
            self.end_txn();
        } else {
            self.state = TxnState::Failed;
        }
    }

    /// Data of the COPY FROM in progress. Errors are kept for [`Session::copy_done`].
    pub async fn copy_data(&mut self, data: &[u8]) {
        let Some(copy) = self.copy.as_mut() else {
            return;
        };
        copy.feed(data);
        if copy.rows.len() >= crate::copy::BATCH_ROWS {
            self.write_copy_rows().await;
        }
    }

    async fn write_copy_rows(&mut self) {
        let Some(mut copy) = self.copy.take() else {
            return;
        };
        if copy.error.is_none() && !copy.rows.is_empty() {
            let rows = std::mem::take(&mut copy.rows);
            let (lines, values): (Vec<u64>, Vec<Vec<Option<String>>>) = rows.into_iter().unzip();
            match insert_text_rows(self, &copy.table, &copy.targets, &values).await {
                Ok(n) => copy.written += n,
                Err((at, e)) => {
                    let line = at.map_or(lines[0], |i| lines[i]);
                    copy.error = Some(copy.line_error(line, e));
                }
            }
        }
        self.copy = Some(copy);
    }

    /// The client's end of the COPY data: write the rest and finish. `COPY n`.
    pub async fn copy_done(&mut self) -> Result<Output> {
        let Some(copy) = self.copy.as_mut() else {
            return Err(Error::new(
                SqlState::ProtocolViolation,
                "CopyDone without a COPY in progress",
            ));
        };
        copy.finish_input();
        self.write_copy_rows().await;
        let copy = self.copy.take().expect("copy in progress");
        if let Some(e) = copy.error {
            self.copy_failed(copy.implicit);
            return Err(e);
        }
        if copy.implicit {
            let r = self.slot.commit();
            self.end_txn();
            if let Some(Err(e)) = r {
                return Err(e.into());
            }
        }
        Ok(Output::Command(format!("COPY {}", copy.written)))
    }

    /// The client gave up on the COPY (CopyFail): nothing of it stays.
    pub fn copy_fail(&mut self, message: &str) -> Error {
        if let Some(copy) = self.copy.take() {
            self.copy_failed(copy.implicit);
        }
        Error::new(
            SqlState::QueryCanceled,
            format!("COPY from stdin failed: {message}"),
        )
    }

    /// COPY TO STDOUT: the rows of a table or a query.
    pub(crate) async fn copy_to(&mut self, catalog: &Catalog, stmt: &Statement) -> Result<Output> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = stmt
        else {
            return Err(Error::internal("not a COPY"));
        };
        if !*to || *target != ast::CopyTarget::Stdout {
            return Err(Error::unsupported(
                "COPY to or from a file or program (use STDIN/STDOUT, or psql's \\copy)",
            ));
        }
        let format = crate::copy::CopyFormat::from_options(options, legacy_options)?;
        let sql = match source {
            ast::CopySource::Query(q) => q.to_string(),
            ast::CopySource::Table {
                table_name,
                columns,
            } => {
                let t = catalog.table(&crate::dml::object_name(table_name))?;
                let names: Vec<String> = columns.iter().map(crate::dml::ident).collect();
                let cols = crate::dml::column_positions(t, &names)?
                    .into_iter()
                    .map(|p| crate::dml::quote(&t.columns[p].name))
                    .collect::<Vec<_>>();
                format!(
                    "SELECT {} FROM {}",
                    cols.join(", "),
                    crate::dml::quote(&t.name)
                )
            }
        };
        let stmt = parse(&sql)?
            .pop()
            .ok_or_else(|| Error::internal("empty COPY query"))?;
        let Output::Rows {
            schema, batches, ..
        } = self.query(&stmt).await?
        else {
            return Err(Error::internal("COPY query returned no rows"));
        };
        Ok(Output::CopyOut {
            schema,
            batches,
            format,
        })
    }
}

/// Insert rows given as text (COPY FROM): `targets` are the positions of the columns
/// the values are for; the other columns get their defaults. Values go through the
/// same assignment casts and checks as INSERT. Returns how many rows were written; an
/// error comes with the index of the row that caused it, where known. Nothing of this
/// call is undone on error (the caller fails the transaction).
async fn insert_text_rows(
    session: &mut Session,
    t: &Arc<TableDesc>,
    targets: &[usize],
    rows: &[Vec<Option<String>>],
) -> std::result::Result<u64, (Option<usize>, Error)> {
    let converted = text_rows(session, t, targets, rows)
        .await
        .map_err(|e| (first_bad_row(t, targets, rows), e))?;
    let rows =
        crate::row_write::insert_new_rows(session, t, converted).map_err(|(i, e)| (Some(i), e))?;
    Ok(rows.len() as u64)
}

/// The first row with a value its column cannot take.
fn first_bad_row(t: &TableDesc, targets: &[usize], rows: &[Vec<Option<String>>]) -> Option<usize> {
    use datafusion::arrow::array::StringArray;
    rows.iter().position(|r| {
        targets.iter().zip(r).any(|(p, v)| {
            let col = &t.columns[*p];
            let one: ArrayRef = Arc::new(StringArray::from(vec![v.as_deref()]));
            cast_column(&one, col.ty, t, &col.name).is_err()
        })
    })
}

/// Text rows cast to the table's columns, defaults filled in.
async fn text_rows(
    session: &mut Session,
    t: &Arc<TableDesc>,
    targets: &[usize],
    rows: &[Vec<Option<String>>],
) -> Result<Vec<Vec<(usize, ScalarValue)>>> {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(
        (0..targets.len())
            .map(|i| Field::new(format!("c{i}"), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<ArrayRef> = (0..targets.len())
        .map(|i| Arc::new(StringArray::from_iter(rows.iter().map(|r| r[i].as_deref()))) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(Error::internal)?;
    let missing: Vec<usize> = (0..t.columns.len())
        .filter(|p| !targets.contains(p) && t.columns[*p].default.is_some())
        .collect();
    let batches = if missing.is_empty() {
        vec![batch]
    } else {
        let defaults: Vec<String> = missing
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{} AS __default_{i}", crate::dml::default_sql(t, *p)))
            .collect();
        session.ctx.register_table(
            COPY_SOURCE,
            Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
        )?;
        let r = session
            .query_sql(&format!(
                "SELECT *, {} FROM {COPY_SOURCE}",
                defaults.join(", ")
            ))
            .await;
        session.ctx.deregister_table(COPY_SOURCE)?;
        r?.1
    };
    let mut mapping: Vec<(usize, usize)> =
        targets.iter().enumerate().map(|(i, p)| (i, *p)).collect();
    mapping.extend(
        missing
            .iter()
            .enumerate()
            .map(|(i, p)| (targets.len() + i, *p)),
    );
    crate::dml::rows_of(&batches, t, &mapping)
}

/// PostgreSQL takes `on`/`off`/`1`/`0` for COPY's boolean options (`WITH (FREEZE ON)`,
/// which pgbench sends); the parser takes only `true`/`false`. Rewrite them in a COPY.
pub(crate) fn copy_booleans(sql: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = sql.trim_start();
    if trimmed.len() < 4 || !trimmed[..4].eq_ignore_ascii_case("copy") {
        return sql.into();
    }
    let words: Vec<&str> = sql
        .split_inclusive(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .collect();
    let mut out = String::with_capacity(sql.len());
    let mut after_option = false;
    for w in words {
        let (word, sep) = w.split_at(
            w.trim_end_matches(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
                .len(),
        );
        let lower = word.to_ascii_lowercase();
        let replaced = match lower.as_str() {
            "on" | "1" if after_option => "true",
            "off" | "0" if after_option => "false",
            _ => word,
        };
        out.push_str(replaced);
        out.push_str(sep);
        if !word.is_empty() {
            after_option = matches!(lower.as_str(), "freeze" | "header");
        }
    }
    out.into()
}

pub(crate) fn is_copy_from_stdin(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::Copy {
            to: false,
            target: ast::CopyTarget::Stdin,
            ..
        }
    )
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

    #[test]
    fn copy_boolean_options_are_rewritten() {
        assert_eq!(
            super::copy_booleans("copy pgbench_accounts from stdin with (freeze on)"),
            "copy pgbench_accounts from stdin with (freeze true)"
        );
        assert_eq!(
            super::copy_booleans("COPY t FROM STDIN (FORMAT csv, HEADER 0, FREEZE)"),
            "COPY t FROM STDIN (FORMAT csv, HEADER false, FREEZE)"
        );
        assert_eq!(super::copy_booleans("select 'on'"), "select 'on'");
    }
}
