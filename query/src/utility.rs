//! Session-level utility statements: SET / SHOW / RESET / DISCARD / DEALLOCATE, the
//! client's startup parameters, VACUUM and ANALYZE, and savepoints.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::sql::sqlparser::ast::{self, Statement};
use tessera_cluster::TxnOptions;

use crate::error::{Error, Result, SqlState};
use crate::session::{parse, statement_name, Output, Session, TxnState};

impl Session {
    /// What the client said at startup: its user, database, `application_name` and
    /// any `options=-c name=value` settings. These become the session's defaults.
    pub fn set_client(&mut self, params: &std::collections::HashMap<String, String>) {
        self.client_known = true;
        if let Some(u) = params.get("user") {
            *self.info.user.lock() = u.clone();
        }
        match params.get("database") {
            Some(d) => *self.info.database.lock() = d.clone(),
            None => {
                if let Some(u) = params.get("user") {
                    *self.info.database.lock() = u.clone();
                }
            }
        }
        for (k, v) in params {
            let k = k.to_lowercase();
            if [
                "application_name",
                "client_encoding",
                "datestyle",
                "timezone",
            ]
            .contains(&k.as_str())
            {
                self.info.set(&k, v.clone());
            }
        }
        if let Some(options) = params.get("options") {
            // `-c name=value` pairs (PGOPTIONS); `--name=value` is the same.
            let words: Vec<&str> = options.split_whitespace().collect();
            let mut i = 0;
            while i < words.len() {
                let pair = match words[i] {
                    "-c" => {
                        i += 1;
                        words.get(i).copied()
                    }
                    w => w.strip_prefix("-c").or_else(|| w.strip_prefix("--")),
                };
                if let Some((k, v)) = pair.and_then(|p| p.split_once('=')) {
                    self.info.set(&k.replace('-', "_"), v.to_string());
                }
                i += 1;
            }
        }
        *self.info.defaults.lock() = self.info.settings.lock().clone();
    }

    /// VACUUM and ANALYZE: accepted for the tables they name (which must exist), with
    /// nothing to do. MVCC garbage is collected in the background, and the planner keeps
    /// no statistics yet. `None` for any other statement.
    pub(crate) fn maintenance(&mut self, sql: &str) -> Option<Result<Output>> {
        let text = sql.trim().trim_end_matches(';').trim();
        let mut words = text.split_whitespace();
        let verb = words.next()?.to_lowercase();
        if verb != "vacuum" && verb != "analyze" && verb != "analyse" {
            return None;
        }
        if text.contains(';') {
            return None;
        }
        let tag = if verb == "vacuum" {
            "VACUUM"
        } else {
            "ANALYZE"
        };
        if self.state == TxnState::Failed {
            return Some(Err(Error::in_failed_transaction()));
        }
        if verb == "vacuum" && self.state != TxnState::Idle {
            return Some(Err(Error::new(
                SqlState::ActiveSqlTransaction,
                "VACUUM cannot run inside a transaction block",
            )));
        }
        let mut rest = text[verb.len()..].trim_start();
        if rest.starts_with('(') {
            // The parenthesised option list.
            rest = rest.split_once(')').map_or("", |(_, r)| r);
        }
        let mut tables = Vec::new();
        for part in rest.split(',') {
            let mut ws = part.split_whitespace().peekable();
            while let Some(w) = ws.peek() {
                let lw = w.to_lowercase();
                if [
                    "full",
                    "freeze",
                    "verbose",
                    "analyze",
                    "analyse",
                    "skip_locked",
                ]
                .contains(&lw.as_str())
                {
                    ws.next();
                } else {
                    break;
                }
            }
            if let Some(name) = ws.next() {
                let name = name.split('(').next().unwrap_or(name);
                tables.push(name.to_string());
            }
        }
        let check = || -> Result<()> {
            let catalog = self.slot.with(|txn| self.node.catalogs.load(txn))?;
            for name in &tables {
                let obj = parse(&format!("SELECT * FROM {name}"))?;
                let Some(Statement::Query(q)) = obj.first() else {
                    return Err(Error::new(
                        SqlState::SyntaxError,
                        format!("syntax error at {name}"),
                    ));
                };
                let ast::SetExpr::Select(sel) = q.body.as_ref() else {
                    return Err(Error::new(
                        SqlState::SyntaxError,
                        format!("syntax error at {name}"),
                    ));
                };
                let Some(ast::TableFactor::Table { name, .. }) =
                    sel.from.first().map(|f| &f.relation)
                else {
                    return Err(Error::new(
                        SqlState::SyntaxError,
                        format!("syntax error at {name}"),
                    ));
                };
                catalog.table(&crate::dml::object_name(name))?;
            }
            Ok(())
        };
        let r = if self.slot.is_open() {
            check()
        } else {
            self.slot.set(self.node.db.begin(TxnOptions::default()));
            let r = check();
            self.slot.rollback();
            r
        };
        Some(r.map(|()| Output::Command(tag.into())))
    }

    pub(crate) fn no_such_savepoint(name: &str) -> Error {
        Error::new(
            SqlState::InvalidSavepointSpecification,
            format!("savepoint \"{name}\" does not exist"),
        )
    }

    /// SAVEPOINT: remember the transaction's writes so far.
    pub(crate) fn savepoint(&mut self, name: String) -> Result<Output> {
        match self.state {
            TxnState::Idle => Err(Error::new(
                SqlState::NoActiveSqlTransaction,
                "SAVEPOINT can only be used in transaction blocks",
            )),
            TxnState::Failed => Err(Error::in_failed_transaction()),
            TxnState::Open => {
                let sp = self.slot.with(|t| Ok(t.savepoint()?))?;
                self.savepoints.push((name, sp));
                Ok(Output::Command("SAVEPOINT".into()))
            }
        }
    }

    /// RELEASE SAVEPOINT: forget it and every savepoint after it; the writes stay.
    pub(crate) fn release_savepoint(&mut self, name: &str) -> Result<Output> {
        match self.state {
            TxnState::Idle => Err(Error::new(
                SqlState::NoActiveSqlTransaction,
                "RELEASE SAVEPOINT can only be used in transaction blocks",
            )),
            TxnState::Failed => Err(Error::in_failed_transaction()),
            TxnState::Open => {
                let Some(at) = self.savepoints.iter().rposition(|(n, _)| n == name) else {
                    self.state = TxnState::Failed;
                    return Err(Self::no_such_savepoint(name));
                };
                self.savepoints.truncate(at);
                Ok(Output::Command("RELEASE".into()))
            }
        }
    }

    /// ROLLBACK TO SAVEPOINT: undo the writes made since, keep the savepoint, and leave
    /// a failed transaction usable again.
    pub(crate) fn rollback_to_savepoint(&mut self, name: &str) -> Result<Output> {
        if self.state == TxnState::Idle {
            return Err(Error::new(
                SqlState::NoActiveSqlTransaction,
                "ROLLBACK TO SAVEPOINT can only be used in transaction blocks",
            ));
        }
        let Some(at) = self.savepoints.iter().rposition(|(n, _)| n == name) else {
            self.state = TxnState::Failed;
            return Err(Self::no_such_savepoint(name));
        };
        self.savepoints.truncate(at + 1);
        let sp = self.savepoints[at].1.clone();
        let undone = self.slot.with(|t| Ok(t.rollback_to(&sp)?))?;
        if !undone {
            self.state = TxnState::Failed;
            return Err(Error::unsupported(
                "ROLLBACK TO SAVEPOINT after the transaction wrote more than its write buffer holds",
            ));
        }
        self.state = TxnState::Open;
        // A schema change undone must not stay registered.
        self.registered = None;
        Ok(Output::Command("ROLLBACK".into()))
    }

    pub(crate) fn run_utility(&mut self, stmt: &Statement) -> Result<Output> {
        match stmt {
            Statement::Set(set) => self.set(set),
            Statement::ShowVariable { variable } => {
                let words = crate::session::words(variable);
                if let Some(filter) = crate::ranges::show_filter(&words) {
                    return self.show_ranges(filter?);
                }
                let name = words.join(" ");
                let name = match name.as_str() {
                    "transaction isolation level" => "transaction_isolation".to_string(),
                    "time zone" => "timezone".to_string(),
                    _ => name,
                };
                let value = self.info.get(&name).ok_or_else(|| {
                    Error::new(
                        SqlState::UndefinedObject,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                let schema = crate::types::schema_of(
                    [(name.as_str(), crate::types::SqlType::Text, false)].into_iter(),
                );
                let col = Arc::new(datafusion::arrow::array::StringArray::from(vec![value]));
                let batch =
                    RecordBatch::try_new(schema.clone(), vec![col]).map_err(Error::internal)?;
                Ok(Output::Rows {
                    schema,
                    batches: vec![batch],
                    tag: "SHOW".into(),
                })
            }
            Statement::Reset(r) => {
                match &r.reset {
                    ast::Reset::ALL => self.info.reset_all(),
                    ast::Reset::ConfigurationParameter(name) => {
                        self.info.reset(&name.to_string().to_lowercase())
                    }
                }
                Ok(Output::Command("RESET".into()))
            }
            Statement::Discard { object_type } => {
                if *object_type == ast::DiscardObject::ALL {
                    if self.state != TxnState::Idle {
                        return Err(Error::new(
                            SqlState::ActiveSqlTransaction,
                            "DISCARD ALL cannot run inside a transaction block",
                        ));
                    }
                    self.info.reset_all();
                }
                Ok(Output::Command(format!("DISCARD {object_type}")))
            }
            // Prepared statements live in the protocol layer, which keeps them per
            // connection; the statement is acknowledged as PostgreSQL does.
            Statement::Deallocate { name, .. } => Ok(Output::Command(
                if name.value.eq_ignore_ascii_case("all") && name.quote_style.is_none() {
                    "DEALLOCATE ALL".into()
                } else {
                    "DEALLOCATE".into()
                },
            )),
            other => Err(Error::unsupported(format!(
                "statement \"{}\"",
                statement_name(other)
            ))),
        }
    }

    pub(crate) fn set(&mut self, set: &ast::Set) -> Result<Output> {
        match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = variable.to_string().to_lowercase();
                let value = values
                    .iter()
                    .map(|v| match v {
                        ast::Expr::Value(v) => match &v.value {
                            ast::Value::SingleQuotedString(s) => s.clone(),
                            other => other.to_string(),
                        },
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                self.info.set(&name, value);
            }
            ast::Set::SetTimeZone { value, .. } => {
                let v = match value {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => s.clone(),
                        other => other.to_string(),
                    },
                    other => other.to_string(),
                };
                self.info.set("timezone", v);
            }
            ast::Set::SetTransaction { .. }
            | ast::Set::SetNames { .. }
            | ast::Set::SetNamesDefault { .. } => {}
            other => return Err(Error::unsupported(format!("SET form \"{other}\""))),
        }
        Ok(Output::Command("SET".into()))
    }
}
